"""Run an Airflow deployment of Message Center as child processes (the demo, its check, the tests).

Why not ``airflow standalone``: it forces LocalExecutor (the Celery test needs CeleryExecutor), always
starts a triggerer we do not need, prints credentials on its own, and its children share our process
group. Here every component is a child in its own process group, with its output in a log file, so
``stop()`` can end each one with everything it forked (task runners included) and leave no orphan.

The configuration is plain ``AIRFLOW__*`` environment variables, identical for every component: the
API server issues the tokens that tasks present to the execution API, so the JWT secret, the
execution API URL and the connections must agree across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = (sys.executable, "-m", "airflow")
EXECUTION_DAGS = ("rtEventsProcessing", "batchEventsProcessing", "updateEventsStatus")
# Environment marker carried by every child and grandchild: how stop() finds a process that left our
# process groups (a task runner that called setsid, say) so nothing outlives the stack.
STACK_MARKER = "MC_STACK_ID"


class StackError(RuntimeError):
    """A component failed to start, died, or did not become ready in time."""


def sqlalchemy_uri(dsn: str, driver: str = "postgresql+psycopg2") -> str:
    """SQLAlchemy URL of a libpq DSN (Airflow's metadata DB, Celery's result backend).

    psycopg2 is Airflow's tested PostgreSQL driver and comes with the postgres provider; a socket
    directory (the embedded server) goes in the ``host`` query parameter.
    """
    from sqlalchemy.engine import URL

    p = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    host = p.get("host") or "localhost"
    on_socket = host.startswith("/")
    url = URL.create(
        driver,
        username=p.get("user") or None,
        password=p.get("password") or None,
        host=None if on_socket else host,
        port=int(p["port"]) if p.get("port") and not on_socket else None,
        database=p.get("dbname"),
        query={"host": host} if on_socket else {},
    )
    return url.render_as_string(hide_password=False)


def postgres_connection(dsn: str, **extra: Any) -> dict[str, Any]:
    """An Airflow ``postgres`` connection (JSON form of ``AIRFLOW_CONN_*``) for a libpq DSN.

    JSON rather than a URI because the embedded server listens on a socket directory, which a URI
    can only carry as an extra that the hook would not read as the host.
    """
    p = conninfo_to_dict(dsn)
    conn: dict[str, Any] = {
        "conn_type": "postgres",
        "host": p.get("host") or "localhost",
        "port": int(p.get("port") or 5432),
        "schema": p.get("dbname") or "postgres",
        "login": p.get("user") or "postgres",
    }
    if p.get("password"):
        conn["password"] = p["password"]
    if extra:
        conn["extra"] = extra
    return conn


@dataclass(frozen=True)
class AirflowConfig:
    """What every Airflow component of one stack shares.

    :param home: ``AIRFLOW_HOME`` (airflow.cfg, task logs, the passwords file).
    :param metadata_dsn: libpq DSN of the (existing) metadata database.
    :param port: API server port; the UI, the REST API, the execution API and the plugin's intake
        API all answer there.
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param jwt_secret: signs the tokens of the UI, the REST API and task runners (must be shared).
    :param admin_password: password of the ``admin`` user of the SimpleAuthManager.
    :param viewer_password: password of a ``viewer`` user (role viewer), if wanted: real users, not
        all-admins, so the UI and the plugin's page are seen as a read-only operator sees them.
    :param extra: more environment variables (``AIRFLOW_CONN_*``, ``MC_*``, Celery settings...).
    """

    home: Path
    metadata_dsn: str
    port: int
    executor: str = "LocalExecutor"
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    viewer_password: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every component: ``base`` (default: ours) less any other Airflow
        setting that could leak in, plus this stack's settings."""
        base = os.environ if base is None else base
        env = {k: v for k, v in base.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        plugins = str(REPO / "plugins")
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": os.pathsep.join(p for p in (plugins, env.get("PYTHONPATH")) if p),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": plugins,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin"
                + (",viewer:viewer" if self.viewer_password else ""),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_uri(self.metadata_dsn),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__SECRET_KEY": self.jwt_secret,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # LocalExecutor forks one worker per slot up front: 32 idle workers cost ~3 GB.
                "AIRFLOW__CORE__PARALLELISM": "8",
                # Two small DAG files: one parser process is plenty and leaves CPU to the tasks.
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                # A task killed with the previous run (a real-time drain, say) goes back to the queue
                # within a minute of a restart instead of the default five.
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
            }
        )
        env.update(self.extra)
        return env

    def write_passwords_file(self) -> None:
        """Give ``admin`` our password, so we can print it and log in to the REST API (the auth
        manager would otherwise generate one and print it only in the API server's log)."""
        import json

        self.home.mkdir(parents=True, exist_ok=True)
        passwords = {"admin": self.admin_password}
        if self.viewer_password:
            passwords["viewer"] = self.viewer_password
        self.passwords_file.write_text(json.dumps(passwords) + "\n")
        self.passwords_file.chmod(0o600)


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


class Stack:
    """Airflow components started as child processes, each in its own process group.

    Use as a context manager (or call :meth:`stop`): leaving it ends every component it started.

    :param config: the shared configuration.
    :param log_dir: where each component's output goes (``<name>.log``).
    """

    def __init__(self, config: AirflowConfig, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.stack_id = secrets.token_hex(8)
        self.env = {**config.env(), STACK_MARKER: self.stack_id}
        self.components: dict[str, Component] = {}
        self._token: str | None = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- processes ------------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 600) -> str:
        """Run an ``airflow`` command to completion (``db migrate``...); its output on failure."""
        log.info("airflow %s", " ".join(args))
        result = subprocess.run(
            [*AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise StackError(
                f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )
        return result.stdout

    def migrate(self) -> None:
        """Create or upgrade the Airflow metadata database (idempotent, so a rerun is cheap)."""
        self.run("db", "migrate")

    def start(self, name: str, *args: str) -> Component:
        """Start ``airflow <args>`` as component ``name``; output goes to ``<log_dir>/<name>.log``."""
        return self.spawn(name, [*AIRFLOW, *args])

    def spawn(self, name: str, argv: list[str]) -> Component:
        """Start any command as component ``name``, in its own process group, with the stack's
        environment (so :meth:`stop` ends it and everything it forks)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches us only, stop() the rest
        )
        component = Component(name, process, log_path, log_file)
        self.components[name] = component
        log.info("started %s (pid %d), log: %s", name, process.pid, log_path)
        return component

    def start_airflow(self, *, celery_queues: Iterable[str] = (), api_timeout: float = 300) -> None:
        """Start the API server, then (once it answers) the scheduler, the DAG processor and the
        triggerer, plus a Celery worker listening on ``celery_queues`` when given. No Message Center
        task defers, but the UI's health badge expects a triggerer, as a deployment runs one.

        The order matters on a restart: tasks report to the execution API of the API server, so a
        scheduler started first queues tasks that cannot start, are killed and retried.
        """
        self.start("api-server", "api-server", "--port", str(self.config.port), "--host", "127.0.0.1")
        self.wait_api(api_timeout)
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        self.start("triggerer", "triggerer")
        queues = ",".join(celery_queues)
        if queues:
            self.start("celery-worker", "celery", "worker", "--queues", queues, "--concurrency", "4")

    def check_alive(self) -> None:
        """Raise :class:`StackError` naming the first component that exited, with its log's tail."""
        for component in self.components.values():
            code = component.process.poll()
            if code is not None:
                raise StackError(
                    f"{component.name} exited with code {code}; last lines of {component.log_path}:\n"
                    + tail(component.log_path)
                )

    def stop(self, grace_seconds: float = 10) -> None:
        """End every component and everything it forked, leaving no orphan.

        Task runners first (scheduler, workers, DAG processor), the API server last, so a task being
        stopped can still report its end through the execution API. Each group gets SIGTERM, then
        SIGKILL after ``grace_seconds`` (the LocalExecutor would otherwise wait for a running
        real-time drain, minutes); last, any straggler that carries our environment marker.
        """
        if not self.components:
            return
        api = [c for c in self.components.values() if c.name == "api-server"]
        others = [c for c in self.components.values() if c.name != "api-server"]
        with _signals_ignored():  # a second Ctrl-C must not abort the cleanup halfway
            for batch in (others, api):
                self._stop_batch(batch, grace_seconds)
            kill_marked(STACK_MARKER, self.stack_id)
        self.components.clear()

    def _stop_batch(self, components: list[Component], grace_seconds: float) -> None:
        running = [c for c in components if c.process.poll() is None]
        for component in running:
            log.info("stopping %s (pid %d)", component.name, component.process.pid)
            _signal_group(component.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for component in running:
            try:
                component.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.info("%s still running after %.0f s: killing it", component.name, grace_seconds)
        for component in components:
            _signal_group(component.process.pid, signal.SIGKILL)  # grandchildren left in the group
            if component.process.poll() is None:
                component.process.wait(5)
            component.log_file.close()

    # --- the API server -------------------------------------------------------------------------

    def wait_api(self, timeout: float = 300) -> None:
        """Wait until the API server answers (its health route, whatever the other components say)."""
        self._wait_health(lambda health: True, timeout, "the API server did not answer")

    def wait_healthy(self, timeout: float = 300) -> dict[str, Any]:
        """Wait until the API server answers and the scheduler, DAG processor and (when started)
        triggerer report healthy (``GET /api/v2/monitor/health``, what the UI's health badge
        shows); raise early if a component dies meanwhile."""
        wanted: tuple[str, ...] = ("metadatabase", "scheduler", "dag_processor")
        if "triggerer" in self.components:
            wanted += ("triggerer",)
        return self._wait_health(
            lambda health: all((health.get(part) or {}).get("status") == "healthy" for part in wanted),
            timeout,
            "Airflow not healthy",
        )

    def _wait_health(
        self, ready: Callable[[dict[str, Any]], bool], timeout: float, failure: str
    ) -> dict[str, Any]:
        """Poll ``GET /api/v2/monitor/health`` until its answer is ``ready``; raise early if a
        component dies meanwhile, with ``failure`` and the last answer after ``timeout``."""
        url = f"{self.config.base_url}/api/v2/monitor/health"
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                answer = httpx.get(url, timeout=5)
                last = (
                    answer.json()
                    if answer.status_code == 200
                    else f"{answer.status_code} {answer.text[:200]}"
                )
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            if isinstance(last, dict) and ready(last):
                return last
            time.sleep(0.5)
        raise StackError(f"{failure} after {timeout:.0f} s; last answer: {last}")

    def token(self) -> str:
        """A REST API token for ``admin`` (``POST /auth/token``), fetched once."""
        if self._token is None:
            answer = httpx.post(
                f"{self.config.base_url}/auth/token",
                json={"username": "admin", "password": self.config.admin_password},
                timeout=30,
            )
            if answer.status_code != 201:
                raise StackError(f"login as admin refused: {answer.status_code} {answer.text}")
            self._token = answer.json()["access_token"]
        return self._token

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the Airflow REST API (``/api/v2`` + ``path``) as ``admin``."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        return httpx.request(
            method, f"{self.config.base_url}/api/v2{path}", headers=headers, timeout=30, **kwargs
        )

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 300) -> None:
        """Wait until the DAG processor has parsed and stored every DAG of ``dag_ids``."""
        missing = list(dag_ids)
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            self.check_alive()
            missing = [d for d in missing if self.rest("GET", f"/dags/{d}").status_code != 200]
            if missing:
                time.sleep(1)
        if missing:
            errors = self.rest("GET", "/importErrors").text[:4000]
            raise StackError(f"DAGs not parsed after {timeout:.0f} s: {missing}; import errors: {errors}")

    def unpause(self, dag_ids: Iterable[str]) -> None:
        """Turn DAGs on, i.e. start the workflows."""
        for dag_id in dag_ids:
            answer = self.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            if answer.status_code != 200:
                raise StackError(f"could not unpause {dag_id}: {answer.status_code} {answer.text}")
            log.info("DAG %s is on", dag_id)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now (instead of at its next schedule), with the run params
        ``conf``; returns the run id."""
        answer = self.rest("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        if answer.status_code not in (200, 201):
            raise StackError(f"could not trigger {dag_id}: {answer.status_code} {answer.text}")
        return str(answer.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> None:
        """Wait until run ``run_id`` of ``dag_id`` succeeded; raise if it failed or took too long."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            self.check_alive()
            state = self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json().get("state")
            if state == "success":
                return
            if state == "failed":
                break
            time.sleep(1)
        raise StackError(f"{dag_id} run {run_id} ended {state!r} (task logs: {self.config.home / 'logs'})")

    def is_paused(self, dag_id: str) -> bool:
        return bool(self.rest("GET", f"/dags/{dag_id}").json()["is_paused"])


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM meanwhile (main thread only: elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, sig)


def kill_marked(marker: str, value: str) -> list[psutil.Process]:
    """SIGKILL every process whose environment has ``marker=value``; returns them."""
    killed: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(marker) == value:
                proc.kill()
                killed.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    if killed:
        psutil.wait_procs(killed, timeout=5)
        log.warning("killed %d stray process(es) of the stack: %s", len(killed), [p.pid for p in killed])
    return killed


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])
