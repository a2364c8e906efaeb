"""``make demo``: the whole of Message Center on one machine, with only Python needed.

Starts an embedded PostgreSQL (``pgserver``, data in ``.demo/pgdata``), or uses the existing server
``MC_DSN`` names, where the demo creates its databases: the Airflow metadata database and the Message
Center database (minimal architecture: the execution and control schemas in one database). Loads the
example templates, starts Airflow (API server with the intake API under ``/messagecenter``,
scheduler, DAG processor; LocalExecutor), a local SMTP server, the SMS and push simulators
(:mod:`devstack.simulators`: FCM HTTP v1, APNs over HTTP/2, and the SMS provider ``MC_DEMO_SMS``
names: ``smpp``, the default, an SMSC with delivery receipts; ``twilio`` or ``vonage``, a fake of
that provider's REST API whose status callbacks reach the API's feedback webhook) and a POP3 bounce
mailbox, turns the execution workflows on (``bounceProcessing`` too, and ``smsReceipts`` with SMPP,
the only provider whose receipts it reads) and pushes a few sample events (e-mail, SMS, Android and
iOS push). Ctrl-C stops everything it started; a second run reuses ``.demo/``.

The local SMTP server refuses ``bounce-*`` recipients (``550 5.1.1 ... User unknown``) and
``softbounce-*`` ones (``452 4.2.2 Mailbox full``), as a receiving server would: the demo pushes one
event to ``bounce-demo@example.com``, which ends Delivery failed, and ``updateEventsStatus`` qualifies
the refusal and quarantines the address. ``MC_FEEDBACK_SECRET`` (generated into ``.demo/``) signs the
VERP return paths (``Return-Path`` in the ``.eml`` files) and one-click unsubscribe links, whose base
``MC_PUBLIC_URL`` is the demo's API. The SMTP server accepts ``dsnbounce-*`` recipients, then sends
the signed return path an RFC 3464 delivery status notification into the demo's bounce mailbox
(``.demo/bounces``, served by a small POP3 server, ``devstack.pop3``, as the ``mc_bounce_mailbox``
connection), where ``bounceProcessing`` reads it and turns the event Delivery failed.

While it runs, the console shows a status line (Airflow's components, events per status, what the
sinks received) every ``MC_DEMO_STATUS_SECONDS`` (30) when something changed, and every ten minutes
anyway; the line per message goes to ``.demo/logs/sinks.log``. The banner says where the login, the
token and the environment are kept (``.demo/admin-password``, ``.demo/api-token``, ``.demo/env``);
``make demo-info`` (``--info``) prints it again from ``.demo/`` without starting anything.

``make demo-check`` (``--check``) runs the same stack headless in a fresh directory, pushes real-time
and batch events, waits until they are Sent, checks the mail landed with signed return paths, checks
the bounce ended Delivery failed with its address in quarantine and the next event to it Ignored,
checks that no DAG run failed (a first start ends green), then runs the README's tour, command by
command (``devstack.tour``), and exits non-zero if any of that failed.

Ports (override by environment): ``MC_DEMO_PORT`` Airflow (8080), ``MC_DEMO_SMTP_PORT`` SMTP (8025),
``MC_DEMO_SMSC_PORT`` SMSC (2775), ``MC_DEMO_POP3_PORT`` bounce mailbox (8110); the push simulators
take free ports. The check picks free ports unless they are set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack import tour
from devstack.pop3 import Pop3Server
from devstack.simulators import SMS_PROVIDERS, Simulators, sms_provider_of
from devstack.sinks import MailSink
from devstack.stack import (
    EXECUTION_DAGS,
    REPO,
    STACK_MARKER,
    AirflowConfig,
    Stack,
    StackError,
    postgres_connection,
)
from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import SMPP_MAX_PASSWORD
from messagecenter.core.settings import load_settings
from messagecenter.core.types import QUEUES, Channel, Status
from messagecenter.db import schema
from messagecenter.feedback import quarantine, verp
from messagecenter.intake import store

log = logging.getLogger("devstack.demo")

ADMIN_DSN_VAR = "MC_DEMO_ADMIN_DSN"  # in .demo/env: the demo's PostgreSQL, for --add-instance
# Also in .demo/env, for the reader's shell (the tour) and for --info: the intake API, its token, the
# Message Center database.
API_VAR, TOKEN_VAR, DSN_VAR = "MC_DEMO_API", "MC_DEMO_TOKEN", "MC_DEMO_DSN"
STATUS_SECONDS = float(os.environ.get("MC_DEMO_STATUS_SECONDS", "30"))
STATUS_REPEAT_SECONDS = 600.0  # the status line comes back this often even when nothing changed
MC_DB = "messagecenter"  # execution and control schemas (minimal architecture)
AIRFLOW_DB = "messagecenter_airflow"  # Airflow metadata
EXAMPLE_TEMPLATES = REPO / "include" / "templates" / "example.yaml"
PUBLISH_DAG = "publishTemplates"
ARCHIVING_DAG = "mcArchiving_local"  # from the mc_exec_local connection
CHECK_TIMEOUT = float(os.environ.get("MC_DEMO_CHECK_TIMEOUT", "240"))
BOUNCE_DOMAIN = "bounces.example.com"  # mc_smtp's return_path_domain: VERP return paths end here
BOUNCE_DAG = "bounceProcessing"  # reads the demo's bounce mailbox (mc_bounce_mailbox, POP3)
RECEIPTS_DAG = "smsReceipts"  # reads the SMSC's delivery receipts (mc_sms, SMPP)
SMS_VAR = "MC_DEMO_SMS"  # which provider backs mc_sms (SMS_PROVIDERS; smpp by default)
IOS_DEVICE_TOKEN = "5f0c1a7e" * 8  # an APNs device token: 32 bytes in hex
SAMPLE_SMS_NUMBER = "+33612345678"

SAMPLE_EVENTS: dict[str, list[dict[str, Any]]] = {
    "rt": [
        {
            "type": "ORDER_CONFIRMATION",
            "email": "ann@example.com",
            "language": "en",
            "ctx": {"firstName": "Ann", "orderId": "1234"},
        },
        {"type": "OTP", "channel": "sms", "mobile_phone": SAMPLE_SMS_NUMBER, "ctx": {"code": "4711"}},
    ],
    "batch": [
        {
            "type": "PASSWORD_RESET",
            "email": "bob@example.com",
            "ctx": {"firstName": "Bob", "resetUrl": "https://shop.example.com/reset/abc"},
        },
        {
            "type": "ORDER_SHIPPED",
            "channel": "android",
            "push_token": "demo-device-1",
            "ctx": {"orderId": "1234"},
        },
        {
            "type": "ORDER_SHIPPED",
            "channel": "ios",
            "push_token": IOS_DEVICE_TOKEN,
            "ctx": {"orderId": "1234"},
        },
    ],
}


# Refused by the demo's SMTP server (550 5.1.1 user unknown): Delivery failed, then quarantined.
BOUNCE_EVENT: dict[str, Any] = {
    "type": "ORDER_CONFIRMATION",
    "email": "bounce-demo@example.com",
    "language": "en",
    "ctx": {"firstName": "Dora", "orderId": "4040"},
}


class Stop(Exception):
    """SIGTERM received: unwind like Ctrl-C so every process gets stopped."""


@dataclass(frozen=True)
class Databases:
    mc_dsn: str  # execution + control schemas
    airflow_dsn: str  # Airflow metadata


def _dsn_for(admin_dsn: str, dbname: str) -> str:
    return make_conninfo(admin_dsn, dbname=dbname)


@contextmanager
def postgres(demo_dir: Path) -> Iterator[str]:
    """Admin DSN of the demo's PostgreSQL: ``MC_DSN`` if set, else an embedded server on
    ``<demo_dir>/pgdata`` (stopped on exit)."""
    if os.environ.get("MC_DSN"):
        yield os.environ["MC_DSN"]
        return
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # pgserver's lock dir falls back to /tmp
    import pgserver

    log.info("starting the embedded PostgreSQL in %s", demo_dir / "pgdata")
    server = pgserver.get_server(demo_dir / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        log.info("stopping the embedded PostgreSQL")
        server.cleanup()


def create_databases(admin_dsn: str, *, fresh: bool = False) -> Databases:
    """Create the demo's databases when missing and bring the Message Center schemas up to date.

    ``fresh`` (the check on an existing server, ``MC_DSN``): databases of their own, recreated
    empty, so a check never depends on what an earlier run left.
    """
    names = (f"{MC_DB}_check", f"{AIRFLOW_DB}_check") if fresh else (MC_DB, AIRFLOW_DB)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in names:
            if fresh:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log.info("created database %s", name)
    dbs = Databases(mc_dsn=_dsn_for(admin_dsn, names[0]), airflow_dsn=_dsn_for(admin_dsn, names[1]))
    with psycopg.connect(dbs.mc_dsn) as conn:
        for component in schema.COMPONENTS:
            applied = schema.upgrade(conn, component)
            if applied:
                log.info("schema %s: applied versions %s", component, applied)
    return dbs


def load_example_templates(mc_dsn: str) -> None:
    """Load the example templates as control's master templates (a new version only where the file
    changed); ``publishTemplates`` then publishes them to the execution instance."""
    from messagecenter.templates.files import load_template_file
    from messagecenter.templates.publishing import CONTROL_TABLE, publish_templates

    with psycopg.connect(mc_dsn) as conn:
        published = publish_templates(conn, load_template_file(EXAMPLE_TEMPLATES), table=CONTROL_TABLE)
    log.info(
        "master templates from %s: %d new version(s)",
        EXAMPLE_TEMPLATES.name,
        sum(p.created for p in published),
    )


def publish_on_execution(stack: Stack) -> None:
    """Run ``publishTemplates`` now (it also runs every 5 minutes) so the first events find their
    templates, and check the archiving DAG of the registered instance started by itself.

    The execution workflows are turned on right after: they have no heartbeat yet, so the run uses
    the override (param ``force``), as an installation does."""
    stack.wait_for_run(PUBLISH_DAG, stack.trigger(PUBLISH_DAG, conf={"force": True}))
    log.info("templates published on the execution instance by %s", PUBLISH_DAG)
    if stack.is_paused(ARCHIVING_DAG):
        raise StackError(f"{ARCHIVING_DAG} should run from its creation but is paused")


def _secret_file(path: Path, make: Any = lambda: secrets.token_urlsafe(24)) -> str:
    """A secret generated once and kept (mode 0600) in ``path``; read back on later runs."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(0o600)
        path.write_text(make())
    path.chmod(0o600)
    return path.read_text().strip()


def smsc_password(demo_dir: Path) -> str:
    """The password of the demo SMSC's account, generated once into ``smsc-password``: 8 characters,
    the most an SMPP 3.4 bind carries (9 octets with the NUL; clients cut a longer one)."""
    # token_urlsafe(n) is 4n/3 characters long.
    return _secret_file(demo_dir / "smsc-password", lambda: secrets.token_urlsafe(SMPP_MAX_PASSWORD * 3 // 4))


def api_token(demo_dir: Path) -> str:
    """The intake API token: ``MC_API_TOKENS`` if set, else one generated once into ``api-token``."""
    configured = load_settings().api_tokens
    return configured[0] if configured else _secret_file(demo_dir / "api-token")


def feedback_env(demo_dir: Path, base_url: str) -> dict[str, str]:
    """``MC_FEEDBACK_SECRET`` (generated once into ``feedback-secret``) and ``MC_PUBLIC_URL`` (the
    demo's API, where one-click unsubscribe links point)."""
    secret = _secret_file(demo_dir / "feedback-secret", lambda: secrets.token_urlsafe(32))
    return {"MC_FEEDBACK_SECRET": secret, "MC_PUBLIC_URL": f"{base_url}/messagecenter"}


def _port(name: str, default: int, check: bool) -> int:
    """Port from ``name`` if set; else ``default`` for the demo, a free one for the check. Refused
    up front when taken, with the variable to set, rather than as a component's crash later."""
    if os.environ.get(name):
        port = int(os.environ[name])
    elif check:
        port = 0
    else:
        port = default
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StackError(f"port {port} is taken ({exc.strerror}): set {name} to a free port") from None
        return int(sock.getsockname()[1])


def connections_env(
    dbs: Databases, mail: MailSink, providers: Simulators, mailbox: Pop3Server | None = None
) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables every component gets (one database plays both roles), with
    ``mc_bounce_mailbox`` when there is a bounce ``mailbox``."""
    smtp = mail.connection()
    smtp["extra"] = {**smtp["extra"], "return_path_domain": BOUNCE_DOMAIN}
    conns = {
        "mc_execution": postgres_connection(dbs.mc_dsn),
        "mc_control": postgres_connection(dbs.mc_dsn),
        "mc_exec_local": postgres_connection(dbs.mc_dsn, instance_id=1),
        "mc_smtp": smtp,
        **providers.connections(),  # mc_sms (and mc_feedback_<provider>), mc_push_android, mc_push_ios
    }
    if mailbox is not None:
        conns["mc_bounce_mailbox"] = mailbox.connection()
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps(conn) for cid, conn in conns.items()}


class IntakeClient:
    """The intake API as mounted in the Airflow API server."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.client.get("/health")
                if answer.status_code == 200:
                    return
                problem = f"{answer.status_code} {answer.text[:300]}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise StackError(f"intake API {self.base} not ready after {timeout:.0f} s: {problem}")
            time.sleep(1)

    def push(self, queue: str, events: list[dict[str, Any]]) -> list[int]:
        answer = self.client.post(f"/events/{queue}", json={"events": events})
        if answer.status_code != 201:
            raise StackError(f"push to {queue} refused: {answer.status_code} {answer.text[:500]}")
        return [int(i) for i in answer.json()["ids"]]

    def push_soap(self, soap_url: str, token: str) -> int:
        """One real-time event through Campaign's SOAP interface (``nms:rtEvent#PushEvent``), as an
        existing Campaign integration sends it; the answer's ``plId`` is the event id."""
        envelope = f"""<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent">
  <soapenv:Body><urn:PushEvent><urn:sessiontoken>mc/{token}</urn:sessiontoken><urn:domEvent>
    <rtEvent type="ORDER_CONFIRMATION" email="carl@example.com" wishedChannel="0">
      <ctx><firstName>Carl</firstName><orderId>5678</orderId></ctx>
    </rtEvent>
  </urn:domEvent></urn:PushEvent></soapenv:Body>
</soapenv:Envelope>"""
        answer = httpx.post(
            soap_url,
            content=envelope.encode(),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"nms:rtEvent#PushEvent"'},
            timeout=30,
        )
        match = re.search(r"<plId[^>]*>(-?\d+)</plId>", answer.text)
        if answer.status_code != 200 or match is None:
            raise StackError(f"SOAP PushEvent refused: {answer.status_code} {answer.text[:500]}")
        return int(match[1])

    def status(self, queue: str, event_id: int) -> tuple[int, str]:
        answer = self.client.get(f"/events/{queue}/{event_id}")
        answer.raise_for_status()
        event = answer.json()
        return int(event["status"]), str(event["status_name"])


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop


def sms_provider() -> str:
    """The SMS provider ``MC_DEMO_SMS`` names (``smpp`` when unset); :class:`StackError` for another."""
    name = os.environ.get(SMS_VAR, "").strip().lower() or "smpp"
    if name not in SMS_PROVIDERS:
        raise StackError(
            f"{SMS_VAR}={os.environ[SMS_VAR]!r}: the demo's SMS provider is one of {', '.join(SMS_PROVIDERS)}"
        )
    return name


def run(demo_dir: Path, *, check: bool, sms: str = "smpp") -> int:
    """Start everything, then either wait for Ctrl-C (demo) or run the end-to-end check; ``sms``:
    the provider behind ``mc_sms`` (:data:`~devstack.simulators.SMS_PROVIDERS`)."""
    started = time.monotonic()
    demo_dir.mkdir(parents=True, exist_ok=True)
    messages_to_file(demo_dir / "logs" / "sinks.log")
    port = _port("MC_DEMO_PORT", 8080, check)
    smtp_port = _port("MC_DEMO_SMTP_PORT", 8025, check)
    smsc_port = _port("MC_DEMO_SMSC_PORT", 2775, check)
    pop3_port = _port("MC_DEMO_POP3_PORT", 8110, check)
    with ExitStack() as resources:
        admin_dsn = resources.enter_context(postgres(demo_dir))
        dbs = create_databases(admin_dsn, fresh=check and bool(os.environ.get("MC_DSN")))
        load_example_templates(dbs.mc_dsn)
        token = api_token(demo_dir)
        bounces = demo_dir / "bounces"
        mail = resources.enter_context(MailSink(demo_dir / "mail", smtp_port, bounces=bounces))
        providers = resources.enter_context(
            Simulators(demo_dir, sms=sms, smsc_port=smsc_port, smsc_password=smsc_password(demo_dir))
        )
        mailbox = resources.enter_context(
            Pop3Server(bounces, _secret_file(demo_dir / "bounce-password"), pop3_port)
        )
        config = AirflowConfig(
            home=demo_dir / "airflow",
            metadata_dsn=dbs.airflow_dsn,
            port=port,
            jwt_secret=_secret_file(demo_dir / "jwt-secret", lambda: secrets.token_urlsafe(64)),
            admin_password=_secret_file(demo_dir / "admin-password", lambda: secrets.token_urlsafe(12)),
            viewer_password=_secret_file(demo_dir / "viewer-password", lambda: secrets.token_urlsafe(12)),
            extra={
                **connections_env(dbs, mail, providers, mailbox),
                **feedback_env(demo_dir, f"http://127.0.0.1:{port}"),
                "MC_API_TOKENS": token,
                "MC_INSTANCE_ID": "1",
            },
        )
        config.write_passwords_file()
        stack = resources.enter_context(Stack(config, demo_dir / "logs"))
        api = f"{config.base_url}/messagecenter/api/v1"
        write_env_file(
            demo_dir / "env",
            {**stack.env, ADMIN_DSN_VAR: admin_dsn, API_VAR: api, TOKEN_VAR: token, DSN_VAR: dbs.mc_dsn},
        )
        log.info("creating / upgrading the Airflow metadata database")
        stack.migrate()
        stack.start_airflow()
        stack.wait_healthy()
        # smsReceipts reads an SMSC: with a REST provider the receipts come to the API, and its task
        # would fail on an mc_sms that is not smpp.
        receipts = [RECEIPTS_DAG] if sms == "smpp" else []
        stack.wait_for_dags([*EXECUTION_DAGS, BOUNCE_DAG, *receipts, PUBLISH_DAG, ARCHIVING_DAG])
        publish_on_execution(stack)
        stack.unpause([*EXECUTION_DAGS, BOUNCE_DAG, *receipts])
        intake = IntakeClient(api, token)
        intake.wait_ready()
        pushed = {queue: intake.push(queue, events) for queue, events in SAMPLE_EVENTS.items()}
        pushed["rt"].append(intake.push_soap(f"{config.base_url}/nl/jsp/soaprouter.jsp", token))
        if check:  # a check on a reused database starts from a known state: the address not quarantined
            release_bounce_address(dbs.mc_dsn)
        bounced = intake.push("rt", [BOUNCE_EVENT])[0]
        log.info(
            "pushed sample events: %s, and %d to %s (ready after %.0f s; SMS: %s)",
            pushed,
            bounced,
            BOUNCE_EVENT["email"],
            time.monotonic() - started,
            sms,
        )
        if check:
            problems = check_delivery(stack, intake, pushed, demo_dir, bounce=(bounced, dbs.mc_dsn))
            if not problems:
                problems = check_tour(stack, demo_dir, dbs.mc_dsn)
            problems += failed_runs(stack)  # a first start, the tour included, ends green
            if problems:
                log.error("demo check FAILED after %.0f s: %s", time.monotonic() - started, problems)
                return 1
            log.info(
                "demo check OK (SMS over %s): delivery, bounce and the README's tour; wall time %.0f s",
                sms,
                time.monotonic() - started,
            )
            return 0
        print(banner(DemoInfo.read(demo_dir), running=True, started=True), flush=True)  # noqa: T201  (what the user reads)
        watch(stack, StatusLine(stack, dbs.mc_dsn, mail, providers))


def release_bounce_address(mc_dsn: str) -> None:
    """Make the bounce event's address Valid again (a check that reuses ``.demo/`` found it quarantined)."""
    with psycopg.connect(mc_dsn, autocommit=True) as conn:
        state = quarantine.get_state(conn, Channel.EMAIL, BOUNCE_EVENT["email"])
        if state.status != quarantine.AddressStatus.VALID:
            quarantine.set_status(
                conn, Channel.EMAIL, state.address, quarantine.AddressStatus.VALID, source="demo-check"
            )


def bounce_address_state(mc_dsn: str) -> quarantine.AddressState:
    with psycopg.connect(mc_dsn, autocommit=True) as conn:
        return quarantine.get_state(conn, Channel.EMAIL, BOUNCE_EVENT["email"])


def check_delivery(
    stack: Stack,
    intake: IntakeClient,
    pushed: dict[str, list[int]],
    demo_dir: Path,
    *,
    bounce: tuple[int, str],
) -> list[str]:
    """Wait until every pushed event is Sent, the messages reached the sinks, and the bounce event
    (``bounce``: its id and the database) is Delivery failed with its address quarantined as User
    unknown; then check that the next event to that address is Ignored. What did not happen."""
    bounce_id, mc_dsn = bounce
    pushed_at = time.monotonic()
    deadline = pushed_at + CHECK_TIMEOUT
    statuses: dict[tuple[str, int], tuple[int, str]] = {}
    bounced: tuple[int, str] = (-1, "not read")
    address = quarantine.AddressState("email", BOUNCE_EVENT["email"], quarantine.AddressStatus.VALID)
    receipt = False
    while time.monotonic() < deadline:
        stack.check_alive()
        statuses = {(q, i): intake.status(q, i) for q, ids in pushed.items() for i in ids}
        bounced = intake.status("rt", bounce_id)
        address = bounce_address_state(mc_dsn)
        receipt = _sms_delivered(mc_dsn, SAMPLE_SMS_NUMBER)
        if (
            all(code == Status.SENT for code, _ in statuses.values())
            and bounced[0] == Status.FAILED
            and address.status == quarantine.AddressStatus.QUARANTINE
            and receipt
        ):
            break
        time.sleep(2)
    waited = time.monotonic() - pushed_at
    for (queue, event_id), (code, name) in statuses.items():
        log.info("%-5s event %d: status %d (%s)", queue, event_id, code, name)
    problems = [
        f"{q} event {i} is {name} ({code})"
        for (q, i), (code, name) in statuses.items()
        if code != Status.SENT
    ]
    if not receipt:
        problems.append(f"no delivery receipt applied to the SMS to {SAMPLE_SMS_NUMBER}")
    problems += bounce_problems(stack, intake, (bounce_id, bounced), address, deadline)
    problems += sink_problems(demo_dir)
    if not problems:
        problems += doctor_errors(demo_dir)
    if not problems:
        log.info(
            "delivery OK: all events Sent, the SMS receipt applied, the bounce Delivery failed and its "
            "address quarantined %.0f s after the push, the next event to it Ignored",
            waited,
        )
    return problems


TOUR_COMMAND_TIMEOUT = 600.0  # a backfill waits for its runs
PROMISE_TIMEOUT = 180.0  # for what a tour command promises (a DAG appears, a run succeeds)


def check_tour(stack: Stack, demo_dir: Path, mc_dsn: str) -> list[str]:
    """Run the README's tour as a reader would: in a shell at the root of the clone with nothing set
    but ``PATH`` and ``HOME``, command after command. After a command, wait for what the tour
    promises of it (:func:`tour_promise`); the backfill is run twice, the second time at once, as
    a reader who reruns it does. The problems: the first command that failed, or the promise not
    kept."""
    commands = tour.tour_commands()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    log.info("running the README's tour: %d commands", len(commands))
    with tour.Shell(REPO, env) as shell:
        for command in commands:
            runs = 2 if "archiving backfill" in command else 1  # the second: an immediate rerun
            for _ in range(runs):
                result = shell.run(tour.in_folder(command, demo_dir), TOUR_COMMAND_TIMEOUT)
                log.info("tour: exit %s after %.0f s: %s", result.code, result.seconds, _one_line(command))
                for line in result.output.strip().splitlines()[-6:]:
                    log.info("tour:   | %s", line[:200])
                if result.code != 0:
                    return [f"tour command failed (exit {result.code}): {command}\n{result.output[-3000:]}"]
            problem = tour_promise(stack, command, result.seconds, mc_dsn)
            if problem:
                return [problem]
    log.info("tour OK: its %d commands succeeded, in the README's order", len(commands))
    return []


def tour_promise(stack: Stack, command: str, took: float, mc_dsn: str) -> str | None:
    """What the tour says follows ``command`` (which ran for ``took`` seconds) and did not, or None:
    a DAG turned on is on, a triggered run succeeds, an archiving DAG appears with its connection
    and goes with it (how long that took from the start of the command is logged), an SMS is
    delivered (its receipt applied), a push per platform is Sent."""
    from messagecenter.airflow.registry import archiving_dag_id

    if match := re.search(r'"mobile_phone": "([^"]+)"', command):
        number = match[1]
        return _wait(stack, f"the SMS to {number} delivered", lambda: _sms_delivered(mc_dsn, number), took)
    if platforms := re.findall(r'"channel": "(android|ios)"', command):
        return _wait(
            stack, f"a push Sent to {' and '.join(platforms)}", lambda: _pushed(mc_dsn, platforms), took
        )

    if match := re.search(r"airflow dags unpause (\w+)", command):
        dag_id = match[1]
        return _wait(stack, f"{dag_id} on", lambda: not stack.is_paused(dag_id))
    if match := re.search(r"airflow dags trigger (\w+)", command):
        triggered = match[1]
        return _wait(stack, f"the run of {triggered} succeeded", lambda: _last_run_ok(stack, triggered))
    if match := re.search(r"airflow connections (add|delete) mc_exec_(\w+)", command):
        added, dag_id = match[1] == "add", archiving_dag_id(match[2])
        what = f"{dag_id} {'appeared' if added else 'went'}"
        return _wait(stack, what, lambda: _dag_active(stack, dag_id) == added, took)
    return None


def _wait(stack: Stack, what: str, done: Callable[[], bool], took: float = 0) -> str | None:
    """Wait up to ``PROMISE_TIMEOUT`` until ``done()``; log how long ``what`` took after the start
    of a command that ran ``took`` seconds. None, or the problem."""
    started = time.monotonic()
    while time.monotonic() - started < PROMISE_TIMEOUT:
        stack.check_alive()
        if done():
            waited = took + time.monotonic() - started
            log.info("tour: %s %.0f s after the command started (it ran %.0f s)", what, waited, took)
            return None
        time.sleep(1)
    return f"tour: not {what} {PROMISE_TIMEOUT:.0f} s after the command"


def _sms_delivered(mc_dsn: str, number: str) -> bool:
    """Whether an SMS to ``number`` was Sent and its delivery receipt said delivered."""
    with psycopg.connect(mc_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM mc.delivery_log"
            " WHERE channel = %s AND address = %s AND status = %s AND delivery = 1",
            (Channel.SMS, number, Status.SENT),
        ).fetchone()
    return row is not None


def _pushed(mc_dsn: str, platforms: list[str]) -> bool:
    """Whether a push to each of ``platforms`` was Sent in the last two minutes."""
    with psycopg.connect(mc_dsn, autocommit=True) as conn:
        return all(
            conn.execute(
                "SELECT 1 FROM mc.delivery_log WHERE channel = %s AND status = %s"
                " AND created > now() - interval '2 minutes'",
                (Channel[platform.upper()], Status.SENT),
            ).fetchone()
            for platform in platforms
        )


def _dag_active(stack: Stack, dag_id: str) -> bool:
    answer = stack.rest("GET", f"/dags/{dag_id}")
    return answer.status_code == 200 and not answer.json().get("is_stale")


def _last_run_ok(stack: Stack, dag_id: str) -> bool:
    """Whether the latest run of ``dag_id`` succeeded (a failed one raises: no use waiting)."""
    runs = stack.rest("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 1})
    state = (runs.json().get("dag_runs") or [{}])[0].get("state")
    if state == "failed":
        raise StackError(f"the latest run of {dag_id} failed (task logs: {stack.config.home / 'logs'})")
    return state == "success"


def _one_line(command: str) -> str:
    text = " ".join(command.replace("\\\n", " ").split())
    return text if len(text) <= 120 else text[:117] + "..."


def bounce_problems(
    stack: Stack,
    intake: IntakeClient,
    bounce: tuple[int, tuple[int, str]],
    address: quarantine.AddressState,
    deadline: float,
) -> list[str]:
    """What went wrong with the bounce event (its id and status) and its address; when nothing did,
    push one more event to the address and wait (until ``deadline``) for it to be Ignored."""
    bounce_id, (code, name) = bounce
    log.info("rt    event %d to %s: status %d (%s)", bounce_id, address.address, code, name)
    log.info(
        "quarantine of %s: %s (%s; %s)",
        address.address,
        address.status.api_name,
        address.failure_reason,
        address.reason,
    )
    problems = []
    if code != Status.FAILED:
        problems.append(f"rt event {bounce_id} to {address.address} is {name} ({code}), not Delivery failed")
    if address.status != quarantine.AddressStatus.QUARANTINE or address.failure_reason != "User unknown":
        problems.append(
            f"{address.address} is {address.status.api_name} ({address.failure_reason}), "
            "not in quarantine for User unknown"
        )
    if problems:
        return problems
    again = intake.push("rt", [BOUNCE_EVENT])[0]
    status = intake.status("rt", again)
    while not Status(status[0]).is_final and time.monotonic() < deadline + 30:
        stack.check_alive()
        time.sleep(1)
        status = intake.status("rt", again)
    log.info("rt    event %d to %s, now quarantined: status %d (%s)", again, address.address, *status)
    if status[0] != Status.IGNORED:
        return [
            f"rt event {again} to quarantined {address.address} is {status[1]} ({status[0]}), not Ignored"
        ]
    return []


def sink_problems(demo_dir: Path) -> list[str]:
    """What the sinks lack: the sample messages, and a signed VERP return path on each mail."""
    problems = []
    mails = sorted((demo_dir / "mail").glob("*.eml"), key=lambda path: int(path.stem))
    wanted_mails = _sample_count("email") + 1  # and the one pushed through SOAP
    if len(mails) < wanted_mails:
        problems.append(f"{len(mails)} mail file(s) in {demo_dir / 'mail'}, expected {wanted_mails}")
    key = (demo_dir / "feedback-secret").read_text().strip().encode()
    for mail in mails[-wanted_mails:]:  # this run's (a reused demo folder keeps earlier ones)
        first = mail.read_text().partition("\n")[0]
        return_path = first.removeprefix("Return-Path:").strip()
        if not first.startswith("Return-Path:") or verp.event_id_from(return_path, key) is None:
            problems.append(f"{mail} has no signed VERP return path: {first!r}")
    log.info("mail files: %s", ", ".join(p.name for p in mails[-wanted_mails:]))
    for name, channels in (("sms", ("sms",)), ("push", ("android", "ios"))):
        expected = sum(_sample_count(channel) for channel in channels)
        path = demo_dir / f"{name}.log"
        got = len(path.read_text().splitlines()) if path.exists() else 0
        if got < expected:
            problems.append(f"{got} line(s) in {path}, expected {expected}")
    return problems


def doctor_errors(demo_dir: Path) -> list[str]:
    """Run ``python -m messagecenter doctor`` as an operator would (``source .demo/env`` in a shell
    with nothing else set); its errors, if any. Warnings (say, nothing archived yet) are logged."""
    import subprocess

    script = f"source {shlex.quote(str(demo_dir / 'env'))} && python -m messagecenter doctor --json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(
        ["bash", "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        findings = json.loads(done.stdout[done.stdout.find("{") :])["findings"]
    except (ValueError, KeyError):
        return [f"doctor failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}"]
    for finding in findings:
        if finding["level"] != "ok":
            log.info("doctor: %s %s: %s", finding["level"], finding["what"], finding["message"])
    log.info("doctor: %d finding(s), exit code %d", len(findings), done.returncode)
    return [f"doctor: {f['what']}: {f['message']}" for f in findings if f["level"] == "error"]


def failed_runs(stack: Stack) -> list[str]:
    """The failed DAG runs in the Airflow metadata DB, if any: a first start ends green (a workflow
    that waits for another, say publishTemplates before the first heartbeats, is not a failure)."""
    answer = stack.rest("GET", "/dags/~/dagRuns", params={"state": "failed", "limit": 100})
    if answer.status_code != 200:
        return [f"DAG runs unreadable: {answer.status_code} {answer.text[:500]}"]
    runs = answer.json()["dag_runs"]
    log.info("failed DAG runs: %d", len(runs))
    return [f"DAG run {run['dag_id']} {run['dag_run_id']} failed" for run in runs]


def _sample_count(channel: str) -> int:
    return sum(1 for events in SAMPLE_EVENTS.values() for e in events if e.get("channel", "email") == channel)


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """Write the demo's environment as ``export`` lines (mode 0600: it holds passwords), so that after
    ``source .demo/env`` the ``airflow`` and ``python -m messagecenter`` commands act on the demo."""
    wanted = {
        k: v
        for k, v in sorted(env.items())
        if (k.startswith(("AIRFLOW_HOME", "AIRFLOW__", "AIRFLOW_CONN_", "MC_")) or k == "PYTHONPATH")
        and k != STACK_MARKER  # marks the demo's own processes, not the user's
    }
    lines = ["# The demo's environment: source it, then run airflow ... or python -m messagecenter ..."]
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    lines += [f"export {k}={shlex.quote(v)}" for k, v in wanted.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def add_instance(name: str, instance_id: int, admin_dsn: str | None = None) -> dict[str, Any]:
    """Create the database of execution instance ``name`` on the demo's PostgreSQL (``mc_exec_<name>``),
    install the execution schema (what ``python -m messagecenter db upgrade --schema execution`` does),
    and return the ``mc_exec_<name>`` connection to add (JSON form), of the type the "Add connection"
    form shows as "Message Center execution instance"."""
    from messagecenter.airflow.connection_types import EXECUTION_CONN_TYPE
    from messagecenter.airflow.registry import check_instance_name

    admin_dsn = admin_dsn or os.environ.get(ADMIN_DSN_VAR)
    if not admin_dsn:
        raise StackError(f"{ADMIN_DSN_VAR} is not set: `source .demo/env` first (while the demo runs)")
    dbname = f"mc_exec_{check_instance_name(name)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = _dsn_for(admin_dsn, dbname)
    with psycopg.connect(dsn) as conn:
        schema.upgrade(conn, "execution")
    return {**postgres_connection(dsn, instance_id=instance_id), "conn_type": EXECUTION_CONN_TYPE}


@dataclass(frozen=True)
class DemoInfo:
    """What the banner shows, read back from the demo folder (``env`` and the password files), so
    that ``--info`` prints it again without starting anything."""

    demo_dir: Path
    base_url: str
    api: str
    token: str
    admin_password: str
    viewer_password: str
    mc_dsn: str
    airflow_home: Path
    sms: str  # which of SMS_PROVIDERS backs mc_sms

    @classmethod
    def read(cls, demo_dir: Path) -> DemoInfo:
        """:raises StackError: no demo ran in ``demo_dir`` yet (or an older one, without these)."""
        env = read_env_file(demo_dir / "env")
        try:
            return cls(
                demo_dir=demo_dir,
                base_url=env["AIRFLOW__API__BASE_URL"],
                api=env[API_VAR],
                token=env[TOKEN_VAR],
                admin_password=(demo_dir / "admin-password").read_text().strip(),
                viewer_password=(demo_dir / "viewer-password").read_text().strip(),
                mc_dsn=env[DSN_VAR],
                airflow_home=Path(env["AIRFLOW_HOME"]),
                sms=sms_provider_of(json.loads(env.get("AIRFLOW_CONN_MC_SMS", '{"conn_type": "smpp"}'))),
            )
        except (KeyError, OSError) as exc:
            raise StackError(f"{demo_dir} lacks {exc}: start the demo once with `make demo`") from None

    def running(self) -> bool:
        """Whether the demo's Airflow answers (the demo is running)."""
        try:
            return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of ``.demo/env`` (written by :func:`write_env_file`).

    :raises StackError: there is none: the demo never ran in that folder.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StackError(f"no demo in {path.parent}: `make demo` starts one there") from None
    env = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def banner(info: DemoInfo, *, running: bool, started: bool = False) -> str:
    """The demo's URLs, logins, token and files; ``running``: whether it runs now; ``started``: the
    demo's own console, just started (the status lines follow), rather than ``--info``."""
    d = info.demo_dir
    sample = json.dumps(SAMPLE_EVENTS["rt"][0])
    if started:
        title = "Message Center demo is running (the execution workflows are on; sample events were pushed)"
    elif running:
        title = f"Message Center demo in {d}: running"
    else:
        title = f"Message Center demo in {d}: NOT running (`make demo` starts it again); its settings:"
    status = (
        f"\n  Status:       a line below every {STATUS_SECONDS:.0f} s when something changed"
        if started
        else ""
    )
    stop = "\n  Stop:         Ctrl-C in the console of `make demo`" if running else ""
    secrets_kept = ", ".join(  # api-token is not written when MC_API_TOKENS gives the token
        str(path) for path in (d / "admin-password", d / "viewer-password", d / "api-token") if path.exists()
    )
    return f"""
{title}
  Airflow UI:   {info.base_url}   login: admin / {info.admin_password}
                (read-only user: viewer / {info.viewer_password})
  Page:         {info.base_url}/plugin/messagecenter   (Browse > Message Center)
  Intake API:   {info.api}   (OpenAPI: {info.base_url}/messagecenter/docs)
  SOAP (Campaign's PushEvent): {info.base_url}/nl/jsp/soaprouter.jsp   sessiontoken: mc/<the token>
  API token:    {info.token}
  Push:         curl -s -X POST {info.api}/events/rt -H 'Authorization: Bearer {info.token}' \\
                  -H 'Content-Type: application/json' -d '{sample}'
  Read:         curl -s {info.api}/events/rt/<id> -H 'Authorization: Bearer {info.token}'
  Mail:         {d / "mail"}/<n>.eml
  SMS / push:   {d / "sms.log"} ({SMS_VAR}={info.sms}: {SMS_PROVIDERS.get(info.sms, info.sms)}),
                {d / "push.log"} (FCM, APNs)
  Bounces:      the SMTP server refuses bounce-<x>@... (550 user unknown) and softbounce-<x>@... (452
                mailbox full); {BOUNCE_EVENT["email"]} was refused, and is quarantined within a
                minute: `python -m messagecenter quarantine list` (after sourcing the env, below);
                dsnbounce-<x>@... is accepted, then bounced with a DSN into the bounce mailbox
                ({d / "bounces"}, served over POP3), which bounceProcessing reads every 5 minutes
  Database:     {info.mc_dsn}
  Logs:         {d / "logs"} (components; sinks.log: a line per message), {info.airflow_home / "logs"} (tasks)
  Operate it:   source {d / "env"}   then e.g. `airflow dags list`, `python -m messagecenter doctor`
  Kept in:      {secrets_kept};
                all of the above in {d / "env"}. Print this again: make demo-info{status}{stop}
"""


def messages_to_file(path: Path) -> None:
    """Send the sinks' line per message to ``path`` instead of the console, where 2,000 mails
    would bury the banner and the status lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    sinks_log = logging.getLogger("devstack.sinks")
    for old in list(sinks_log.handlers):  # a second run in the same process (tests)
        sinks_log.removeHandler(old)
        old.close()
    sinks_log.addHandler(handler)
    sinks_log.setLevel(logging.INFO)
    sinks_log.propagate = False


# Status codes as the status line counts them (0 and 1 are both still to be delivered).
_STATUS_WORDS = {
    Status.PENDING: "pending",
    Status.PENDING_DELIVERY: "pending",
    Status.SENT: "sent",
    Status.IGNORED: "ignored",
    Status.FAILED: "failed",
    Status.NOT_TAKEN_INTO_ACCOUNT: "no template",
    Status.EXPIRED: "expired",
}


class StatusLine:
    """The console's status line: Airflow's components, the events per status, what the sinks got."""

    def __init__(self, stack: Stack, mc_dsn: str, mail: MailSink, provider: Simulators) -> None:
        self.stack, self.mc_dsn, self.mail, self.provider = stack, mc_dsn, mail, provider

    def read(self) -> tuple[str, bool]:
        """The line, and whether everything is healthy."""
        airflow, healthy = self._airflow()
        try:
            events = self._events()
        except psycopg.Error as exc:
            events, healthy = f"events: database unreachable ({str(exc).strip()[:200]})", False
        mail, sms_push = self.mail.counts, self.provider.counts
        sinks = (
            f"sinks: {mail['accepted']} mail(s) ({mail['refused']} refused), "
            f"{sms_push['sms']} SMS, {sms_push['push']} push"
        )
        return f"status: {airflow} | {events} | {sinks}", healthy

    def _airflow(self) -> tuple[str, bool]:
        up = sum(c.process.poll() is None for c in self.stack.components.values())
        processes = f"{up}/{len(self.stack.components)} Airflow processes up"
        try:
            health = httpx.get(f"{self.stack.config.base_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            return f"{processes}, health unreadable ({exc!r})", False
        unhealthy = [
            name
            for name, part in health.items()
            if isinstance(part, dict) and part.get("status") != "healthy"
        ]
        if unhealthy:
            return f"{processes}, NOT healthy: {', '.join(unhealthy)}", False
        return f"{processes}, healthy", up == len(self.stack.components)

    def _events(self) -> str:
        counts: dict[str, int] = dict.fromkeys(("sent", "failed", "ignored", "pending"), 0)
        with psycopg.connect(self.mc_dsn, connect_timeout=5) as conn:
            for queue in QUEUES:
                for code, number in store.status_counts(conn, queue).items():
                    word = _STATUS_WORDS[Status(code)]
                    counts[word] = counts.get(word, 0) + number
        total = sum(counts.values())
        return f"events: {total} pushed, " + ", ".join(f"{n} {word}" for word, n in counts.items())


def watch(stack: Stack, status: StatusLine) -> NoReturn:
    """Until Ctrl-C: stop if a component dies; log the status line every ``STATUS_SECONDS`` when
    it changed, and every ``STATUS_REPEAT_SECONDS`` anyway (a warning when something is wrong)."""
    last, last_at, next_at = "", 0.0, 0.0
    while True:
        stack.check_alive()
        now = time.monotonic()
        if now >= next_at:
            line, healthy = status.read()
            if line != last or now - last_at >= STATUS_REPEAT_SECONDS:
                log.log(logging.INFO if healthy else logging.WARNING, "%s", line)
                last, last_at = line, now
            next_at = now + STATUS_SECONDS
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="headless end-to-end check (make demo-check)")
    parser.add_argument(
        "--add-instance",
        metavar="NAME",
        help="with the demo running and `source .demo/env`: create the database of execution instance "
        "NAME on the demo's PostgreSQL, migrate it, and print its connection as JSON, for "
        "`airflow connections add mc_exec_NAME --conn-json ...` (or the fields of the UI's form)",
    )
    parser.add_argument("--instance-id", type=int, default=2, help="instance_id of --add-instance (2)")
    parser.add_argument(
        "--info",
        action="store_true",
        help="print the banner (URLs, logins, token, files) from .demo/ without starting anything "
        "(make demo-info)",
    )
    args = parser.parse_args(argv)
    if args.info:
        try:
            info = DemoInfo.read(Path(os.environ.get("MC_DEMO_DIR", ".demo")).resolve())
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        print(banner(info, running=info.running()))  # noqa: T201
        return 0
    if args.add_instance:
        logging.basicConfig(level=logging.WARNING)
        try:
            connection = add_instance(args.add_instance, args.instance_id)
        except (StackError, ConfigError, psycopg.Error) as exc:
            print(f"error: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        print(json.dumps(connection))  # noqa: T201
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "pgserver", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must stop the demo even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sms = sms_provider()
    except StackError as exc:
        log.error("%s", exc)
        return 1
    fresh = args.check and not os.environ.get("MC_DEMO_DIR")
    if fresh:
        demo_dir = Path(tempfile.mkdtemp(prefix="mc-demo-check-"))
    else:
        demo_dir = Path(os.environ.get("MC_DEMO_DIR", ".demo")).resolve()
    code = 1
    try:
        code = run(demo_dir, check=args.check, sms=sms)
    except (KeyboardInterrupt, Stop):
        log.info("stopped")
        code = 0 if not args.check else 130
    except StackError as exc:
        log.error("%s", exc)
    finally:
        if fresh and code == 0:
            shutil.rmtree(demo_dir, ignore_errors=True)
        elif fresh:
            log.error("kept the check's directory for inspection: %s", demo_dir)
    return code


if __name__ == "__main__":
    sys.exit(main())
