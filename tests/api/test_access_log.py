"""The standalone API (``uvicorn messagecenter.api:app --access-log``) logs every request, also after
the first one that reads an Airflow connection, which imports Airflow and its logging setup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.builders import REPO, airflow_uri

TOKEN = "access-log-token"


def test_access_log_goes_on_after_airflow_is_imported(db_dsn: str, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "plugins"),
        "MC_API_TOKENS": TOKEN,
        # The execution database through its Airflow connection: the first authenticated request
        # that needs it imports Airflow.
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "messagecenter.api:app", "--port", str(port), "--access-log"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the API did not start in time"
                try:
                    requests.get(f"{base_url}/docs", timeout=5)
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert requests.get(f"{base_url}/api/v1/health", timeout=30).status_code == 401
            for _ in range(3):
                assert requests.get(f"{base_url}/api/v1/health", headers=auth, timeout=60).status_code == 200
            pushed = requests.post(
                f"{base_url}/api/v1/events/rt", json={"type": "OTP"}, headers=auth, timeout=30
            )
            assert pushed.status_code == 201, pushed.text
        finally:
            server.terminate()
            server.wait(timeout=30)
    output = log_path.read_text()
    assert output.count('"GET /api/v1/health HTTP/1.1" 401') == 1, output
    assert output.count('"GET /api/v1/health HTTP/1.1" 200') == 3, output
    assert output.count('"POST /api/v1/events/rt HTTP/1.1" 201') == 1, output
    assert "Finished server process" in output  # uvicorn's own messages too, to the end
