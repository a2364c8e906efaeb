"""``make demo``: Message Center on an embedded PostgreSQL, no Docker needed.

At this stage the demo runs the execution database and the intake API (the Airflow workflows join it
as they land). Data is kept in ``.demo/`` so a second run reuses it; Ctrl-C stops everything.
``MC_DSN`` points the demo at an existing PostgreSQL instead of the embedded one.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from messagecenter import schema
from messagecenter.config import load_settings

log = logging.getLogger("messagecenter.demo")
DEMO_DIR = Path(os.environ.get("MC_DEMO_DIR", ".demo")).resolve()
DEMO_DB = "messagecenter"
SAMPLE_EVENT = '{"type":"OTP","channel":"sms","mobile_phone":"+33612345678","ctx":{"code":"4711"}}'


def start_postgres() -> tuple[str, object | None]:
    """DSN of the demo database, and the embedded server handle (None when ``MC_DSN`` is used)."""
    if os.environ.get("MC_DSN"):
        return os.environ["MC_DSN"], None
    import pgserver

    DEMO_DIR.mkdir(exist_ok=True)
    server = pgserver.get_server(DEMO_DIR / "pgdata", cleanup_mode="stop")
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    params = conninfo_to_dict(admin)
    params["dbname"] = DEMO_DB
    return make_conninfo(**params), server


def api_token() -> str:
    """The demo's API token: ``MC_API_TOKENS`` if set, else one generated once and kept in ``.demo/``."""
    configured = load_settings().api_tokens
    if configured:
        return configured[0]
    DEMO_DIR.mkdir(exist_ok=True)
    path = DEMO_DIR / "api-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> None:
    import uvicorn

    from messagecenter.api import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dsn, server = start_postgres()
    with psycopg.connect(dsn) as conn:
        for component in schema.COMPONENTS:
            schema.upgrade(conn, component)
    token = api_token()
    port = int(os.environ.get("MC_DEMO_API_PORT", "8090"))
    settings = load_settings({**os.environ, "MC_API_TOKENS": token})
    base = f"http://127.0.0.1:{port}/api/v1"
    banner = f"""
Message Center demo (execution database + intake API; Airflow workflows come with the next issues)
  API:        {base}   (OpenAPI: http://127.0.0.1:{port}/docs)
  API token:  {token}
  Database:   {dsn}
  Push:       curl -s -X POST {base}/events/rt -H 'Authorization: Bearer {token}' \\
                -H 'Content-Type: application/json' \\
                -d '{SAMPLE_EVENT}'
  Read:       curl -s {base}/events/rt/<id> -H 'Authorization: Bearer {token}'
  Stop:       Ctrl-C
"""
    log.info("%s", banner)
    try:
        uvicorn.run(create_app(settings, dsn=dsn), host="127.0.0.1", port=port, log_level="info")
    finally:
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
