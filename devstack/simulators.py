"""The demo's SMS and push providers: real protocols, local simulators.

SMS, as ``sms`` chooses (the demo's ``MC_DEMO_SMS``), behind ``mc_sms``:

* ``smpp`` (the default; conn type ``smpp``): :mod:`devstack.smsc` (``smpp34``'s server) binds one
  account (``mcdemo`` and the password given), accepts every ``submit_sm`` and sends a ``DELIVRD``
  delivery receipt, which the continuous DAG ``smsReceipts`` reads on its receiver bind.
* ``twilio`` or ``vonage`` (conn type ``messagecenter_http``, extra ``provider``): the fakes of
  :mod:`devstack.sms_rest`, with credentials generated at each start. Each message asks for status
  callbacks at the API's feedback webhook (``MC_PUBLIC_URL``); the fake posts them a second after
  its answer, signed as the provider signs them (Twilio: ``X-Twilio-Signature`` under the auth
  token; Vonage: ``sig`` with the account's signature secret, which also signs our requests), and
  the connection ``mc_feedback_twilio`` / ``mc_feedback_vonage`` holds what verifies them.

A number starting ``+999`` is reported undelivered (``UNDELIV``; Twilio ``undelivered``; Vonage
``failed``): the delivery log turns failed, as a dead number's would.

* Android push over FCM HTTP v1 (``mc_push_android``, conn type ``fcm``): :class:`~devstack.push.FakeFcm`
  with its OAuth2 token endpoint, a service account generated at each start.
* iOS push over APNs (``mc_push_ios``, conn type ``apns``): :class:`~devstack.push.FakeApns`, HTTP/2
  over TLS with a self-signed certificate (the connection's ``ca_file``) and an ES256 signing key
  generated at each start.

Each simulator checks what it receives against the provider's documented format and refuses what
does not match, as the provider would. Every accepted message is one JSON line in ``sms.log`` (with
the ``provider`` that took it) or ``push.log`` of the demo folder.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

from devstack.push import FakeApns, FakeFcm, OAuthServer
from devstack.sms_rest import UNDELIVERABLE_PREFIX, FakeTwilio, FakeVonage, Received, running
from devstack.smsc import Decision, Submit, running_smsc
from messagecenter.delivery.gsm import ESM_CLASS_UDHI, decode_sms

log = logging.getLogger("devstack.sinks")  # the demo sends its line per message to logs/sinks.log

SMS_SENDER = "MCDEMO"
SMSC_SYSTEM_ID = "mcdemo"  # the SMSC's one account
# What can back mc_sms, and what the demo's banner says of each.
SMS_PROVIDERS = {
    "smpp": "an SMSC over SMPP, receipts read by smsReceipts; a +999... number gets UNDELIV",
    "twilio": "a Twilio simulator, status callbacks to the API; a +999... number gets undelivered",
    "vonage": "a Vonage simulator, signed delivery receipts to the API; a +999... number gets failed",
}
CALLBACK_DELAY = 1.0  # seconds from a REST provider's answer to its first status callback
VONAGE_SIGNATURE_METHOD = "sha256"


def sms_provider_of(connection: dict[str, Any]) -> str:
    """Which of ``SMS_PROVIDERS`` an ``mc_sms`` connection (JSON form) of the demo reaches."""
    if connection.get("conn_type") == "smpp":
        return "smpp"
    return str((connection.get("extra") or {}).get("provider", ""))


class Simulators:
    """The SMS provider, FCM (and its OAuth server) and APNs, started together (context manager).

    :param directory: the demo folder: ``sms.log``, ``push.log``, the APNs certificate.
    :param sms: what backs ``mc_sms``: ``smpp``, ``twilio`` or ``vonage`` (``SMS_PROVIDERS``).
    :param smsc_port: where ESMEs bind (0: a free port), with ``smpp``.
    :param smsc_password: the password of the SMSC's account (``SMSC_SYSTEM_ID``), with ``smpp``.
    """

    def __init__(
        self, directory: Path, *, sms: str = "smpp", smsc_port: int = 0, smsc_password: str = "demo"
    ) -> None:
        if sms not in SMS_PROVIDERS:
            raise ValueError(f"sms must be one of {', '.join(SMS_PROVIDERS)}, not {sms!r}")
        self.directory = directory
        self.sms = sms
        self.smsc_port = smsc_port
        self.smsc_password = smsc_password
        self.logs = {"sms": directory / "sms.log", "push": directory / "push.log"}
        self.counts = dict.fromkeys(self.logs, 0)  # messages accepted since the start
        self._lock = threading.Lock()
        self._resources = ExitStack()

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start_sms()
            self.oauth = self._resources.enter_context(OAuthServer())
            self.fcm = self._resources.enter_context(FakeFcm(self.oauth, project_id="mc-demo"))
            certificates = self.directory / "apns"
            certificates.mkdir(exist_ok=True)
            self.apns = self._resources.enter_context(FakeApns(certificates, topic="com.example.shop"))
        except BaseException:
            self._resources.close()
            raise
        self.fcm.on_received = lambda token, message: self._record("push", {"platform": "android", **message})
        self.apns.on_received = lambda token, payload: self._record(
            "push", {"platform": "ios", "token": token, **payload}
        )
        return self

    def _start_sms(self) -> None:
        if self.sms == "smpp":
            self.smsc = self._resources.enter_context(
                running_smsc(self._decide, port=self.smsc_port, accounts={SMSC_SYSTEM_ID: self.smsc_password})
            )
            return
        # Credentials of an account made up at each start, as the push simulators' keys.
        if self.sms == "twilio":
            self.rest: FakeTwilio | FakeVonage = FakeTwilio(
                token=secrets.token_hex(16), callback_delay=CALLBACK_DELAY
            )
        else:
            self.rest = FakeVonage(
                api_secret=secrets.token_urlsafe(12),
                signature_secret=secrets.token_urlsafe(24),
                signature_method=VONAGE_SIGNATURE_METHOD,
                callback_delay=CALLBACK_DELAY,
            )
        self.rest.on_accepted = self._accepted
        self._resources.enter_context(running(self.rest))

    def __exit__(self, *exc_info: object) -> None:
        self._resources.close()

    def connections(self) -> dict[str, dict[str, Any]]:
        """The Airflow connections (JSON form) of the providers, by connection id: ``mc_sms``, with
        a REST provider the ``mc_feedback_<provider>`` that verifies its callbacks, the push ones."""
        return {
            **self._sms_connections(),
            "mc_push_android": self.fcm.connection(),
            "mc_push_ios": self.apns.connection(),
        }

    def _sms_connections(self) -> dict[str, dict[str, Any]]:
        if self.sms == "smpp":
            sms = {
                "conn_type": "smpp",
                "host": "127.0.0.1",
                "port": self.smsc.port,
                "login": SMSC_SYSTEM_ID,
                "password": self.smsc_password,
                "extra": {"source_addr": SMS_SENDER},
            }
            return {"mc_sms": sms}
        if isinstance(self.rest, FakeTwilio):
            sms = json.loads(self.rest.connection(**{"from": SMS_SENDER}))
            return {
                "mc_sms": sms,
                "mc_feedback_twilio": {"conn_type": "generic", "password": self.rest.token},
            }
        assert self.rest.signature_secret is not None
        method = {"signature_method": self.rest.signature_method}
        sms = json.loads(
            self.rest.connection(
                **{"from": SMS_SENDER, "signature_secret": self.rest.signature_secret, **method}
            )
        )
        feedback = {"conn_type": "generic", "password": self.rest.signature_secret, "extra": method}
        return {"mc_sms": sms, "mc_feedback_vonage": feedback}

    def _accepted(self, request: Received) -> None:
        """A message a REST provider accepted, as its line of ``sms.log``."""
        form, answer = request.form, request.answer
        if self.sms == "twilio":
            entry = {"id": answer["sid"], "to": form["To"], "from": form.get("From"), "text": form["Body"]}
        else:
            ids = [message["message-id"] for message in answer["messages"]]
            entry = {
                "id": ids[0],
                "to": form["to"],
                "from": form["from"],
                "text": form["text"],
                "parts": len(ids),
            }
        self._record("sms", {"provider": self.sms, **entry})

    def _decide(self, submit: Submit) -> Decision:
        """Accept every submit; a receipt DELIVRD, or UNDELIV for the undeliverable numbers."""
        body = submit.short_message
        if submit.esm_class & ESM_CLASS_UDHI:  # a part of a long text: its header (length first) left out
            body = body[1 + body[0] :]
        self._record(
            "sms",
            {
                "provider": "smpp",
                "to": submit.destination_addr,
                "from": submit.source_addr,
                "data_coding": submit.data_coding,
                "part_text": decode_sms(body, submit.data_coding),
            },
        )
        if submit.destination_addr.startswith((UNDELIVERABLE_PREFIX, UNDELIVERABLE_PREFIX[1:])):
            return Decision(receipt="UNDELIV", err="001")
        return Decision()

    def _record(self, name: str, entry: dict[str, Any]) -> None:
        with self._lock, self.logs[name].open("a") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.counts[name] += 1
        log.info("%s -> %s", name, self.logs[name])
