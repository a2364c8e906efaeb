"""Fixtures of the SOAP tests: the real standalone API (uvicorn, real HTTP) on a database of its own,
and Adobe's JavaScript SDK installed from the npm registry.

The server is started once for the module's tests (starting uvicorn per test would dominate the run);
tests that check "nothing stored" compare counts before and after, as the fuzzing tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.conftest import REPO, airflow_uri, create_database, drop_database

TOKEN = "soap-token"
OTHER_TOKEN = "soap-token-2"
INSTANCE_ID = 3
MAX_EVENTS = 50  # MC_SOAP_MAX_EVENTS of the server
MAX_BODY = 256 * 1024  # MC_SOAP_MAX_BODY_BYTES of the server
SDK_VERSION = "1.2.0"
SDK_DIR = Path(f"/tmp/mc-acc-js-sdk-{SDK_VERSION}")  # a cache shared by runs, outside the repository

SERVER = """
import socket
import sys

import uvicorn

fd = int(sys.argv[1])
# The inherited socket as what it is (uvicorn's own fd= takes any socket for a Unix one: no TCP_NODELAY).
sockets = [socket.socket(fileno=fd)]
uvicorn.Server(uvicorn.Config("messagecenter.api:app", log_level="warning", ws="none")).run(sockets=sockets)
"""


@dataclass(frozen=True)
class LiveApi:
    url: str
    dsn: str

    def stored(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM mc.rt_event) + (SELECT count(*) FROM mc.batch_event)"
            ).fetchone()
        assert row is not None
        return int(row[0])


def start_server(dsn: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``uvicorn messagecenter.api:app`` configured by ``env`` (as in production), on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
                "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(dsn),
                **env,
            },
        )
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, "the API did not start"
        assert time.monotonic() < deadline, "the API did not start in time"
        try:
            if requests.get(f"{url}/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent", timeout=5).ok:
                return server, url
        except requests.ConnectionError:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def live(pg_admin_dsn: str, template_db: str) -> Iterator[LiveApi]:
    """The standalone API with tokens ``TOKEN`` and ``OTHER_TOKEN``, instance 3, small SOAP limits."""
    name = f"mc_soap_{os.getpid()}_{time.monotonic_ns()}"
    dsn = create_database(pg_admin_dsn, name, template=template_db)
    server, url = start_server(
        dsn,
        {
            "MC_API_TOKENS": f"{TOKEN},{OTHER_TOKEN}",
            "MC_INSTANCE_ID": str(INSTANCE_ID),
            "MC_SOAP_MAX_EVENTS": str(MAX_EVENTS),
            "MC_SOAP_MAX_BODY_BYTES": str(MAX_BODY),
        },
    )
    try:
        yield LiveApi(url, dsn)
    finally:
        server.terminate()
        server.wait(timeout=30)
        drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="session")
def acc_sdk() -> Path:
    """A folder whose ``node_modules`` holds ``@adobe/acc-js-sdk`` (installed once, then reused)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed to run Adobe's JavaScript SDK")
    installed = SDK_DIR / "node_modules" / "@adobe" / "acc-js-sdk" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != SDK_VERSION:
        SDK_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-save", f"@adobe/acc-js-sdk@{SDK_VERSION}"],
            cwd=SDK_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot install @adobe/acc-js-sdk@{SDK_VERSION}: {done.stderr[-500:]}")
    return SDK_DIR


def run_sdk(sdk_dir: Path, **request: Any) -> dict[str, Any]:
    """Run ``acc_sdk_client.js`` with ``request`` (see that file) and return what it printed."""
    done = subprocess.run(
        ["node", str(Path(__file__).with_name("acc_sdk_client.js")), json.dumps(request)],
        env={**os.environ, "ACC_SDK_DIR": str(sdk_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
