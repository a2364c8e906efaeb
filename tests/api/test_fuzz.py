"""Fuzzing: schemathesis against the real standalone API (uvicorn, real HTTP, the test's database).

Requests are generated from the API's own OpenAPI document, both valid ones (positive) and ones that
break it (negative), with a fixed seed: the same requests at every run. Whatever they are, the API
answers no 5xx, stores nothing when it refuses (any non-2xx), and answers as its document says
(status codes, content types, bodies). A second run splices hostile bytes (huge numbers, invalid
UTF-8, NUL escapes, deep nesting...) anywhere into valid bodies. Afterwards, every stored event reads
back, through the API and as the delivery workers load ``ctx``.

schemathesis is driven through its Python API (``as_strategy`` under a plain Hypothesis ``@given``)
rather than its pytest plugin, so our fixtures and ``filterwarnings = error`` apply as usual.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import msgspec
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi import checks as openapi_checks

from tests.support.builders import REPO

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every provider webhook configured, so that a fuzzed call meets its verification, not a missing connection.
FEEDBACK_CONNECTIONS = {
    "ses": {"extra": {"topic_arns": ["arn:aws:sns:us-west-2:123456789012:MyTopic"]}},
    "sendgrid": {
        "extra": {
            "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1"
            "flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
        }
    },
    "mailgun": {"password": "mailgun-signing-key"},
    "postmark": {"login": "postmark", "password": "postmark-password"},
    "twilio": {"password": "twilio-auth-token"},
    "vonage": {"password": "vonage-signature-secret"},
}
EXAMPLES = 1000  # both tests: about 30 s on 2 cores, reading back included
# What every answer is checked against, besides "no 5xx" and "nothing stored when refused".
CHECKS: list[CheckFunction] = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.positive_data_acceptance,
]


# The API runs in its own process: its threads (the connection pool's, uvicorn's) must not touch
# this process's `random` while Hypothesis draws (Hypothesis takes that for a strategy using it).
SERVER = """
import socket
import sys

import uvicorn

from messagecenter.api import create_app
from messagecenter.core.settings import FeedbackSettings, IntakeSettings, Settings

dsn, token, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
feedback = FeedbackSettings(secret="a fuzzing secret of more than 32 characters")
intake = IntakeSettings(max_batch=20)
app = create_app(Settings(api_tokens=(token,), instance_id=7, intake=intake, feedback=feedback), dsn=dsn)
# The inherited socket as what it is (uvicorn's own fd= takes any socket for a Unix one: no TCP_NODELAY).
sockets = [socket.socket(fileno=fd)]
uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none")).run(sockets=sockets)
"""


@pytest.fixture
def live_api(db_dsn: str) -> Iterator[str]:
    """The standalone API served by uvicorn (real HTTP) on a free port, against the test's database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, db_dsn, TOKEN, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
                **{
                    f"AIRFLOW_CONN_MC_FEEDBACK_{name.upper()}": json.dumps({"conn_type": "generic", **conn})
                    for name, conn in FEEDBACK_CONNECTIONS.items()
                },
            },
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the API did not start"
            assert time.monotonic() < deadline, "the API did not start in time"
            try:
                if requests.get(f"{base_url}/openapi.json", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def stored(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT (SELECT count(*) FROM mc.rt_event) + (SELECT count(*) FROM mc.batch_event)"
    ).fetchone()[0]


def test_fuzzed_requests_get_no_5xx_and_refused_ones_store_nothing(
    live_api: str, conn: psycopg.Connection
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    strategy = schema.as_strategy(GenerationMode.POSITIVE, headers=AUTH) | schema.as_strategy(
        GenerationMode.NEGATIVE, headers=AUTH
    )
    statuses: Counter[tuple[str, int]] = Counter()

    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,  # a fixed seed: the same requests every run
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            before = stored(conn)
            response = case.call(base_url=live_api, session=session, timeout=30)
            statuses[(f"{case.method} {case.path}", response.status_code)] += 1
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
            if not 200 <= response.status_code < 300:
                assert stored(conn) == before, f"refused with {response.status_code} but stored"
            case.validate_response(response, checks=CHECKS)

        check()

    # The run reached every operation, and the push both stored and refused.
    operations = {operation for operation, _ in statuses}
    assert operations == {
        "POST /api/v1/events/{queue}",
        "GET /api/v1/events/{queue}/{event_id}",
        "GET /api/v1/health",
        "GET /api/v1/quarantine",
        "POST /api/v1/quarantine",
        "DELETE /api/v1/quarantine",
        "POST /api/v1/feedback/{provider}",
        "GET /api/v1/unsubscribe/{token}",
        "POST /api/v1/unsubscribe/{token}",
    }
    pushes: Counter[int] = Counter()
    for (operation, code), n in statuses.items():
        if operation.startswith("POST"):
            pushes[code] += n
    assert pushes[201] >= 50, statuses
    assert pushes[422] >= 20, statuses

    assert_everything_stored_reads_back(live_api, conn, at_least=pushes[201])


def assert_everything_stored_reads_back(base_url: str, conn: psycopg.Connection, at_least: int) -> None:
    """Every stored event reads back: through the API, and as the delivery workers load ctx."""
    rows = conn.execute(
        "SELECT 'rt', id, ctx::text FROM mc.rt_event"
        " UNION ALL SELECT 'batch', id, ctx::text FROM mc.batch_event"
    ).fetchall()
    assert len(rows) >= at_least
    with requests.Session() as session:
        for queue, event_id, ctx in rows:
            response = session.get(f"{base_url}/api/v1/events/{queue}/{event_id}", headers=AUTH, timeout=30)
            assert response.status_code == 200, response.text[:500]
            assert isinstance(msgspec.json.decode(ctx), dict)


# Byte-level fuzzing, below what a schema can generate: valid bodies with a hostile piece spliced in
# anywhere (inside a string, a number, a key, between tokens).
VALID_BODIES = [
    json.dumps(body).encode()
    for body in (
        {"type": "OTP", "channel": "sms", "mobile_phone": "+33612345678", "ctx": {"code": 123456}},
        {
            "type": "ORDER_CONFIRMATION",
            "email": "ann@example.com",
            "external_id": "order-1",
            "scheduled": "2031-05-06T07:08:09+02:00",
            "ctx": {"total": 42.5, "items": [{"sku": "X1", "qty": 2}], "name": "Zoé"},
        },
        {
            "events": [
                {"type": "NEWS", "ctx": {"n": 1}},
                {"type": "NEWS", "language": "fr", "ctx": {"n": [2.5e3]}},
            ]
        },
    )
]
HOSTILE_PIECES = [
    b"1e5000",
    b"1e131071",
    b"-1e-400",
    b"9223372036854775808",
    b"1" * 4301,
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"[" * 40,
    b"[" * 1100,
    b"{" * 1100,
    b'"',
    b"\\",
    b"0001-01-01T00:00:00+01:00",
    b"9999-12-31T23:00:00-05:00",
    b"\x00",
    b"NaN",
]


def splice(body: bytes, position: int, piece: bytes, replace: int) -> bytes:
    at = position % (len(body) + 1)
    return body[:at] + piece + body[at + replace :]


def test_hostile_bytes_get_4xx_or_are_stored_readable(live_api: str, conn: psycopg.Connection) -> None:
    statuses: Counter[int] = Counter()
    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES // 2,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            body=st.sampled_from(VALID_BODIES),
            position=st.integers(min_value=0),
            piece=st.sampled_from(HOSTILE_PIECES) | st.binary(min_size=1, max_size=4),
            replace=st.integers(min_value=0, max_value=3),
            queue=st.sampled_from(["rt", "batch"]),
        )
        def check(body: bytes, position: int, piece: bytes, replace: int, queue: str) -> None:
            sent = splice(body, position, piece, replace)
            before = stored(conn)
            response = session.post(
                f"{live_api}/api/v1/events/{queue}",
                data=sent,
                headers={**AUTH, "Content-Type": "application/json"},
                timeout=30,
            )
            statuses[response.status_code] += 1
            assert response.status_code < 500, f"{sent!r}: {response.text[:500]}"
            if response.status_code != 201:
                assert 400 <= response.status_code < 500
                assert stored(conn) == before, f"{sent!r} refused with {response.status_code} but stored"
                detail = response.json()["detail"]
                if response.status_code == 422:  # the part of the body at fault is named
                    assert detail[0]["loc"][0] == "body", detail
                else:
                    assert isinstance(detail, str), detail

        check()

    assert statuses[422] >= EXAMPLES // 4, statuses
    assert_everything_stored_reads_back(live_api, conn, at_least=statuses[201])
