"""Static checks of the production deployment: docker-compose.yaml, Dockerfile, .dockerignore.

No Docker engine runs where these tests run, so nothing here starts a container: the compose
file is parsed with PyYAML (anchors and ``<<`` merges resolved), its ``${VAR:-default}``
interpolation is applied the way Compose does it (with an explicit environment, defaults
otherwise), and every promise of the deployment is checked on the result.

Each promise is a ``problems_*`` function returning what is wrong (empty when all is well).
The real files must give no problems; and every check is also run on deliberately broken
copies (``MUTATIONS``), each of which must be reported, so a check that stopped biting fails.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
REQUIREMENTS = REPO / "requirements.txt"

CONN_VAR = "AIRFLOW_CONN_TIDEMARK_TIMESCALE"
AIRFLOW_REQUIRED = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-init"}
REQUIRED_SERVICES = AIRFLOW_REQUIRED | {"timescaledb", "postgres"}
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
CELERY_SERVICES = {"redis", "airflow-worker"}
TIMESCALE_TAG = re.compile(r"^timescale/timescaledb:(?P<ts>\d+\.\d+\.\d+)-pg(?P<pg>\d+)$")
VERSION_IN_TAG = re.compile(r"\d+\.\d+")


# --------------------------------------------------------------------------- compose semantics


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, nested in the default. Unset without default -> '' (Compose warns)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 0, i + 1
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise ValueError(f"unclosed ${{ in {text!r}")
            out.append(_expand(text[i + 2 : j], env, text))
            i = j + 1
        else:
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
            if not m:  # not a variable: Compose keeps the $ as it is
                out.append("$")
                i += 1
                continue
            out.append(env.get(m.group(), ""))
            i += 1 + m.end()
    return "".join(out)


def _expand(expr: str, env: Mapping[str, str], whole: str) -> str:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?|:\+|\+)(.*))?", expr, re.S)
    if not m:
        raise ValueError(f"invalid interpolation ${{{expr}}} in {whole!r}")
    name, op, arg = m.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    if op in (":-", "-"):
        use_default = not value if op == ":-" else value is None
        return interpolate(arg, env) if use_default else value  # type: ignore[return-value]
    if op in (":?", "?"):
        missing = not value if op == ":?" else value is None
        if missing:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return value  # type: ignore[return-value]
    present = bool(value) if op == ":+" else value is not None
    return interpolate(arg, env) if present else ""


def resolve(obj: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (not keys, as Compose)."""
    if isinstance(obj, dict):
        return {k: resolve(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve(v, env) for v in obj]
    if isinstance(obj, str):
        return interpolate(obj, env)
    return obj


def load_compose(text: str | None = None) -> dict:
    data = yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)
    # JSON round trip: anchors are shared objects after loading; mutations must hit one service only.
    return json.loads(json.dumps(data))


def environment(svc: Mapping[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(svc: Mapping[str, Any]) -> dict[str, dict]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: (spec or {"condition": "service_started"}) for name, spec in deps.items()}


def volume_mounts(svc: Mapping[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            mounts.append((str(v.get("source", "")), str(v["target"])))
        else:
            parts = v.split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~"))


def healthcheck_text(svc: Mapping[str, Any]) -> str:
    test = (svc.get("healthcheck") or {}).get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def command_text(svc: Mapping[str, Any]) -> str:
    cmd = svc.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def split_image(image: str) -> tuple[str, str | None]:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, None if not digest else "@" + digest


def airflow_services(services: Mapping[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if "build" in s or str(s.get("image", "")).startswith("apache/airflow")}


def default_services(services: Mapping[str, Any]) -> set[str]:
    """What `docker compose up` starts without any profile."""
    return {n for n, s in services.items() if not s.get("profiles")}


def requirements_airflow_pin(text: str | None = None) -> str:
    text = REQUIREMENTS.read_text() if text is None else text
    pins = re.findall(r"^\s*apache-airflow\s*==\s*([0-9][0-9A-Za-z.+-]*)\s*(?:#.*)?$", text, re.M)
    assert len(pins) == 1, f"requirements.txt must pin apache-airflow exactly once, found {pins}"
    return pins[0]


# --------------------------------------------------------------------------- the promises

Problems = list[str]
NO_ENV: dict[str, str] = {}


def problems_structure(c: dict) -> Problems:
    p = []
    if not isinstance(c, dict) or not isinstance(c.get("services"), dict):
        return ["no services mapping"]
    missing = REQUIRED_SERVICES - set(c["services"])
    if missing:
        p.append(f"missing services: {sorted(missing)}")
    services = resolve(c["services"], NO_ENV)
    af = airflow_services(services)
    if not AIRFLOW_REQUIRED <= set(af):
        p.append(f"not built from the Airflow image: {sorted(AIRFLOW_REQUIRED - set(af))}")
    for name, cmd in AIRFLOW_COMMANDS.items():
        if name in services and command_text(services[name]).strip() != cmd:
            p.append(f"{name} runs {command_text(services[name])!r}, not {cmd!r}")
    p += [f"{n} is behind a profile: not started by default" for n in REQUIRED_SERVICES & set(services) if services[n].get("profiles")]
    common = c.get("x-airflow-common")
    if not isinstance(common, dict) or not isinstance(common.get("environment"), dict):
        p.append("no x-airflow-common anchor with a common environment")
    else:
        common_env = environment(resolve(common, NO_ENV))
        for n, s in af.items():
            env = environment(s)
            differ = sorted(k for k, v in common_env.items() if env.get(k) != v)
            if differ:
                p.append(f"{n} lacks or overrides the common Airflow env: {differ}")
    for n, s in af.items():
        env = environment(s)
        if env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") != "http://airflow-apiserver:8080/execution/":
            p.append(f"{n}: AIRFLOW__CORE__EXECUTION_API_SERVER_URL is not http://airflow-apiserver:8080/execution/")
        if env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() != "false":
            p.append(f"{n}: AIRFLOW__CORE__LOAD_EXAMPLES is not 'false'")
        if env.get("_PIP_ADDITIONAL_REQUIREMENTS"):
            p.append(f"{n}: uses _PIP_ADDITIONAL_REQUIREMENTS (build the image instead)")
        if "_PIP_ADDITIONAL_REQUIREMENTS" in environment(c["services"].get(n, {})):
            p.append(f"{n}: sets _PIP_ADDITIONAL_REQUIREMENTS")
    api = services.get("airflow-apiserver", {})
    if not any(str(port).endswith(":8080") for port in api.get("ports") or []):
        p.append("airflow-apiserver does not publish container port 8080")
    meta = environment(af.get("airflow-scheduler", {})).get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if urlsplit(meta).hostname != "postgres":
        p.append(f"metadata DB is not the postgres service: {meta!r}")
    return p


def _conn_problems(c: dict, env: Mapping[str, str]) -> Problems:
    p = []
    services = resolve(c["services"], env)
    ts = environment(services.get("timescaledb", {}))
    for n, s in airflow_services(services).items():
        uri = environment(s).get(CONN_VAR)
        if not uri:
            p.append(f"{n}: {CONN_VAR} not set")
            continue
        u = urlsplit(uri)
        db = u.path.lstrip("/")
        if u.scheme not in ("postgres", "postgresql"):
            p.append(f"{n}: {CONN_VAR} scheme {u.scheme!r} is not postgres")
        if u.hostname != "timescaledb":
            p.append(f"{n}: {CONN_VAR} host {u.hostname!r} is not the timescaledb service")
        if u.port not in (None, 5432):
            p.append(f"{n}: {CONN_VAR} port {u.port} is not 5432")
        if not db or db != ts.get("POSTGRES_DB", "postgres"):
            p.append(f"{n}: {CONN_VAR} database {db!r} is not timescaledb's POSTGRES_DB {ts.get('POSTGRES_DB')!r}")
        if unquote(u.username or "") != ts.get("POSTGRES_USER", "postgres"):
            p.append(f"{n}: {CONN_VAR} user {u.username!r} is not timescaledb's POSTGRES_USER")
        if unquote(u.password or "") != ts.get("POSTGRES_PASSWORD"):
            p.append(f"{n}: {CONN_VAR} password is not timescaledb's POSTGRES_PASSWORD")
    return p


def problems_connection(c: dict) -> Problems:
    p = _conn_problems(c, NO_ENV)
    # The password comes from TIDEMARK_DB_PASSWORD (for the connection and the server alike).
    p += [f"with TIDEMARK_DB_PASSWORD set: {x}" for x in _conn_problems(c, {"TIDEMARK_DB_PASSWORD": "Xy7pQ2rS9"})]
    services = resolve(c["services"], {"TIDEMARK_DB_PASSWORD": "Xy7pQ2rS9"})
    uri = environment(services.get("airflow-scheduler", {})).get(CONN_VAR, "")
    if urlsplit(uri).password != "Xy7pQ2rS9":
        p.append(f"{CONN_VAR} password does not follow TIDEMARK_DB_PASSWORD")
    # An existing TimescaleDB can be used instead without editing the file.
    external = "postgresql://loader:pw@ts.example.internal:5432/metrics"
    services = resolve(c["services"], {"TIDEMARK_CONN_URI": external})
    wrong = [n for n, s in airflow_services(services).items() if environment(s).get(CONN_VAR) != external]
    if wrong:
        p.append(f"TIDEMARK_CONN_URI does not override {CONN_VAR} in {wrong}")
    return p


def problems_secrets(c: dict) -> Problems:
    """Passwords and keys come from variables (with local defaults), never literals in the file."""
    p = []
    common_env = environment(c.get("x-airflow-common", {}))
    checks = [
        ("timescaledb", environment(c["services"].get("timescaledb", {})).get("POSTGRES_PASSWORD")),
        ("postgres", environment(c["services"].get("postgres", {})).get("POSTGRES_PASSWORD")),
        ("x-airflow-common JWT secret", common_env.get("AIRFLOW__API_AUTH__JWT_SECRET")),
        ("x-airflow-common fernet key", common_env.get("AIRFLOW__CORE__FERNET_KEY")),
        ("airflow-init admin password", environment(c["services"].get("airflow-init", {})).get("_AIRFLOW_WWW_USER_PASSWORD")),
    ]
    for what, raw in checks:
        if raw is None or not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}", raw):
            p.append(f"{what}: {raw!r} is not taken from a variable")
    conn = common_env.get(CONN_VAR, "")
    if "${TIDEMARK_DB_PASSWORD" not in conn:
        p.append(f"{CONN_VAR} does not take its password from TIDEMARK_DB_PASSWORD")
    return p


def problems_images(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    for n, s in services.items():
        image = s.get("image")
        if not image:
            if "build" not in s:
                p.append(f"{n}: neither image nor build")
            continue
        repo, tag = split_image(image)
        if tag is None:
            p.append(f"{n}: image {image!r} has no tag")
        elif tag == "latest" or (not tag.startswith("@") and not VERSION_IN_TAG.search(tag)):
            p.append(f"{n}: image {image!r} is not pinned to a version")
        elif "latest" in tag:
            p.append(f"{n}: image {image!r} floats on latest")
    ts = str(services.get("timescaledb", {}).get("image", ""))
    m = TIMESCALE_TAG.match(ts)
    if not m:
        p.append(f"timescaledb image {ts!r} is not timescale/timescaledb:X.Y.Z-pgNN (exact, compression build)")
    else:
        if m["pg"] != "17":
            p.append(f"timescaledb image {ts!r} is not PostgreSQL 17")
    if "oss" in ts.lower():
        p.append(f"timescaledb image {ts!r} is an -oss build (no compression)")
    return p


def problems_volumes(c: dict) -> Problems:
    p = []
    declared = set((c.get("volumes") or {}).keys())
    services = resolve(c["services"], NO_ENV)
    used: dict[str, set[str]] = {}
    for n, s in services.items():
        for source, _target in volume_mounts(s):
            if is_named_volume(source):
                used.setdefault(source, set()).add(n)
    if undeclared := set(used) - declared:
        p.append(f"named volumes used but not declared: {sorted(undeclared)}")
    if unused := declared - set(used):
        p.append(f"named volumes declared but unused: {sorted(unused)}")
    for db in ("timescaledb", "postgres"):
        data = [src for src, dst in volume_mounts(services.get(db, {})) if dst == "/var/lib/postgresql/data"]
        if not data or not is_named_volume(data[0]):
            p.append(f"{db}: /var/lib/postgresql/data is not on a named volume")
        elif used[data[0]] != {db}:
            p.append(f"{db}: its data volume {data[0]!r} is shared with {sorted(used[data[0]] - {db})}")
    return p


def problems_health(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    for db in ("timescaledb", "postgres"):
        if "pg_isready" not in healthcheck_text(services.get(db, {})):
            p.append(f"{db}: no pg_isready healthcheck")
    for n in AIRFLOW_COMMANDS:
        if not healthcheck_text(services.get(n, {})):
            p.append(f"{n}: no healthcheck")
    if "redis-cli" not in healthcheck_text(services.get("redis", {})):
        p.append("redis: no healthcheck")
    return p


def problems_dependencies(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    for n, s in airflow_services(services).items():
        deps = depends_on(s)
        for db in ("timescaledb", "postgres"):
            if deps.get(db, {}).get("condition") != "service_healthy":
                p.append(f"{n}: does not wait for {db} to be healthy (depends_on condition: service_healthy)")
        if n != "airflow-init" and n in AIRFLOW_COMMANDS and deps.get("airflow-init", {}).get("condition") != "service_completed_successfully":
            p.append(f"{n}: does not wait for airflow-init to complete")
    for n, s in services.items():
        for dep in depends_on(s):
            if dep not in services:
                p.append(f"{n}: depends on unknown service {dep!r}")
    return p


def problems_mounts(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    # container path -> (repository folder it must come from, a file proving it is the right one)
    wanted: dict[str, tuple[Path, Path] | None] = {
        "/opt/airflow/dags": (REPO / "dags", REPO / "dags" / "tidemark_backfill.py"),
        "/opt/airflow/plugins": (REPO / "plugins", REPO / "plugins" / "tidemark" / "__init__.py"),
        "/opt/airflow/logs": None,
        "/opt/airflow/config": None,
    }
    for n, s in airflow_services(services).items():
        mounts = {dst: src for src, dst in volume_mounts(s)}
        for target, expected in wanted.items():
            src = mounts.get(target)
            if src is None:
                p.append(f"{n}: nothing mounted at {target}")
            elif expected is not None:
                folder, marker = expected
                if (REPO / src).resolve() != folder:
                    p.append(f"{n}: {target} is mounted from {src!r}, not the repository's {folder.name}/")
                if not marker.exists():
                    p.append(f"{marker} is missing")
    return p


def _executors(c: dict, env: Mapping[str, str]) -> set[str]:
    services = resolve(c["services"], env)
    return {environment(s).get("AIRFLOW__CORE__EXECUTOR", "") for s in airflow_services(services).values()}


def problems_executor(c: dict) -> Problems:
    got = _executors(c, NO_ENV)
    return [] if got == {"LocalExecutor"} else [f"default executor(s) {sorted(got)}, expected LocalExecutor everywhere"]


def problems_celery(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    if missing := CELERY_SERVICES - set(services):
        return [f"celery switch incomplete, missing {sorted(missing)}"]
    for n in CELERY_SERVICES:
        if "celery" not in (services[n].get("profiles") or []):
            p.append(f"{n} is not behind the 'celery' profile (it would start by default)")
    if command_text(services["airflow-worker"]).strip() != "celery worker":
        p.append("airflow-worker does not run 'celery worker'")
    if "airflow-worker" not in airflow_services(services):
        p.append("airflow-worker does not use the Airflow image")
    if depends_on(services["airflow-worker"]).get("redis", {}).get("condition") != "service_healthy":
        p.append("airflow-worker does not wait for a healthy redis")
    defaults = default_services(services)
    for n in defaults:
        for dep in depends_on(services[n]):
            if dep in CELERY_SERVICES:
                p.append(f"{n} (started by default) depends on {dep}, which is behind the celery profile")
    switched = _executors(c, {"AIRFLOW_EXECUTOR": "CeleryExecutor"})
    if switched != {"CeleryExecutor"}:
        p.append(f"AIRFLOW_EXECUTOR=CeleryExecutor gives {sorted(switched)}")
    broker = environment(airflow_services(services).get("airflow-scheduler", {})).get("AIRFLOW__CELERY__BROKER_URL", "")
    if urlsplit(broker).hostname != "redis":
        p.append(f"celery broker {broker!r} is not the redis service")
    return p


def problems_tidemark_env(c: dict) -> Problems:
    p = []
    services = resolve(c["services"], NO_ENV)
    for n, s in airflow_services(services).items():
        env = environment(s)
        try:
            poke = float(env["TIDEMARK_POKE_INTERVAL"])
        except (KeyError, ValueError):
            p.append(f"{n}: TIDEMARK_POKE_INTERVAL missing or not a number: {env.get('TIDEMARK_POKE_INTERVAL')!r}")
        else:
            if poke < 10:
                p.append(f"{n}: TIDEMARK_POKE_INTERVAL {poke} < 10 (apache/airflow#71172)")
        try:
            parallel = int(env["TIDEMARK_MAX_PARALLEL_BATCHES"])
        except (KeyError, ValueError):
            p.append(f"{n}: TIDEMARK_MAX_PARALLEL_BATCHES missing or not an integer")
        else:
            if parallel < 1:
                p.append(f"{n}: TIDEMARK_MAX_PARALLEL_BATCHES {parallel} < 1")
        if str(env.get("TIDEMARK_DEMO", "off")).lower() not in ("off", "false", "0", "no"):
            p.append(f"{n}: TIDEMARK_DEMO={env['TIDEMARK_DEMO']!r}: the demo's ledgers would load into production")
    return p


def problems_local_image(c: dict, requirements: str | None = None) -> Problems:
    """The Airflow services build ./Dockerfile; the local tag carries the pinned Airflow version."""
    p = []
    pin = requirements_airflow_pin(requirements)
    common = resolve(c.get("x-airflow-common", {}), NO_ENV)
    build = common.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    if context not in (".", "./"):
        p.append(f"x-airflow-common does not build the repository's Dockerfile (build: {build!r})")
    if isinstance(build, dict) and build.get("dockerfile", "Dockerfile") != "Dockerfile":
        p.append(f"x-airflow-common builds {build.get('dockerfile')!r}, not Dockerfile")
    _repo, tag = split_image(str(common.get("image", "")))
    if tag != pin:
        p.append(f"local image tag {tag!r} is not the pinned Airflow version {pin} (a version bump must rebuild)")
    return p


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, buf = [], ""
    for raw in text.splitlines():
        if not buf and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1]
            continue
        buf += raw
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    if buf.strip():
        lines.append(buf.strip())
    out = []
    for line in lines:
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def problems_dockerfile(text: str | None = None, requirements: str | None = None) -> Problems:
    text = DOCKERFILE.read_text() if text is None else text
    pin = requirements_airflow_pin(requirements)
    ins = dockerfile_instructions(text)
    p = []
    froms = [a for i, a in ins if i == "FROM"]
    if froms != [f"apache/airflow:{pin}"]:
        p.append(f"FROM {froms} is not exactly one 'apache/airflow:{pin}' (the requirements.txt pin)")
    copies = [shlex.split(a) for i, a in ins if i in ("COPY", "ADD")]
    dest = next((parts[-1] for parts in copies if "requirements.txt" in parts[:-1]), None)
    if dest is None:
        p.append("requirements.txt is not copied into the image")
    runs = [a for i, a in ins if i == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip\s+install\b", r)]
    if not installs:
        p.append("no pip install")
    else:
        joined = " ".join(installs)
        if dest is not None and not re.search(rf"(-r|--requirement)[ =]{re.escape(dest)}(\s|$)", joined) and not (
            dest.endswith("/") and re.search(rf"(-r|--requirement)[ =]{re.escape(dest)}requirements\.txt\b", joined)
        ):
            p.append(f"pip install does not use the copied requirements.txt ({dest})")
        pinned = re.search(r"apache-airflow==(\$\{AIRFLOW_VERSION\}|\$AIRFLOW_VERSION|[0-9][0-9A-Za-z.+-]*)", joined)
        if not pinned:
            p.append("pip install does not pin apache-airflow (it could up- or downgrade the image's Airflow)")
        elif pinned.group(1)[0].isdigit() and pinned.group(1) != pin:
            p.append(f"pip install pins apache-airflow=={pinned.group(1)}, requirements.txt pins {pin}")
    if any("_PIP_ADDITIONAL_REQUIREMENTS" in a for _i, a in ins):
        p.append("Dockerfile relies on _PIP_ADDITIONAL_REQUIREMENTS")
    return p


def version_guard(text: str | None = None) -> str:
    """The python -c snippet the Dockerfile runs after pip install."""
    text = DOCKERFILE.read_text() if text is None else text
    for instr, args in dockerfile_instructions(text):
        if instr == "RUN":
            tokens = shlex.split(args)
            for i, tok in enumerate(tokens[:-2]):
                if tok in ("python", "python3") and tokens[i + 1] == "-c":
                    return tokens[i + 2]
    raise AssertionError("the Dockerfile does not check the installed Airflow version after pip install")


def dockerignore_excludes(path: str, text: str | None = None) -> bool:
    text = DOCKERIGNORE.read_text() if text is None else text
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        if any(fnmatch.fnmatchcase(pre, pattern) for pre in prefixes):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------- tests: real files

COMPOSE_CHECKS: dict[str, Callable[[dict], Problems]] = {
    "structure": problems_structure,
    "connection": problems_connection,
    "secrets": problems_secrets,
    "images": problems_images,
    "volumes": problems_volumes,
    "health": problems_health,
    "dependencies": problems_dependencies,
    "mounts": problems_mounts,
    "executor": problems_executor,
    "celery": problems_celery,
    "tidemark_env": problems_tidemark_env,
    "local_image": problems_local_image,
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_compose_parses_as_yaml_with_services() -> None:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    assert data.get("name") == "tidemark", "fixed project name, so volumes do not depend on the checkout's folder"


def test_every_value_interpolates(compose: dict) -> None:
    """No malformed ${...} anywhere (Compose would refuse the file)."""
    resolve(compose, NO_ENV)


@pytest.mark.parametrize("check", sorted(COMPOSE_CHECKS))
def test_compose_promise(compose: dict, check: str) -> None:
    assert COMPOSE_CHECKS[check](compose) == []


def test_dockerfile_extends_official_image_with_requirements() -> None:
    assert problems_dockerfile() == []


def test_requirements_pin_equals_image_tag() -> None:
    pin = requirements_airflow_pin()
    froms = [a for i, a in dockerfile_instructions(DOCKERFILE.read_text()) if i == "FROM"]
    assert froms == [f"apache/airflow:{pin}"]
    _repo, tag = split_image(resolve(load_compose()["x-airflow-common"], NO_ENV)["image"])
    assert tag == pin


def test_dockerfile_version_guard_runs() -> None:
    """The guard the image build runs after pip install passes on a matching Airflow and fails otherwise."""
    code = version_guard()
    installed = dist_version("apache-airflow")
    ok = subprocess.run([sys.executable, "-c", code], env={"AIRFLOW_VERSION": installed}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-c", code], env={"AIRFLOW_VERSION": "0.0.1"}, capture_output=True, text=True)
    assert bad.returncode != 0 and "0.0.1" in bad.stderr


def test_dockerignore_keeps_context_small() -> None:
    assert not dockerignore_excludes("requirements.txt")
    for heavy in (".venv", ".git", ".tidemark", "embedded/node_modules", "logs", "bench/results"):
        assert dockerignore_excludes(heavy), heavy


def test_default_start_is_local_and_complete(compose: dict) -> None:
    """What plain `docker compose up -d` starts: everything the DAGs need, nothing of Celery."""
    started = default_services(compose["services"])
    assert REQUIRED_SERVICES <= started
    assert not started & CELERY_SERVICES


# --------------------------------------------------------------------------- tests: broken copies


def _svc(c: dict, name: str) -> dict:
    return c["services"][name]


def _set_env(name: str, key: str, value: str | None) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        env = _svc(c, name).setdefault("environment", {})
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value

    return mutate


def _set(name: str, key: str, value: Any) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        if value is None:
            _svc(c, name).pop(key, None)
        else:
            _svc(c, name)[key] = value

    return mutate


def _drop_service(name: str) -> Callable[[dict], None]:
    return lambda c: c["services"].pop(name)


def _drop_dep(name: str, dep: str) -> Callable[[dict], None]:
    return lambda c: _svc(c, name)["depends_on"].pop(dep)


def _dep_condition(name: str, dep: str, cond: str) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        _svc(c, name)["depends_on"][dep] = {"condition": cond}

    return mutate


def _volumes(name: str, fn: Callable[[list], list]) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        _svc(c, name)["volumes"] = fn(_svc(c, name)["volumes"])

    return mutate


def _drop_top_volume(vol: str) -> Callable[[dict], None]:
    return lambda c: c["volumes"].pop(vol)


def _add_top_volume(vol: str) -> Callable[[dict], None]:
    return lambda c: c["volumes"].update({vol: None})


def _common_image(image: str) -> Callable[[dict], None]:
    def mutate(c: dict) -> None:
        for n, s in c["services"].items():
            if "build" in s:
                s["image"] = image
        c["x-airflow-common"]["image"] = image

    return mutate


CONN_DEFAULT = "${TIDEMARK_CONN_URI:-postgresql://tidemark:${TIDEMARK_DB_PASSWORD:-tidemark}@timescaledb:5432/tidemark}"

MUTATIONS: list[tuple[str, str, Callable[[dict], None]]] = [
    ("structure", "no timescaledb service", _drop_service("timescaledb")),
    ("structure", "no metadata postgres", _drop_service("postgres")),
    ("structure", "no dag-processor", _drop_service("airflow-dag-processor")),
    ("structure", "no triggerer", _drop_service("airflow-triggerer")),
    ("structure", "no airflow-init", _drop_service("airflow-init")),
    ("structure", "scheduler runs the wrong command", _set("airflow-scheduler", "command", "triggerer")),
    ("structure", "timescaledb behind a profile", _set("timescaledb", "profiles", ["db"])),
    ("structure", "examples loaded", _set_env("airflow-scheduler", "AIRFLOW__CORE__LOAD_EXAMPLES", "true")),
    ("structure", "wrong execution API URL", _set_env("airflow-triggerer", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://localhost:8080/execution/")),
    ("structure", "_PIP_ADDITIONAL_REQUIREMENTS used", _set_env("airflow-apiserver", "_PIP_ADDITIONAL_REQUIREMENTS", "psycopg")),
    ("structure", "_PIP_ADDITIONAL_REQUIREMENTS declared", _set_env("airflow-init", "_PIP_ADDITIONAL_REQUIREMENTS", "")),
    ("structure", "apiserver not published", _set("airflow-apiserver", "ports", [])),
    ("structure", "metadata DB elsewhere", _set_env("airflow-scheduler", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/a.db")),
    ("connection", "conn var missing on the scheduler", _set_env("airflow-scheduler", CONN_VAR, None)),
    ("connection", "conn var missing on a worker", _set_env("airflow-worker", CONN_VAR, None)),
    ("connection", "conn points at localhost", _set_env("airflow-scheduler", CONN_VAR, CONN_DEFAULT.replace("@timescaledb", "@localhost"))),
    ("connection", "conn without database", _set_env("airflow-triggerer", CONN_VAR, CONN_DEFAULT.replace(":5432/tidemark", ":5432"))),
    ("connection", "conn to another database", _set_env("airflow-dag-processor", CONN_VAR, CONN_DEFAULT.replace(":5432/tidemark", ":5432/other"))),
    ("connection", "conn with a literal password", _set_env("airflow-scheduler", CONN_VAR, "postgresql://tidemark:tidemark@timescaledb:5432/tidemark")),
    ("connection", "conn not overridable", _set_env("airflow-apiserver", CONN_VAR, "postgresql://tidemark:${TIDEMARK_DB_PASSWORD:-tidemark}@timescaledb:5432/tidemark")),
    ("connection", "server password hard-coded", _set_env("timescaledb", "POSTGRES_PASSWORD", "tidemark")),
    ("connection", "server user differs", _set_env("timescaledb", "POSTGRES_USER", "postgres")),
    ("secrets", "literal timescaledb password", _set_env("timescaledb", "POSTGRES_PASSWORD", "hunter2")),
    ("secrets", "literal metadata password", _set_env("postgres", "POSTGRES_PASSWORD", "airflow")),
    ("secrets", "literal admin password", _set_env("airflow-init", "_AIRFLOW_WWW_USER_PASSWORD", "admin")),
    ("secrets", "literal JWT secret", lambda c: c["x-airflow-common"]["environment"].update(AIRFLOW__API_AUTH__JWT_SECRET="s3cr3t")),
    ("secrets", "literal fernet key", lambda c: c["x-airflow-common"]["environment"].update(AIRFLOW__CORE__FERNET_KEY="a2V5")),
    ("images", "timescaledb latest", _set("timescaledb", "image", "timescale/timescaledb:latest-pg17")),
    ("images", "timescaledb oss", _set("timescaledb", "image", "timescale/timescaledb:2.23.0-pg17-oss")),
    ("images", "timescaledb pg16", _set("timescaledb", "image", "timescale/timescaledb:2.23.0-pg16")),
    ("images", "timescaledb untagged", _set("timescaledb", "image", "timescale/timescaledb")),
    ("images", "postgres untagged", _set("postgres", "image", "postgres")),
    ("images", "postgres latest", _set("postgres", "image", "postgres:latest")),
    ("images", "redis floating tag", _set("redis", "image", "redis:bookworm")),
    ("images", "airflow image latest", _common_image("tidemark-airflow:latest")),
    ("images", "airflow image without tag", _common_image("tidemark-airflow")),
    ("volumes", "timescaledb volume not declared", _drop_top_volume("timescaledb-volume")),
    ("volumes", "declared volume unused", _add_top_volume("orphan-volume")),
    ("volumes", "timescaledb without volume", _set("timescaledb", "volumes", [])),
    ("volumes", "timescaledb shares postgres' volume", _set("timescaledb", "volumes", ["postgres-db-volume:/var/lib/postgresql/data"])),
    ("volumes", "timescaledb on a bind mount", _set("timescaledb", "volumes", ["./tsdata:/var/lib/postgresql/data"])),
    ("health", "timescaledb without healthcheck", _set("timescaledb", "healthcheck", None)),
    ("health", "timescaledb healthcheck not pg_isready", _set("timescaledb", "healthcheck", {"test": ["CMD", "true"]})),
    ("health", "postgres without healthcheck", _set("postgres", "healthcheck", None)),
    ("health", "scheduler without healthcheck", _set("airflow-scheduler", "healthcheck", None)),
    ("dependencies", "scheduler ignores timescaledb", _drop_dep("airflow-scheduler", "timescaledb")),
    ("dependencies", "init ignores timescaledb", _drop_dep("airflow-init", "timescaledb")),
    ("dependencies", "worker ignores timescaledb", _drop_dep("airflow-worker", "timescaledb")),
    ("dependencies", "triggerer only waits for start", _dep_condition("airflow-triggerer", "timescaledb", "service_started")),
    ("dependencies", "apiserver ignores postgres health", _dep_condition("airflow-apiserver", "postgres", "service_started")),
    ("dependencies", "scheduler does not wait for init", _drop_dep("airflow-scheduler", "airflow-init")),
    ("dependencies", "depends on a missing service", _dep_condition("airflow-apiserver", "ghost", "service_started")),
    ("mounts", "no dags mount", _volumes("airflow-scheduler", lambda v: [m for m in v if "/opt/airflow/dags" not in m])),
    ("mounts", "no plugins mount", _volumes("airflow-dag-processor", lambda v: [m for m in v if "/opt/airflow/plugins" not in m])),
    ("mounts", "dags from elsewhere", _volumes("airflow-apiserver", lambda v: [m.replace("/dags:", "/other:") for m in v])),
    ("mounts", "no logs mount", _volumes("airflow-triggerer", lambda v: [m for m in v if "/opt/airflow/logs" not in m])),
    ("executor", "celery by default", _set_env("airflow-scheduler", "AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")),
    ("executor", "mixed executors", _set_env("airflow-worker", "AIRFLOW__CORE__EXECUTOR", "${AIRFLOW_EXECUTOR:-CeleryExecutor}")),
    ("celery", "no worker", _drop_service("airflow-worker")),
    ("celery", "no redis", _drop_service("redis")),
    ("celery", "worker on by default", _set("airflow-worker", "profiles", None)),
    ("celery", "redis on by default", _set("redis", "profiles", None)),
    ("celery", "worker wrong command", _set("airflow-worker", "command", "scheduler")),
    ("celery", "executor not switchable", _set_env("airflow-scheduler", "AIRFLOW__CORE__EXECUTOR", "LocalExecutor")),
    ("celery", "default service needs redis", _dep_condition("airflow-scheduler", "redis", "service_healthy")),
    ("celery", "broker elsewhere", _set_env("airflow-scheduler", "AIRFLOW__CELERY__BROKER_URL", "redis://localhost:6379/0")),
    ("tidemark_env", "poke interval 5", _set_env("airflow-scheduler", "TIDEMARK_POKE_INTERVAL", "${TIDEMARK_POKE_INTERVAL:-5}")),
    ("tidemark_env", "poke interval missing", _set_env("airflow-worker", "TIDEMARK_POKE_INTERVAL", None)),
    ("tidemark_env", "parallelism missing", _set_env("airflow-dag-processor", "TIDEMARK_MAX_PARALLEL_BATCHES", None)),
    ("tidemark_env", "parallelism zero", _set_env("airflow-scheduler", "TIDEMARK_MAX_PARALLEL_BATCHES", "0")),
    ("local_image", "not built locally", lambda c: c["x-airflow-common"].pop("build")),
    ("local_image", "built from elsewhere", lambda c: c["x-airflow-common"].update(build="./other")),
    ("local_image", "tag is not the pinned version", lambda c: c["x-airflow-common"].update(image="tidemark-airflow:3.3.1")),
]


def _structure_common_env_key_dropped(c: dict) -> None:
    # A service that overrides environment without the common anchor loses the common env.
    _svc(c, "airflow-triggerer")["environment"] = {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}


MUTATIONS.append(("structure", "service env without the common env", _structure_common_env_key_dropped))


@pytest.mark.parametrize(("check", "mutate"), [(m[0], m[2]) for m in MUTATIONS], ids=[f"{m[0]}: {m[1]}" for m in MUTATIONS])
def test_check_catches_broken_compose(compose: dict, check: str, mutate: Callable[[dict], None]) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert COMPOSE_CHECKS[check](broken), f"check {check!r} did not notice"


def test_every_compose_check_has_a_mutation() -> None:
    assert {m[0] for m in MUTATIONS} == set(COMPOSE_CHECKS)


DOCKERFILE_MUTATIONS = [
    ("older base", lambda t: t.replace("FROM apache/airflow:3.3.2", "FROM apache/airflow:3.3.1")),
    ("latest base", lambda t: t.replace("FROM apache/airflow:3.3.2", "FROM apache/airflow:latest")),
    ("other base", lambda t: t.replace("FROM apache/airflow:3.3.2", "FROM python:3.11-slim")),
    ("airflow not pinned", lambda t: t.replace('"apache-airflow==${AIRFLOW_VERSION}" ', "")),
    ("requirements not installed", lambda t: t.replace("-r /requirements.txt", "psycopg")),
    ("requirements not copied", lambda t: re.sub(r"(?m)^COPY requirements\.txt.*$", "", t)),
    ("no pip install", lambda t: t.replace("pip install", "pip download")),
    ("_PIP_ADDITIONAL_REQUIREMENTS", lambda t: t + "\nENV _PIP_ADDITIONAL_REQUIREMENTS=psycopg\n"),
    ("second stage on another base", lambda t: t + "\nFROM python:3.11-slim\n"),
]


@pytest.mark.parametrize("mutate", [m[1] for m in DOCKERFILE_MUTATIONS], ids=[m[0] for m in DOCKERFILE_MUTATIONS])
def test_check_catches_broken_dockerfile(mutate: Callable[[str], str]) -> None:
    text = DOCKERFILE.read_text()
    broken = mutate(text)
    assert broken != text, "mutation did not apply: update it to the Dockerfile"
    assert problems_dockerfile(broken)


def test_check_catches_requirements_pin_drift() -> None:
    bumped = re.sub(r"(?m)^apache-airflow==.*$", "apache-airflow==3.3.3", REQUIREMENTS.read_text())
    assert problems_dockerfile(requirements=bumped)
    assert problems_local_image(load_compose(), requirements=bumped)
    with pytest.raises(AssertionError):
        requirements_airflow_pin(re.sub(r"(?m)^apache-airflow==.*$", "apache-airflow>=3", REQUIREMENTS.read_text()))


def test_check_catches_broken_dockerignore() -> None:
    assert dockerignore_excludes("requirements.txt", "*\n")
    assert not dockerignore_excludes(".venv", "!requirements.txt\n")


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}|${UNSET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}", env) == "v|d|d||d"
    assert interpolate("${UNSET:-a${SET}b}|${UNSET:-x${UNSET2:-y}z}", env) == "avb|xyz"
    assert interpolate("$$HOSTNAME $${X} $SET ${SET:+r}${UNSET:+r} 5$ $(", env) == "$HOSTNAME ${X} v r 5$ $("
    with pytest.raises(ValueError):
        interpolate("${UNSET:?needed}", env)
    with pytest.raises(ValueError):
        interpolate("${BROKEN", env)
