"""The demo's SMS and push providers: real protocols, local simulators.

* SMS over SMPP 3.4 (``mc_sms``, conn type ``smpp``): :mod:`devstack.smsc` (``smpp34``'s server)
  binds one account (``mcdemo`` and the password given), accepts every ``submit_sm`` and sends a
  ``DELIVRD`` delivery receipt, which the continuous DAG ``smsReceipts`` reads on its receiver
  bind; a number starting ``+999`` gets ``UNDELIV`` instead (the delivery log turns failed, as a
  dead number's would).
* Android push over FCM HTTP v1 (``mc_push_android``, conn type ``fcm``): :class:`~devstack.push.FakeFcm`
  with its OAuth2 token endpoint, a service account generated at each start.
* iOS push over APNs (``mc_push_ios``, conn type ``apns``): :class:`~devstack.push.FakeApns`, HTTP/2
  over TLS with a self-signed certificate (the connection's ``ca_file``) and an ES256 signing key
  generated at each start.

Each simulator checks what it receives against the provider's documented format and refuses what
does not match, as the provider would. Every accepted message is one JSON line in ``sms.log`` or
``push.log`` of the demo folder.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

from devstack.push import FakeApns, FakeFcm, OAuthServer
from devstack.smsc import Decision, Submit, running_smsc
from messagecenter.delivery.gsm import decode_sms

log = logging.getLogger("devstack.sinks")  # the demo sends its line per message to logs/sinks.log

UNDELIVERABLE_PREFIX = "+999"  # numbers the demo's SMSC reports UNDELIV for
SMS_SENDER = "MCDEMO"
SMSC_SYSTEM_ID = "mcdemo"  # the SMSC's one account


class Simulators:
    """The SMSC, FCM (and its OAuth server) and APNs, started together (context manager).

    :param directory: the demo folder: ``sms.log``, ``push.log``, the APNs certificate.
    :param smsc_port: where ESMEs bind (0: a free port).
    :param smsc_password: the password of the SMSC's account (``SMSC_SYSTEM_ID``).
    """

    def __init__(self, directory: Path, *, smsc_port: int = 0, smsc_password: str = "demo") -> None:
        self.directory = directory
        self.smsc_port = smsc_port
        self.smsc_password = smsc_password
        self.logs = {"sms": directory / "sms.log", "push": directory / "push.log"}
        self.counts = dict.fromkeys(self.logs, 0)  # messages accepted since the start
        self._lock = threading.Lock()
        self._resources = ExitStack()

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.smsc = self._resources.enter_context(
                running_smsc(self._decide, port=self.smsc_port, accounts={SMSC_SYSTEM_ID: self.smsc_password})
            )
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

    def __exit__(self, *exc_info: object) -> None:
        self._resources.close()

    def connections(self) -> dict[str, dict[str, Any]]:
        """The Airflow connections (JSON form) of the three providers, by connection id."""
        return {
            "mc_sms": {
                "conn_type": "smpp",
                "host": "127.0.0.1",
                "port": self.smsc.port,
                "login": SMSC_SYSTEM_ID,
                "password": self.smsc_password,
                "extra": {"source_addr": SMS_SENDER},
            },
            "mc_push_android": self.fcm.connection(),
            "mc_push_ios": self.apns.connection(),
        }

    def _decide(self, submit: Submit) -> Decision:
        """Accept every submit; a receipt DELIVRD, or UNDELIV for the undeliverable numbers."""
        udh = submit.esm_class & 0x40 and submit.short_message[:1]
        body = submit.short_message[1 + submit.short_message[0] :] if udh else submit.short_message
        self._record(
            "sms",
            {
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
