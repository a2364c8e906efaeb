"""Fixtures of the SOAP tests: the real standalone API (uvicorn, real HTTP) on a database of its own,
and Adobe's JavaScript SDK installed from the npm registry.

The server is started once for the module's tests (starting uvicorn per test would dominate the run);
tests that check "nothing stored" compare counts before and after, as the fuzzing tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builders import create_database, drop_database
from tests.support.soap import (
    INSTANCE_ID,
    MAX_BODY,
    MAX_EVENTS,
    OTHER_TOKEN,
    SDK_DIR,
    SDK_VERSION,
    TOKEN,
    LiveApi,
    start_server,
)


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
