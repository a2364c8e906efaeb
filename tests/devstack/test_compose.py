"""docker-compose.yaml, Dockerfile and .dockerignore agree with the code and with each other.

No Docker engine is needed: the compose file is read as YAML (anchors and ``<<`` merges resolved), its
``${VAR}`` references resolved with their defaults, and the ``AIRFLOW_CONN_*`` values parsed by
Airflow's own connection parser, the way the environment secrets backend reads them.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from messagecenter.core.settings import (
    CONTROL_CONN_ID,
    DEFAULT_EXECUTION_CONN_ID,
    EXEC_CONN_PREFIX,
    PUSH_CONN_ID,
    SMS_CONN_ID,
    SMTP_CONN_ID,
    load_settings,
)
from tests.support.builders import REPO, dockerfile_instructions

COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
REQUIREMENTS = REPO / "requirements.txt"

# Service -> what it runs (the airflow sub-command, after the image's entrypoint drops a leading "airflow").
REQUIRED_AIRFLOW_SERVICES = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker-execution": ["celery", "worker"],
    "airflow-init": [],
}
REQUIRED_OTHER_SERVICES = {"postgres", "redis", "mailpit", "mc-control-db"}
PROCESSING_DAGS = {"rtEventsProcessing", "batchEventsProcessing", "updateEventsStatus"}
MAILPIT_SMTP_PORT = 1025
# An environment variable with such a name holds a secret.
SECRET_NAME = re.compile(r"(TOKENS?|PASSWORD|SECRET|_KEY)$")
REQUIRED_VARIABLE = re.compile(r"\$\{\w+:\?[^}]*\}")
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- Reading the files ---------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def common() -> dict[str, Any]:
    return compose()["x-airflow-common"]


def common_env() -> dict[str, str]:
    return common()["environment"]


def airflow_services() -> dict[str, dict[str, Any]]:
    """The services that run the Airflow image (every one built from the x-airflow-common anchor)."""
    return {name: s for name, s in services().items() if s.get("image") == common()["image"]}


def resolve(value: Any, env: dict[str, str] | None = None) -> str:
    """``value`` with its ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` resolved as compose does
    when ``env`` is the caller's environment; a required variable that is unset becomes ``<VAR>``."""
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if name in env and (env[name] or ":" not in op):
            return env[name]
        if op.endswith("-"):
            return arg
        return f"<{name}>" if op.endswith("?") else ""

    return VARIABLE.sub(substitute, str(value)).replace("$$", "$")


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as a list, without the leading ``airflow`` the image's entrypoint accepts."""
    raw = service.get("command") or []
    args = shlex.split(raw) if isinstance(raw, str) else [str(a) for a in raw]
    return args[1:] if args[:1] == ["airflow"] else args


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def init_script() -> str:
    init = services()["airflow-init"]
    assert init.get("entrypoint") == "/bin/bash", "airflow-init runs its script with bash -c"
    args = command(init)
    assert args[0] == "-c", args
    return args[1]


@functools.cache
def connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id`` as Airflow reads its ``AIRFLOW_CONN_<ID>`` (JSON or URI form)."""
    from airflow.sdk import Connection

    value = resolve(common_env()[f"AIRFLOW_CONN_{conn_id.upper()}"]).strip()
    if value.startswith("{"):
        return Connection.from_json(value, conn_id=conn_id)
    return Connection.from_uri(value, conn_id=conn_id)


def exec_conn_ids() -> list[str]:
    prefix = "AIRFLOW_CONN_" + EXEC_CONN_PREFIX.upper()
    return sorted(key[len("AIRFLOW_CONN_") :].lower() for key in common_env() if key.startswith(prefix))


def published_ports(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports") or []]


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container side of the published ports (``"127.0.0.1:8025:8025"`` -> 8025)."""
    return {int(str(p).split(":")[-1].split("/")[0]) for p in published_ports(service)}


def postgres_service(host: str | None) -> dict[str, Any]:
    service = services().get(host or "")
    assert service is not None, f"{host!r} is not a compose service"
    assert str(service.get("image", "")).startswith("postgres:"), f"{host} is not a PostgreSQL service"
    return service


def requirement_pin(package: str) -> str:
    pins = re.findall(rf"^{re.escape(package)}==(\S+)\s*$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert len(pins) == 1, f"requirements.txt must pin {package} exactly once, found {pins}"
    return pins[0]


# --- Services and image --------------------------------------------------------------------------


def test_required_services_present() -> None:
    missing = (set(REQUIRED_AIRFLOW_SERVICES) | REQUIRED_OTHER_SERVICES) - set(services())
    assert not missing, f"missing services: {sorted(missing)}"
    for name, expected in REQUIRED_AIRFLOW_SERVICES.items():
        if expected:
            assert command(services()[name])[: len(expected)] == expected, (
                f"{name} runs {command(services()[name])}"
            )
    assert str(services()["mailpit"]["image"]).startswith("axllent/mailpit"), "e-mail goes to Mailpit"
    assert str(services()["redis"]["image"]).startswith("redis:")
    assert len(exec_conn_ids()) == 2, f"two execution instances, got {exec_conn_ids()}"


def test_airflow_services_use_the_image_built_from_the_dockerfile() -> None:
    build = common().get("build")
    assert build, "x-airflow-common must build the image"
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE.resolve()
    assert set(REQUIRED_AIRFLOW_SERVICES) <= set(airflow_services())
    for name, service in services().items():
        image = str(service.get("image", ""))
        if name in airflow_services():
            assert service.get("build") == build, f"{name} must build the same image"
            assert service.get("environment", {}).items() >= common_env().items(), (
                f"{name} lost the common env"
            )
        else:
            assert not image.startswith("apache/airflow"), f"{name} runs the stock Airflow image, not ours"
            assert "build" not in service, f"{name} builds another image"


def test_airflow_version_matches_requirements() -> None:
    pinned = requirement_pin("apache-airflow")
    assert requirement_pin("apache-airflow-core") == pinned
    froms = [args for instruction, args in dockerfile_instructions() if instruction == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"apache/airflow:(?P<version>[\d.]+)-python(?P<python>3\.\d+)", froms[0])
    assert match, (
        f"the Dockerfile must extend an official apache/airflow:<version>-python3.x image: {froms[0]}"
    )
    assert match["version"] == pinned, f"Dockerfile FROM {match['version']}, requirements.txt pins {pinned}"
    runs = " ".join(args for instruction, args in dockerfile_instructions() if instruction == "RUN")
    installed = re.findall(r"apache-airflow==([\w.]+)", runs)
    assert installed == [pinned], f"the Dockerfile must install apache-airflow=={pinned}, got {installed}"
    image_tag = resolve(common()["image"]).rsplit(":", 1)[-1]
    assert image_tag == pinned, f"the built image is tagged {image_tag}, Airflow is {pinned}"


def test_dockerfile_installs_requirements() -> None:
    instructions = dockerfile_instructions()
    copies = [args.split() for instruction, args in instructions if instruction == "COPY"]
    copied_to = {srcs[-1].rstrip("/") or "/" for srcs in copies if "requirements.txt" in srcs[:-1]}
    assert copied_to, "the Dockerfile must COPY requirements.txt"
    target = "/requirements.txt" if copied_to == {"/"} else copied_to.pop()
    pip = [args for instruction, args in instructions if instruction == "RUN" and "pip install" in args]
    assert any(re.search(rf"-r\s+{re.escape(target)}(\s|$)", args) for args in pip), pip
    # Everything the Dockerfile copies must survive .dockerignore (last matching pattern wins).
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").strip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
                result = not negated
        return result

    for srcs in copies:
        for src in srcs[:-1]:
            if not src.startswith("--"):
                assert (REPO / src).exists(), f"COPY {src}: no such file"
                assert not ignored(src), f".dockerignore excludes {src}, which the Dockerfile copies"
    for heavy in (".venv", ".git", ".demo"):
        assert ignored(heavy), f".dockerignore must keep {heavy} out of the build context"


# --- Connections ---------------------------------------------------------------------------------


def test_every_connection_the_code_needs_is_defined() -> None:
    needed = {
        DEFAULT_EXECUTION_CONN_ID: "postgres",
        CONTROL_CONN_ID: "postgres",
        SMTP_CONN_ID: "smtp",
        SMS_CONN_ID: "http",
        PUSH_CONN_ID: "http",
    }
    needed |= dict.fromkeys(exec_conn_ids(), "postgres")
    for conn_id, conn_type in needed.items():
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in common_env(), f"no AIRFLOW_CONN_{conn_id.upper()}"
        assert connection(conn_id).conn_type == conn_type, f"{conn_id} must be a {conn_type} connection"
    assert (
        resolve(common_env().get("MC_EXECUTION_CONN_ID", DEFAULT_EXECUTION_CONN_ID))
        == DEFAULT_EXECUTION_CONN_ID
    )


def test_database_connections_match_their_postgres_service() -> None:
    for conn_id in [DEFAULT_EXECUTION_CONN_ID, CONTROL_CONN_ID, *exec_conn_ids()]:
        conn = connection(conn_id)
        db_env = env_of(postgres_service(conn.host))
        assert (conn.port or 5432) == 5432, conn_id
        assert conn.schema == db_env["POSTGRES_DB"], f"{conn_id}: database {conn.schema}"
        assert conn.login == db_env["POSTGRES_USER"], f"{conn_id}: user {conn.login}"
        assert conn.password == db_env["POSTGRES_PASSWORD"], f"{conn_id}: password of {conn.host}"
    hosts = [connection(c).host for c in exec_conn_ids()]
    assert len(set(hosts)) == len(hosts), f"execution instances share a database: {hosts}"
    assert connection(CONTROL_CONN_ID).host not in hosts, "control and execution databases must differ"


def test_execution_instances_have_distinct_instance_ids() -> None:
    ids = {}
    for conn_id in exec_conn_ids():
        instance_id = connection(conn_id).extra_dejson.get("instance_id")
        assert type(instance_id) is int, (
            f"{conn_id}: extra instance_id must be a JSON integer: {instance_id!r}"
        )
        assert 1 <= instance_id <= 255, f"{conn_id}: instance_id {instance_id} outside 1..255"
        ids[conn_id] = instance_id
    assert len(ids) == 2
    assert len(set(ids.values())) == len(ids), f"instance ids collide: {ids}"


def test_this_deployment_is_one_of_the_execution_instances() -> None:
    execution = connection(DEFAULT_EXECUTION_CONN_ID)
    matching = [
        c
        for c in exec_conn_ids()
        if (connection(c).host, connection(c).schema) == (execution.host, execution.schema)
    ]
    assert len(matching) == 1, f"{DEFAULT_EXECUTION_CONN_ID} must be one of {exec_conn_ids()}"
    settings = load_settings({k: resolve(v) for k, v in common_env().items()})
    # Event ids carry MC_INSTANCE_ID: it must be the archive's instance_id of this database.
    assert settings.instance_id == connection(matching[0]).extra_dejson["instance_id"], (
        f"MC_INSTANCE_ID {settings.instance_id} is not the instance_id of {matching[0]}"
    )
    assert settings.role == "all", "the demo runs control and execution on one deployment"
    assert settings.api_tokens == ("<MC_API_TOKENS>",), "MC_API_TOKENS must come from the environment"


def test_smtp_connection_points_at_mailpit() -> None:
    smtp = connection(SMTP_CONN_ID)
    mailpit = services().get(smtp.host or "")
    assert mailpit is not None, f"{SMTP_CONN_ID} host {smtp.host!r} is not a compose service"
    assert str(mailpit["image"]).startswith("axllent/mailpit")
    bind = env_of(mailpit).get("MP_SMTP_BIND_ADDR", f"0.0.0.0:{MAILPIT_SMTP_PORT}")
    assert smtp.port == int(bind.rsplit(":", 1)[-1]), (
        f"{SMTP_CONN_ID} port {smtp.port}, Mailpit listens {bind}"
    )
    extra = smtp.extra_dejson
    assert "@" in extra.get("from_email", ""), "the sender comes from the connection's from_email extra"
    assert extra.get("disable_ssl") is True
    assert extra.get("disable_tls") is True
    assert 8025 in container_ports(mailpit), "the Mailpit UI must be reachable from the host"


def test_http_connections_point_at_a_service() -> None:
    for conn_id in (SMS_CONN_ID, PUSH_CONN_ID):
        conn = connection(conn_id)
        sink = services().get(conn.host or "")
        assert sink is not None, f"{conn_id} host {conn.host!r} is not a compose service"
        assert conn.schema == "http", f"{conn_id}: the sink inside the network speaks plain http"
        sink_port = env_of(sink).get("HTTP_PORT")
        assert sink_port is None or int(sink_port) == conn.port, (
            f"{conn_id} port {conn.port}, sink {sink_port}"
        )
        assert str(conn.extra_dejson.get("endpoint", "")).startswith("/"), conn_id


# --- Workers, Airflow wiring ---------------------------------------------------------------------


def test_execution_worker_serves_mc_execution_queue() -> None:
    serving: dict[str, list[str]] = {}
    for name, service in airflow_services().items():
        args = command(service)
        if args[:2] == ["celery", "worker"]:
            queues = args[args.index("--queues") + 1] if "--queues" in args else "default"
            serving[name] = [q.strip() for q in resolve(queues).split(",")]
            if "--queues" in args:
                assert args[args.index("--queues") + 1] == env_of(service)["MC_EXECUTION_QUEUE"], name
    queue = load_settings({"MC_EXECUTION_QUEUE": resolve(common_env()["MC_EXECUTION_QUEUE"])}).execution_queue
    assert queue != "default", "the execution tasks get a queue of their own"
    assert any(queue in q for q in serving.values()), f"no worker serves {queue}: {serving}"
    assert queue in serving["airflow-worker-execution"]
    # The control tasks (archiving, publication) run on Airflow's default queue: someone must serve it.
    default_queue = resolve(common_env().get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default"))
    assert any(default_queue in q for q in serving.values()), f"no worker serves {default_queue}: {serving}"


def test_execution_api_url_points_at_the_api_server() -> None:
    url = urlsplit(resolve(common_env()["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]))
    api = airflow_services().get(url.hostname or "")
    assert api is not None, f"{url.hostname} is not an Airflow service"
    assert command(api) == ["api-server"], f"{url.hostname} is not the API server"
    assert url.port in container_ports(api), "the API server's port is the one it serves on"
    assert url.path == "/execution/"
    assert 8080 in container_ports(api), "the UI and the intake API answer on http://localhost:8080"


def test_generated_secrets_are_shared_by_every_airflow_service() -> None:
    config_dir = str(PurePosixPath(resolve(common_env()["AIRFLOW_CONFIG"])).parent)
    passwords_file = resolve(common_env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert str(PurePosixPath(passwords_file).parent) == config_dir
    for name, service in airflow_services().items():
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes", [])}
        assert mounts.get(config_dir) == "airflow-config", f"{name} must mount airflow-config at {config_dir}"


def test_init_migrates_every_database_and_starts_the_workflows() -> None:
    script = init_script().replace("\\\n", " ")  # join continued lines
    lines = [line.strip() for line in script.splitlines()]
    assert "set -euo pipefail" in lines, "a failed step must fail airflow-init (and hold the stack back)"
    assert any(re.fullmatch(r"(/entrypoint )?airflow db migrate", line) for line in lines), (
        "no airflow db migrate"
    )
    for conn_id in [CONTROL_CONN_ID, *exec_conn_ids()]:
        assert f"python -m messagecenter db upgrade --conn {conn_id}" in lines, f"{conn_id} is not migrated"
    # Templates: loaded on control, then published to every execution instance before anything runs.
    assert any(
        re.fullmatch(rf"python -m messagecenter templates load \S+ --conn {CONTROL_CONN_ID}", line)
        for line in lines
    )
    for path in re.findall(r"templates load (\S+)", script):
        assert path.startswith("/opt/airflow/include/"), path
        assert (REPO / path.removeprefix("/opt/airflow/")).is_file(), f"{path}: not in ./include"
    published_to = re.findall(
        r"^python -m messagecenter templates publish --conn (\w+) --force$", script, re.MULTILINE
    )
    assert sorted(published_to) == exec_conn_ids(), "airflow-init publishes the templates to every instance"
    env = env_of(services()["airflow-init"])
    assert "/opt/airflow/plugins" in resolve(env["PYTHONPATH"]).split(":")
    assert "${_AIRFLOW_WWW_USER_PASSWORD" in env["_AIRFLOW_WWW_USER_PASSWORD"]
    # The execution DAGs are paused at creation: airflow-init turns on the ones that exist.
    execution_dags = set()
    for path in (REPO / "dags").glob("*.py"):
        execution_dags |= set(re.findall(r'execution_dag_args\(\s*"(\w+)"', path.read_text()))
    assert execution_dags >= PROCESSING_DAGS
    unpause = [line for line in lines if line.startswith("airflow dags unpause")]
    assert len(unpause) == 1, unpause
    pattern = resolve(shlex.split(unpause[0])[-1])
    assert {d for d in execution_dags if re.search(pattern, d)} == PROCESSING_DAGS, pattern
    assert not re.search(pattern, "mcCleanup"), "cleanup deletes data: it is started by an operator"
    assert lines.index("airflow dags reserialize") < lines.index(unpause[0]), "DAGs exist before unpausing"


# --- Compose file consistency --------------------------------------------------------------------


def test_every_depends_on_names_an_existing_service() -> None:
    for name, service in services().items():
        deps = service.get("depends_on") or []
        for dep in deps:  # a list, or a mapping of service -> condition
            assert dep in services(), f"{name} depends on unknown service {dep}"
            assert dep != name


def test_every_named_volume_is_declared() -> None:
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else resolve(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {sorted(declared - used)}"


def test_mounted_host_paths_exist() -> None:
    mounted = {}
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source, target = resolve(volume).split(":")[:2]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repository"
                mounted[source.lstrip("./")] = target
    for folder in ("dags", "plugins", "include"):
        assert mounted.get(folder) == f"/opt/airflow/{folder}", f"./{folder} must be mounted at /opt/airflow"


def test_no_literal_secrets() -> None:
    """Secrets come from required ``${VAR:?...}`` variables. The one exception: the password of a
    PostgreSQL service that publishes no port (reachable only inside the compose network), and the
    connection strings that repeat it."""
    internal_db_passwords = {}
    for name, service in services().items():
        for key, value in env_of(service).items():
            if not SECRET_NAME.search(key):
                continue
            if key == "POSTGRES_PASSWORD":
                assert not published_ports(service), (
                    f"{name} publishes a port: its password must be a variable"
                )
                internal_db_passwords[name] = resolve(value)
            else:
                assert REQUIRED_VARIABLE.fullmatch(value), f"{name}: {key} must be a required ${{VAR:?...}}"

    def check_credentials(where: str, host: str | None, password: str | None) -> None:
        if password:
            assert internal_db_passwords.get(host or "") == password, (
                f"{where}: a literal password, not the one of an internal database service"
            )

    for name, service in services().items():
        for key, value in env_of(service).items():
            text = resolve(value)
            for url in re.findall(r"[a-z][\w+.-]*://[^\s'\"]+", text):
                parts = urlsplit(url)
                check_credentials(f"{name}: {key}", parts.hostname, parts.password)
            if key.startswith("AIRFLOW_CONN_") and text.strip().startswith("{"):
                conn = json.loads(text)
                check_credentials(f"{name}: {key}", conn.get("host"), conn.get("password"))
                secret_extras = {k for k in conn.get("extra") or {} if SECRET_NAME.search(k.upper())}
                assert not secret_extras, f"{name}: {key} carries secrets in its extra: {secret_extras}"


@pytest.mark.parametrize("service", sorted(REQUIRED_AIRFLOW_SERVICES))
def test_airflow_services_wait_for_their_databases(service: str) -> None:
    deps = services()[service].get("depends_on") or {}
    for db in ("postgres", "redis", *{connection(c).host for c in [CONTROL_CONN_ID, *exec_conn_ids()]}):
        assert deps.get(db, {}).get("condition") == "service_healthy", f"{service} must wait for {db}"
        assert "healthcheck" in services()[db], f"{db} needs a healthcheck for service_healthy"
    if service != "airflow-init":
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", service
