"""Static checks of the cluster configs: docker-compose, Dockerfile, launcher YAML, KubeRay.

No docker engine, cluster or network is needed; the files are parsed with yaml.safe_load and
checked for the properties that make a multi-node Ray cluster work (see
shared/spec/PLATFORM_NOTES.md section 4 and pain points 2, 8 and 9), for the one set of pins
(cluster/constraints.txt) that the image, the launcher, KubeRay's pods and .venv all install, and
for the hardening: token auth on by default in compose (token from `make cluster-token`, never in
git or the image), non-root containers everywhere, and NetworkPolicies that keep the Ray ports to
the cluster's own pods.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # a dependency of ray
import pytest
import yaml
from packaging.requirements import Requirement  # a dependency of ray
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER = ROOT / "cluster"
DOCKERFILE = CLUSTER / "Dockerfile"
ENV_EXAMPLE = CLUSTER / ".env.example"
LAUNCHER = CLUSTER / "aws.yaml"
K8S = CLUSTER / "k8s"
RAYCLUSTER = K8S / "raycluster.yaml"
RAYJOB = K8S / "rayjob.yaml"
PVC = K8S / "results-pvc.yaml"
README = CLUSTER / "README.md"
LOCK = CLUSTER / "constraints.txt"
TOKEN_SCRIPT = CLUSTER / "cluster_token.py"
DOCKERIGNORE = ROOT / ".dockerignore"
GITIGNORE = ROOT / ".gitignore"
PYPROJECT = ROOT / "pyproject.toml"
MAKEFILE = ROOT / "Makefile"

RESULTS_PATH = "/results"
AUTH_MODES = {"disabled", "token"}  # the two values Ray 2.60 understands
TORCH_PIN = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")
RAY_PORTS = {6379, 8265, 10001}  # GCS, dashboard + Jobs API, Ray Client
DASHBOARD_PORT = 8265


class MissingVariable(Exception):
    """Compose's ``${VAR:?message}`` / ``${VAR?message}`` with the variable missing."""


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Resolve compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` against ``env``.

    With no ``env``, only defaults are used; a required variable that is missing raises
    ``MissingVariable`` with compose's message, as ``docker compose`` itself would fail.
    """
    env = env or {}

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op") or "", m.group("default") or ""
        val = env.get(name)
        unset = val is None or (op.startswith(":") and val == "")
        if op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op.endswith("-") and unset:
            return arg
        return val or ""

    return _INTERP.sub(one, value)


def parse_size(value: str | int) -> int:
    """Docker byte sizes: ``2gb``, ``512m``, ``1g``, plain ints (bytes)."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(value).lower())
    assert m, f"unparseable size {value!r}"
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[m.group(2)]
    return int(float(m.group(1)) * 1024**power)


def command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else " ".join(command)


def env_map(environment: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Compose `environment` in map or list form -> dict (None = pass through from host)."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return dict(environment)
    out: dict[str, Any] = {}
    for item in environment:
        key, sep, val = item.partition("=")
        out[key] = val if sep else None
    return out


def k8s_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def lock_pins() -> dict[str, str]:
    """cluster/constraints.txt as {canonical name: version}; every line must be ``name==version``."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)", line)
        assert m, f"constraints.txt: {line!r} is not name==version"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = m.group(2)
    return pins


def pyproject_requirement(name: str) -> Requirement:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (req,) = [r for r in map(Requirement, deps) if canonicalize_name(r.name) == name]
    return req


def k8s_bytes(quantity: str) -> int:
    """Kubernetes memory quantities: ``8Gi``, ``512Mi``, ``4G``, plain bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(quantity))
    assert m, f"unparseable quantity {quantity!r}"
    unit = m.group(2) or ""
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[:1]]
    return int(float(m.group(1)) * base**power)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the Docker build context leaves ``path`` out (.dockerignore rules, last match wins).

    ``*`` and ``?`` stay within one path segment, ``**`` spans any number of them, and a pattern
    that matches a parent directory excludes everything below it.
    """

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = regex(raw.removeprefix("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def load_yaml(path: Path) -> Any:
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    return yaml.safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every document of a multi-document YAML file (``---``), empty ones dropped."""
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one_of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return load_yaml(LAUNCHER)


@pytest.fixture(scope="module")
def raycluster_docs() -> list[dict[str, Any]]:
    return load_yaml_docs(RAYCLUSTER)


@pytest.fixture(scope="module")
def rayjob_docs() -> list[dict[str, Any]]:
    return load_yaml_docs(RAYJOB)


@pytest.fixture(scope="module")
def raycluster(raycluster_docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one_of_kind(raycluster_docs, "RayCluster")


@pytest.fixture(scope="module")
def rayjob(rayjob_docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one_of_kind(rayjob_docs, "RayJob")


# ---------------------------------------------------------------- docker-compose


def test_compose_defines_head_and_worker(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"ray-head", "ray-worker"}


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_builds_from_cluster_dockerfile(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    build = services[name]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == "cluster/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_compose_services_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    assert services["ray-head"]["image"] == services["ray-worker"]["image"] == "pbrl_dist:latest"


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host IP, container port) of every published port, short or long syntax.

    A port without a host IP is published on all interfaces (0.0.0.0 and ::), like Docker does.
    """
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            host_ip, target = str(port.get("host_ip", "0.0.0.0")), int(port["target"])
        else:
            spec = interpolate(str(port)).split("/")[0]
            if spec.startswith("["):  # [::1]:8265:8265
                host_ip, _, rest = spec[1:].partition("]:")
                parts = ["", *rest.split(":")]
            else:
                parts = spec.split(":")
                host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            target = int(parts[-1].split("-")[0])
        out.append((host_ip, target))
    return out


def test_published_ports_parser() -> None:
    svc = {"ports": ["8265", "1:2", "127.0.0.1:6379:6379/tcp", {"target": 3, "host_ip": "::1"}]}
    assert published_ports(svc) == [
        ("0.0.0.0", 8265),
        ("0.0.0.0", 2),
        ("127.0.0.1", 6379),
        ("::1", 3),
    ]
    assert published_ports({"ports": ["[::1]:8265:8265"]}) == [("::1", 8265)]


def test_compose_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """No service publishes anything (let alone a Ray port) beyond the host's loopback."""
    for name, svc in services.items():
        assert svc.get("network_mode") != "host", f"{name}: host networking exposes every port"
        for host_ip, target in published_ports(svc):
            assert host_ip in {"127.0.0.1", "::1"}, f"{name} publishes {target} on {host_ip}"
    head = {target for _, target in published_ports(services["ray-head"])}
    assert head == RAY_PORTS


def test_compose_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["ray-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_compose_shared_results_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    def named_mounts(svc: dict[str, Any]) -> dict[str, str]:
        out = {}
        for vol in svc.get("volumes", []):
            if isinstance(vol, dict):
                src, dst = vol.get("source", ""), vol["target"]
            else:
                src, dst = str(vol).split(":")[:2]
            if src and not src.startswith((".", "/", "~")):  # named volume, not a bind mount
                out[src] = dst
        return out

    head, worker = named_mounts(services["ray-head"]), named_mounts(services["ray-worker"])
    shared = {name: path for name, path in head.items() if worker.get(name) == path}
    assert shared == {"pbrl-results": RESULTS_PATH}
    assert "pbrl-results" in compose["volumes"]


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_shm_size_fits_object_store(services: dict[str, dict[str, Any]], name: str) -> None:
    raw = services[name]["shm_size"]
    size = parse_size(interpolate(raw) if isinstance(raw, str) else raw)
    assert size >= 1024**3, f"{name}: shm_size {raw!r} < 1 GiB"


def test_parse_size_units() -> None:
    assert parse_size("2gb") == 2 * 1024**3
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size(interpolate("${RAY_SHM_SIZE:-4gb}")) == 4 * 1024**3
    assert parse_size(1024) == 1024


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_sets_ray_auth_mode_explicitly(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = env_map(services[name].get("environment"))
    assert "RAY_AUTH_MODE" in env
    assert env["RAY_AUTH_MODE"] is not None, "RAY_AUTH_MODE must have a value, not pass-through"
    assert interpolate(str(env["RAY_AUTH_MODE"])) in AUTH_MODES


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_token_auth_on_by_default(services: dict[str, dict[str, Any]], name: str) -> None:
    """RAY_AUTH_MODE is token unless set to disabled on purpose, and the token is required."""
    env = env_map(services[name].get("environment"))
    mode = str(env["RAY_AUTH_MODE"])
    assert interpolate(mode, {"RAY_AUTH_TOKEN": "x"}) == "token"
    assert interpolate(mode, {"RAY_AUTH_MODE": "disabled"}) == "disabled"
    token = env["RAY_AUTH_TOKEN"]
    assert isinstance(token, str)
    # compose's required-variable syntax: unset or empty stops `docker compose` with the message
    m = re.fullmatch(r"\$\{RAY_AUTH_TOKEN:\?(?P<msg>[^}]+)\}", token)
    assert m, f"{name}: RAY_AUTH_TOKEN must be ${{RAY_AUTH_TOKEN:?...}}, not {token!r}"
    assert "make cluster-token" in m.group("msg")
    for missing in ({}, {"RAY_AUTH_TOKEN": ""}):
        with pytest.raises(MissingVariable):
            interpolate(token, missing)
    assert interpolate(token, {"RAY_AUTH_TOKEN": "ab" * 16}) == "ab" * 16


def test_compose_interpolation() -> None:
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A:?no}", {"A": "v"}) == "v"
    assert interpolate("${A?no}", {"A": ""}) == ""
    with pytest.raises(MissingVariable, match="no"):
        interpolate("${A:?no}", {"A": ""})
    with pytest.raises(MissingVariable):
        interpolate("${A?no}")


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_runs_as_non_root(services: dict[str, dict[str, Any]], name: str) -> None:
    svc = services[name]
    uid, gid = dockerfile_user()
    assert str(svc.get("user", f"{uid}:{gid}")) == f"{uid}:{gid}", "compose's user != the image's"
    assert not svc.get("privileged"), name
    assert [c.upper() for c in svc.get("cap_drop", [])] in (["ALL"], ["CAP_ALL"]), name
    assert not svc.get("cap_add"), name
    assert "no-new-privileges:true" in svc.get("security_opt", []), name
    assert "shm_size" in svc  # the object store still gets its /dev/shm


@pytest.mark.parametrize("name", ["ray-head", "ray-worker"])
def test_compose_wandb_offline_by_default_and_key_not_inlined(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = env_map(services[name].get("environment"))
    assert env["WANDB_MODE"] == "${WANDB_MODE:-offline}"
    assert interpolate(env["WANDB_MODE"]) == "offline"
    key = env["WANDB_API_KEY"]
    assert key is None or re.fullmatch(r"\$\{WANDB_API_KEY(:?-)?\}", key), key


def test_compose_head_command(services: dict[str, dict[str, Any]]) -> None:
    cmd = command_text(services["ray-head"]["command"])
    for flag in ("ray start", "--head", "--port=6379", "--dashboard-host=0.0.0.0", "--block"):
        assert flag in cmd, flag
    num_cpus = re.search(r"--num-cpus=(\S+)", cmd)
    assert num_cpus
    assert num_cpus.group(1).startswith("${")
    assert int(interpolate(num_cpus.group(1))) >= 1


def test_compose_worker_command(services: dict[str, dict[str, Any]]) -> None:
    cmd = command_text(services["ray-worker"]["command"])
    assert "ray start" in cmd
    assert "--address=ray-head:6379" in cmd
    assert "--block" in cmd
    assert "--head" not in cmd


def test_compose_head_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    check = services["ray-head"]["healthcheck"]
    test = command_text(check["test"])
    assert "8265" in test or "health-check" in test
    assert int(check["retries"]) >= 3


# ---------------------------------------------------------------- Dockerfile and .env


def _dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def test_dockerfile_base_and_workdir() -> None:
    lines = _dockerfile_lines()
    assert lines[0] == "FROM python:3.11-slim"
    assert "WORKDIR /app" in lines
    assert any(re.fullmatch(r"COPY \. /app/?", ln) for ln in lines)


def test_dockerfile_installs_cpu_torch_before_package() -> None:
    lines = _dockerfile_lines()
    torch = [i for i, ln in enumerate(lines) if ln.startswith("RUN") and TORCH_PIN in ln]
    package = [
        i
        for i, ln in enumerate(lines)
        if ln.startswith("RUN") and re.search(r"pip install .*/app\b", ln)
    ]
    assert torch, "no RUN line installs " + TORCH_PIN
    assert package, "no RUN line runs pip install /app"
    assert TORCH_CPU_INDEX in lines[torch[0]]
    assert torch[0] < package[0]


def test_dockerfile_adds_ray_dashboard_and_wget() -> None:
    text = " ".join(_dockerfile_lines())
    assert "ray[default" in text
    assert "==2.60.0" in text
    assert "wget" in text  # KubeRay's default probes exec wget


def dockerfile_user() -> tuple[int, int]:
    """(uid, gid) that the image's containers run as: its last USER, resolved via useradd."""
    lines = _dockerfile_lines()
    users = [ln.split(None, 1)[1].strip() for ln in lines if ln.upper().startswith("USER ")]
    assert users, "the Dockerfile never switches away from root (no USER)"
    user, _, group = users[-1].partition(":")
    created = {}
    for ln in lines:
        for m in re.finditer(r"useradd\s+(?P<opts>(?:-\S+(?:\s+[^-\s]\S*)?\s+)*)(?P<name>\w+)", ln):
            uid = re.search(r"(?:--uid|-u)\s+(\d+)", m.group("opts"))
            gid = re.search(r"(?:--gid|-g)\s+(\d+)", m.group("opts"))
            assert uid and gid, f"useradd without a fixed --uid/--gid: {ln!r}"
            created[m.group("name")] = (int(uid.group(1)), int(gid.group(1)))
    if user.isdigit():
        uid = int(user)
        gid = int(group) if group.isdigit() else next(g for u, g in created.values() if u == uid)
    else:
        assert user in created, f"USER {user} is not created with useradd"
        uid, gid = created[user]
        if group:
            gid = int(group) if group.isdigit() else gid
    return uid, gid


def test_dockerfile_runs_as_non_root_user() -> None:
    lines = _dockerfile_lines()
    uid, gid = dockerfile_user()
    assert uid != 0 and gid != 0, "the image's last USER is root"
    last_user = max(i for i, ln in enumerate(lines) if ln.upper().startswith("USER "))
    # nothing after the last USER may need root (RUN would) or switch back
    assert not any(ln.upper().startswith("RUN ") for ln in lines[last_user + 1 :])
    text = " ".join(lines)
    # the user owns the results mount point (a new named volume copies it) and the workdir
    assert re.search(r"mkdir -p /results\b", text)
    assert re.search(r"chown (?:-R )?(?:ray|1000):(?:ray|1000) /results\b", text)
    assert re.search(r"chown (?:-R )?(?:ray|1000):(?:ray|1000) /app\b", text)


def test_dockerfile_user_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile = tmp_path / "Dockerfile"
    monkeypatch.setattr(sys.modules[__name__], "DOCKERFILE", dockerfile)
    dockerfile.write_text("FROM x\nRUN useradd --uid 1001 --gid 1002 -m app\nUSER app\n")
    assert dockerfile_user() == (1001, 1002)
    dockerfile.write_text("FROM x\nRUN useradd -u 7 -g 8 app\nUSER 7\nUSER root\n")
    with pytest.raises(AssertionError):
        dockerfile_user()  # root is not created with useradd
    dockerfile.write_text("FROM x\nUSER 0:0\n")
    assert dockerfile_user() == (0, 0)


def _dockerfile_lock_path() -> str:
    """Where the Dockerfile COPYs cluster/constraints.txt inside the image."""
    copies = [
        ln.split()[-1]
        for ln in _dockerfile_lines()
        if ln.startswith("COPY") and "cluster/constraints.txt" in ln.split()[1:-1]
    ]
    assert copies, "the Dockerfile never COPYs cluster/constraints.txt into the image"
    return copies[0]


def test_dockerfile_installs_everything_with_the_lock() -> None:
    lines = _dockerfile_lines()
    dest = _dockerfile_lock_path()
    copied = next(i for i, ln in enumerate(lines) if ln.startswith("COPY") and dest in ln)
    for i, ln in enumerate(lines):
        if not (ln.startswith("RUN") and "pip install" in ln) or TORCH_CPU_INDEX in ln:
            continue  # the CPU torch line is pinned on its own (torch==2.13.0, CPU index)
        assert re.search(rf"(-c|--constraint)\s+{re.escape(dest)}\b", ln), ln
        assert i > copied, f"{ln!r} runs before the constraints file is copied in"
    assert any(re.search(r"pip install .*/app\b", ln) for ln in lines)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    patterns = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    for path in (
        ".env",
        ".env.1a2b3c4d.tmp",  # cluster_token.py's temporary file
        "cluster/.env",
        "cluster/.env.prod",  # nested .env.* too
        "a/b/.env.local",
        ".netrc",
        "examples/.netrc",
        ".aws/credentials",
        "deploy/.aws/config",
        ".ssh/id_ed25519",
        "id_rsa",
        "cluster/id_rsa.pub",
        "certs/server.pem",
        "tls/server.key",
        ".venv/bin/python",
        ".git/HEAD",
        "results/fig1/sweep.yaml",
        "wandb/offline-run-1/run.wandb",
        "pbrl_dist/__pycache__/cli.cpython-311.pyc",
        "pbrl_dist.egg-info/PKG-INFO",
        ".pytest_cache/README.md",
    ):
        assert dockerignored(path, patterns), f".dockerignore lets {path} into the image"
    copied = [
        src
        for ln in _dockerfile_lines()
        if ln.startswith("COPY")
        for src in ln.split()[1:-1]
        if src != "."
    ]
    keep = [*copied, "cluster/.env.example", "sweeps/rlhf_toy.yaml", "pbrl_dist/cli.py"]
    for path in keep:
        assert not dockerignored(path, patterns), (
            f".dockerignore drops {path}, which the image needs"
        )


def test_gitignore_keeps_env_files_out() -> None:
    """.env (RAY_AUTH_TOKEN, WANDB_API_KEY) is ignored by git, at any depth, and never re-included."""
    patterns = [
        ln.strip()
        for ln in GITIGNORE.read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert ".env" in patterns or "**/.env" in patterns
    assert ".env.*" in patterns  # the script's temporary files
    last = {p.lstrip("!"): i for i, p in enumerate(patterns)}
    assert not patterns[last[".env"]].startswith("!")
    assert "!.env" not in patterns
    if shutil.which("git") and (ROOT / ".git").exists():  # the real matcher, when there is one
        for path, ignored in ((".env", True), ("cluster/.env", True), (".env.x.tmp", True),
                              ("cluster/.env.example", False)):  # fmt: skip
            rc = subprocess.run(
                ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], check=False
            ).returncode
            assert rc == (0 if ignored else 1), (path, rc)


def test_dockerignore_matcher() -> None:
    assert dockerignored("a/b/.env", ["**/.env"])
    assert not dockerignored("a/.env", [".env"])
    assert dockerignored("results/x/y", ["results"])
    assert not dockerignored("pbrl_dist/results.py", ["results"])
    assert not dockerignored("x.pyc", ["*.pyc", "!x.pyc"])


def test_lock_pins_the_cluster_stack_like_pyproject() -> None:
    pins = lock_pins()
    for name in ("ray", "torch", "wandb", "gymnasium", "ale-py", "omegaconf", "numpy", "aiohttp"):
        assert name in pins, f"constraints.txt does not pin {name}"
    ray = pyproject_requirement("ray")
    assert {"tune", "default"} <= ray.extras, "pbrl submit needs ray[default] (Jobs SDK)"
    (spec,) = ray.specifier
    assert spec.operator == "=="
    assert pins["ray"] == spec.version
    assert f"torch=={pins['torch']}" == TORCH_PIN
    for req in map(Requirement, tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]):
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt misses the direct dependency {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_lock_matches_the_installed_environment() -> None:
    """.venv (``make`` installs with -c) runs what the cluster runs; re-lock with `make constraints`."""
    drift = {}
    for name, version in lock_pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != version:
            drift[name] = (version, installed)
    assert not drift, f"pinned vs installed: {drift}"


def test_lock_is_what_make_constraints_writes() -> None:
    """Nothing missing or stale: the runtime closure of pbrl_dist in this environment, pinned."""
    spec = importlib.util.spec_from_file_location(
        "lock_constraints", CLUSTER / "lock_constraints.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert LOCK.read_text() == module.render(), "run `make constraints`"


def test_makefile_installs_with_the_lock() -> None:
    text = MAKEFILE.read_text()
    assert re.search(r"^LOCK\s*:=\s*cluster/constraints\.txt$", text, re.M)
    stamp = re.search(r"^\$\(STAMP\):(.*)$", text, re.M)
    assert stamp
    assert "pyproject.toml" in stamp.group(1) and "$(LOCK)" in stamp.group(1)
    assert re.search(r"pip install .*-c \$\(LOCK\) .*-e '\.\[dev\]'", text)


def test_env_example_documents_settings() -> None:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, val = line.partition("=")
            values[key.strip()] = val.strip()
    assert {"WANDB_API_KEY", "WANDB_MODE", "RAY_AUTH_MODE", "RAY_NUM_CPUS"} <= set(values)
    assert values["WANDB_API_KEY"] == ""
    assert values["WANDB_MODE"] == "offline"
    assert values["RAY_AUTH_MODE"] == "token"  # what `make cluster-token` copies into .env
    assert values["RAY_AUTH_TOKEN"] == ""  # filled in .env by cluster_token.py, never here
    assert int(values["RAY_NUM_CPUS"]) >= 1


# ---------------------------------------------------------------- cluster launcher


def test_launcher_required_keys(launcher: dict[str, Any]) -> None:
    required = {
        "cluster_name", "max_workers", "provider", "auth", "available_node_types",
        "head_node_type", "docker", "file_mounts", "setup_commands",
        "head_start_ray_commands", "worker_start_ray_commands",
    }  # fmt: skip
    assert required <= set(launcher), required - set(launcher)
    assert launcher["provider"]["type"] == "aws"
    assert launcher["provider"]["region"]
    assert launcher["auth"]["ssh_user"] == "ubuntu"
    assert launcher["docker"]["image"].startswith("rayproject/ray:2.60.0")
    assert launcher["docker"]["container_name"]


def test_launcher_node_types(launcher: dict[str, Any]) -> None:
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != launcher["head_node_type"]}
    assert workers
    for name, node in types.items():
        assert "resources" in node, name
        assert "node_config" in node, name
    for name, node in workers.items():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= launcher["max_workers"], name
        assert node["resources"]["CPU"] >= 1


def test_launcher_commands(launcher: dict[str, Any]) -> None:
    setup = launcher["setup_commands"]
    torch = next((i for i, c in enumerate(setup) if TORCH_PIN in c and TORCH_CPU_INDEX in c), None)
    installs_package = re.compile(r"pip install .*pbrl_dist")
    package = next((i for i, c in enumerate(setup) if installs_package.search(c)), None)
    assert torch is not None, f"no CPU {TORCH_PIN} install in setup_commands"
    assert package is not None, "no pip install of the synced pbrl_dist repo in setup_commands"
    assert torch < package
    assert "." in launcher["file_mounts"].values()
    head, worker = launcher["head_start_ray_commands"], launcher["worker_start_ray_commands"]
    assert head[0] == worker[0] == "ray stop"
    assert "ray start --head" in head[-1]
    assert "--port=6379" in head[-1]
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker[-1]


def test_launcher_installs_with_the_lock(launcher: dict[str, Any]) -> None:
    (remote,) = [r for r, local in launcher["file_mounts"].items() if local == "."]
    lock = f"{remote.rstrip('/')}/cluster/constraints.txt"
    installs = [c for c in launcher["setup_commands"] if re.search(r"pip install .*pbrl_dist", c)]
    assert installs
    for cmd in installs:
        assert re.search(rf"(-c|--constraint)\s+{re.escape(lock)}(\s|$)", cmd), cmd
    assert not any("cluster" in x or "constraints" in x for x in launcher.get("rsync_exclude", []))
    assert ".env" in launcher["rsync_exclude"]
    assert launcher["docker"]["image"].startswith(f"rayproject/ray:{lock_pins()['ray']}-")


def test_launcher_sets_auth_mode_on_nodes(launcher: dict[str, Any]) -> None:
    opts = " ".join(launcher["docker"]["run_options"])
    m = re.search(r"RAY_AUTH_MODE=(\w+)", opts)
    assert m
    assert m.group(1) in AUTH_MODES


def test_launcher_matches_ray_schema(launcher: dict[str, Any]) -> None:
    """Validate against the JSON schema that `ray up` itself uses (shipped in the Ray wheel)."""
    spec = importlib.util.find_spec("ray")
    assert spec is not None, "ray is a hard dependency of pbrl_dist"
    assert spec.origin
    schema_path = Path(spec.origin).parent / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(launcher, schema)


# ---------------------------------------------------------------- KubeRay


def _pod_specs(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    pods = [cluster_spec["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster_spec["workerGroupSpecs"]]
    return pods


def operator_token_auth(spec: dict[str, Any]) -> bool:
    """Whether KubeRay (>= 1.5.1) runs token auth for this cluster: ``authOptions.mode: token``."""
    auth = spec.get("authOptions")
    if auth is None:
        return False
    assert auth.get("mode", "token") in AUTH_MODES
    if auth.get("mode", "token") == "token":
        major, minor = map(int, spec["rayVersion"].split(".")[:2])
        assert (major, minor) >= (2, 52), "KubeRay rejects authOptions before Ray 2.52"
        return True
    return False


def _check_ray_cluster_spec(spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == "2.60.0"
    params = spec["headGroupSpec"]["rayStartParams"]
    assert params["dashboard-host"] == "0.0.0.0"
    assert all(isinstance(v, str) for v in params.values()), "rayStartParams values must be strings"
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for pod in _pod_specs(spec):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert "pbrl-results" in claims.values()
        container = pod["containers"][0]
        assert container["image"].startswith("pbrl_dist")
        res = container["resources"]
        assert res["requests"]["cpu"]
        assert res["limits"]["memory"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert claims.get(mounts.get(RESULTS_PATH)) == "pbrl-results"
        env = k8s_env(container)
        if operator_token_auth(spec):
            # KubeRay >= 1.5.1 sets both itself; a second, hand-set copy would fight it
            assert "RAY_AUTH_MODE" not in env and "RAY_AUTH_TOKEN" not in env, container["name"]
        else:
            assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"
        assert env["WANDB_MODE"]["value"] == "offline"
        assert "value" not in env.get("WANDB_API_KEY", {}), "W&B key must come from a Secret"
        _check_dev_shm(pod)


def _check_dev_shm(pod: dict[str, Any]) -> None:
    """/dev/shm is a memory-backed emptyDir (compose's shm_size), big enough for the object store."""
    shm_volumes = {
        v["name"]: v["emptyDir"]
        for v in pod["volumes"]
        if v.get("emptyDir", {}).get("medium") == "Memory"
    }
    container = pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get("/dev/shm") in shm_volumes, f"{container['name']}: no emptyDir at /dev/shm"
    limit = shm_volumes[mounts["/dev/shm"]].get("sizeLimit")
    if limit is not None:  # Ray's object store takes 30% of the memory by default
        memory = k8s_bytes(container["resources"]["limits"]["memory"])
        assert 0.3 * memory <= k8s_bytes(limit) <= memory, (container["name"], limit)


def test_k8s_pods_run_the_locked_image(
    raycluster: dict[str, Any], rayjob: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """KubeRay installs nothing itself: its pods run the image built from cluster/Dockerfile."""
    image = services["ray-head"]["image"]
    assert services["ray-head"]["build"]["dockerfile"] == "cluster/Dockerfile"
    ray_pin = lock_pins()["ray"]
    job = rayjob["spec"]
    for spec in (raycluster["spec"], job["rayClusterSpec"]):
        assert spec["rayVersion"] == ray_pin
        for pod in _pod_specs(spec):
            for container in pod["containers"]:
                assert container["image"] == image, container["name"]
    for container in job["submitterPodTemplate"]["spec"]["containers"]:
        assert container["image"] == image
    _dockerfile_lock_path()  # and that image installs with -c cluster/constraints.txt


def test_k8s_quantities() -> None:
    assert k8s_bytes("8Gi") == 8 * 1024**3
    assert k8s_bytes("512Mi") == 512 * 1024**2
    assert k8s_bytes("4G") == 4 * 1000**3


def test_raycluster_manifest(raycluster: dict[str, Any]) -> None:
    assert raycluster["apiVersion"] == "ray.io/v1"
    assert raycluster["kind"] == "RayCluster"
    _check_ray_cluster_spec(raycluster["spec"])
    head = raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in head["ports"]}
    assert ports == {6379, 8265, 10001}
    if raycluster["spec"].get("enableInTreeAutoscaling") and not operator_token_auth(
        raycluster["spec"]
    ):
        auto_env = {e["name"]: e for e in raycluster["spec"]["autoscalerOptions"]["env"]}
        assert auto_env["RAY_AUTH_MODE"]["value"] == k8s_env(head)["RAY_AUTH_MODE"]["value"]
        assert auto_env["RAY_AUTH_TOKEN"] == k8s_env(head)["RAY_AUTH_TOKEN"]


def test_rayjob_manifest(rayjob: dict[str, Any]) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    entry = spec["entrypoint"]
    assert entry.startswith("pbrl sweep ")
    assert "sweeps/fig1_stackelberg.yaml" in entry
    assert "--address auto" in entry
    assert "--out /results/fig1" in entry
    assert not re.search(r"&&|\|\||;|\|", entry), "submitter appends entrypoint to a shell line"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode"}
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["WANDB_MODE"] == "offline"
    assert not any("TOKEN" in k or "API_KEY" in k for k in runtime_env["env_vars"])
    _check_ray_cluster_spec(spec["rayClusterSpec"])
    submitter = k8s_env(spec["submitterPodTemplate"]["spec"]["containers"][0])
    head = k8s_env(spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0])
    # The operator polls the job's status on the dashboard, and only holds the token for that
    # when it runs token auth itself (authOptions, KubeRay >= 1.5.1); it then sets the submitter's.
    assert operator_token_auth(spec["rayClusterSpec"])
    assert "RAY_AUTH_MODE" not in submitter and "RAY_AUTH_TOKEN" not in submitter
    assert "RAY_AUTH_MODE" not in head


def test_results_pvc_is_read_write_many() -> None:
    pvc = load_yaml(PVC)
    assert pvc["apiVersion"] == "v1"
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == "pbrl-results"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


# ---------------------------------------------------------------- KubeRay hardening

_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
# The parts of networking.k8s.io/v1 NetworkPolicy and core/v1 (Pod)SecurityContext used here, with
# their real field names and enums, so that a typo (which the API server would reject, or worse,
# kubectl apply --validate=false would drop) fails here.
NETWORK_POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "networking.k8s.io/v1"},
        "kind": {"const": "NetworkPolicy"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["podSelector"],
            "properties": {
                "podSelector": _LABEL_SELECTOR,
                "policyTypes": {"type": "array", "items": {"enum": ["Ingress", "Egress"]}},
                "ingress": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "from": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "minProperties": 1,
                                    "properties": {
                                        "podSelector": _LABEL_SELECTOR,
                                        "namespaceSelector": _LABEL_SELECTOR,
                                        "ipBlock": {"type": "object", "required": ["cidr"]},
                                    },
                                },
                            },
                            "ports": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                                        "port": {"type": ["integer", "string"]},
                                        "endPort": {"type": "integer"},
                                    },
                                },
                            },
                        },
                    },
                },
                "egress": {"type": "array"},
            },
        },
    },
}
_SECCOMP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": ["RuntimeDefault", "Localhost", "Unconfined"]},
        "localhostProfile": {"type": "string"},
    },
}
CONTAINER_SECURITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "allowPrivilegeEscalation": {"type": "boolean"},
        "appArmorProfile": {"type": "object"},
        "capabilities": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "add": {"type": "array", "items": {"type": "string"}},
                "drop": {"type": "array", "items": {"type": "string"}},
            },
        },
        "privileged": {"type": "boolean"},
        "procMount": {"enum": ["Default", "Unmasked"]},
        "readOnlyRootFilesystem": {"type": "boolean"},
        "runAsGroup": {"type": "integer"},
        "runAsNonRoot": {"type": "boolean"},
        "runAsUser": {"type": "integer"},
        "seLinuxOptions": {"type": "object"},
        "seccompProfile": _SECCOMP,
        "windowsOptions": {"type": "object"},
    },
}
POD_SECURITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "appArmorProfile": {"type": "object"},
        "fsGroup": {"type": "integer"},
        "fsGroupChangePolicy": {"enum": ["OnRootMismatch", "Always"]},
        "runAsGroup": {"type": "integer"},
        "runAsNonRoot": {"type": "boolean"},
        "runAsUser": {"type": "integer"},
        "seLinuxChangePolicy": {"type": "string"},
        "seLinuxOptions": {"type": "object"},
        "seccompProfile": _SECCOMP,
        "supplementalGroups": {"type": "array", "items": {"type": "integer"}},
        "supplementalGroupsPolicy": {"enum": ["Merge", "Strict"]},
        "sysctls": {"type": "array"},
        "windowsOptions": {"type": "object"},
    },
}
_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def check_labels(labels: dict[str, str]) -> None:
    """Kubernetes label syntax: [dns-subdomain/]name = value (value may be empty)."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix)), key
        assert re.fullmatch(_LABEL_NAME, name), key
        assert isinstance(value, str) and (value == "" or re.fullmatch(_LABEL_NAME, value)), value


def ray_containers(cluster_spec: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """(name, securityContext) of every container KubeRay runs for this cluster spec.

    The head and worker containers (and any init containers; KubeRay's own wait-gcs-ready init
    container copies the Ray container's securityContext), plus the autoscaler sidecar, whose
    securityContext comes from autoscalerOptions.
    """
    out = []
    for pod in _pod_specs(cluster_spec):
        for c in pod.get("initContainers", []) + pod["containers"]:
            out.append((c["name"], c.get("securityContext")))
    if cluster_spec.get("enableInTreeAutoscaling"):
        opts = cluster_spec.get("autoscalerOptions", {})
        out.append(("autoscaler", opts.get("securityContext")))
    return out


def check_container_security(name: str, ctx: dict[str, Any] | None) -> None:
    uid, gid = dockerfile_user()
    assert ctx, f"{name}: no securityContext"
    jsonschema.validate(ctx, CONTAINER_SECURITY_SCHEMA)
    assert ctx.get("runAsNonRoot") is True, name
    assert ctx.get("runAsUser") == uid, f"{name}: runAsUser is not the image's uid {uid}"
    assert ctx.get("runAsGroup", gid) == gid, name
    assert ctx.get("allowPrivilegeEscalation") is False, name
    assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name
    assert not ctx.get("capabilities", {}).get("add"), name
    assert not ctx.get("privileged"), name
    assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, name


def check_pod_security(pod: dict[str, Any]) -> None:
    uid, gid = dockerfile_user()
    ctx = pod.get("securityContext")
    assert ctx, "pod without securityContext"
    jsonschema.validate(ctx, POD_SECURITY_SCHEMA)
    assert ctx.get("runAsNonRoot") is True
    assert ctx.get("runAsUser", uid) == uid
    assert ctx.get("fsGroup") == gid, "the results PVC needs fsGroup = the image's gid"
    assert ctx.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}


def test_raycluster_containers_are_non_root(raycluster: dict[str, Any]) -> None:
    spec = raycluster["spec"]
    containers = ray_containers(spec)
    assert {n for n, _ in containers} >= {"ray-head", "ray-worker"}
    if spec.get("enableInTreeAutoscaling"):
        assert "autoscaler" in {n for n, _ in containers}
    for name, ctx in containers:
        check_container_security(name, ctx)
    for pod in _pod_specs(spec):
        check_pod_security(pod)


def test_rayjob_containers_are_non_root(rayjob: dict[str, Any]) -> None:
    spec = rayjob["spec"]
    containers = ray_containers(spec["rayClusterSpec"])
    submitter = spec["submitterPodTemplate"]["spec"]
    containers += [(c["name"], c.get("securityContext")) for c in submitter["containers"]]
    assert {n for n, _ in containers} >= {"ray-head", "ray-worker", "ray-job-submitter"}
    for name, ctx in containers:
        check_container_security(name, ctx)
    for pod in [*_pod_specs(spec["rayClusterSpec"]), submitter]:
        check_pod_security(pod)


def test_every_k8s_container_has_the_security_context() -> None:
    """Whatever else the manifests grow: every pod spec in cluster/k8s runs hardened."""
    seen = 0

    def walk(node: Any, path: str) -> None:
        nonlocal seen
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                for c in node.get("initContainers", []) + node["containers"]:
                    check_container_security(f"{path}/{c['name']}", c.get("securityContext"))
                    seen += 1
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            walk(doc, path.name)
    assert seen >= 5  # raycluster head + worker, rayjob head + worker + submitter


def network_policies(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    for policy in policies:
        jsonschema.validate(policy, NETWORK_POLICY_SCHEMA)
        spec = policy["spec"]
        check_labels(spec["podSelector"].get("matchLabels", {}))
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                for sel in ("podSelector", "namespaceSelector"):
                    check_labels(peer.get(sel, {}).get("matchLabels", {}))
    return policies


def check_ray_network_policies(
    policies: list[dict[str, Any]], cluster: dict[str, str], submitters: list[dict[str, str]]
) -> None:
    """Ray pods (selected by ``cluster``) take connections only from each other, except 8265.

    - some policy selects exactly the cluster's pods and allows ingress from them (any port:
      Ray's raylet, object manager, agent and worker ports are random);
    - every policy selects only this cluster's pods, restricts Ingress, and every rule names its
      sources (a rule without `from` would admit everyone);
    - a rule with any source other than the cluster's own pods admits only TCP 8265 (dashboard
      and Jobs API), only on the head, and only from labelled pods (no ipBlock, no bare
      namespaceSelector); each label set in ``submitters`` is such a source.
    """
    same_cluster = {"podSelector": {"matchLabels": cluster}}
    assert policies, "no NetworkPolicy next to the cluster"
    intra = [p for p in policies if p["spec"]["podSelector"].get("matchLabels") == cluster]
    assert intra, f"no NetworkPolicy selecting exactly the pods with {cluster}"
    assert any(
        rule.get("from") == [same_cluster] and "ports" not in rule
        for p in intra
        for rule in p["spec"].get("ingress", [])
    ), "the cluster's pods must reach each other on every port"
    outside_sources: list[dict[str, Any]] = []
    for policy in policies:
        spec, name = policy["spec"], policy["metadata"]["name"]
        selected = spec["podSelector"].get("matchLabels", {})
        assert cluster.items() <= selected.items(), f"{name} selects pods outside the cluster"
        assert "matchExpressions" not in spec["podSelector"], name
        assert "Ingress" in spec.get("policyTypes", ["Ingress"]), name
        for rule in spec.get("ingress", []):
            sources = rule.get("from")
            assert sources, f"{name}: an ingress rule without `from` admits every source"
            if all(peer == same_cluster for peer in sources):
                continue
            assert selected.get("ray.io/node-type") == "head", f"{name}: outside access to workers"
            ports = rule.get("ports")
            assert ports == [{"protocol": "TCP", "port": DASHBOARD_PORT}], (name, ports)
            for peer in sources:
                assert "ipBlock" not in peer, f"{name}: ipBlock source"
                assert peer.get("podSelector", {}).get("matchLabels"), f"{name}: unlabelled source"
                outside_sources.append(peer)
    for labels in submitters:
        assert any(
            peer["podSelector"]["matchLabels"].items() <= labels.items()
            and "namespaceSelector" not in peer
            for peer in outside_sources
        ), f"the submitter pods {labels} cannot reach the dashboard"
        assert not cluster.items() <= labels.items(), "a submitter must not count as a Ray pod"


def test_raycluster_network_policies(
    raycluster_docs: list[dict[str, Any]], raycluster: dict[str, Any]
) -> None:
    """KubeRay labels every pod of a RayCluster ``ray.io/cluster: <name>`` (not overridable)."""
    cluster = {"ray.io/cluster": raycluster["metadata"]["name"]}
    policies = network_policies(raycluster_docs)
    check_ray_network_policies(policies, cluster, [])
    # and the opt-in submitter label it documents
    peers = [
        peer
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for peer in rule["from"]
        if peer != {"podSelector": {"matchLabels": cluster}}
    ]
    assert peers, "nothing outside the cluster can reach the dashboard, not even a submitter"
    for p in policies:
        assert "namespace" not in p["metadata"], "policies go into the RayCluster's namespace"


def test_rayjob_network_policies(rayjob_docs: list[dict[str, Any]], rayjob: dict[str, Any]) -> None:
    """A RayJob's cluster name is generated, so its pods carry a label of their own to select."""
    spec = rayjob["spec"]
    policies = network_policies(rayjob_docs)
    intra = [
        p["spec"]["podSelector"]["matchLabels"]
        for p in policies
        if "ray.io/node-type" not in p["spec"]["podSelector"].get("matchLabels", {})
    ]
    assert len(intra) == 1
    (cluster,) = intra
    assert not any(k.startswith("ray.io/") for k in cluster), "KubeRay sets ray.io/* itself"
    for pod in [spec["rayClusterSpec"]["headGroupSpec"]] + spec["rayClusterSpec"][
        "workerGroupSpecs"
    ]:
        labels = pod["template"].get("metadata", {}).get("labels", {})
        check_labels(labels)
        assert cluster.items() <= labels.items(), "a Ray pod the NetworkPolicies do not select"
    submitter = spec["submitterPodTemplate"].get("metadata", {}).get("labels", {})
    assert submitter, "the submitter pod needs a label for the dashboard NetworkPolicy"
    check_labels(submitter)
    check_ray_network_policies(policies, cluster, [submitter])
    # the operator polls the job's status on the dashboard, from its own namespace
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "kuberay-operator"
        and "namespaceSelector" in peer
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for peer in rule["from"]
    ), "the KubeRay operator cannot reach the dashboard to follow the job"


def test_network_policy_checker_rejects_open_rules() -> None:
    cluster = {"ray.io/cluster": "c"}
    same = {"podSelector": {"matchLabels": cluster}}
    head = {**cluster, "ray.io/node-type": "head"}

    def policy(selector: dict[str, str], *rules: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"],
                     "ingress": list(rules)},
        }  # fmt: skip

    good = [
        policy(cluster, {"from": [same]}),
        policy(head, {"from": [{"podSelector": {"matchLabels": {"s": "c"}}}],
                      "ports": [{"protocol": "TCP", "port": 8265}]}),
    ]  # fmt: skip
    check_ray_network_policies(network_policies(good), cluster, [{"s": "c"}])
    bad_cases = [
        [policy(cluster, {"from": [same]}), policy(cluster, {})],  # no `from`: everyone
        [policy(cluster, {"from": [same, {"ipBlock": {"cidr": "0.0.0.0/0"}}]})],
        [policy(cluster, {"from": [same]}),  # GCS from outside
         policy(head, {"from": [{"podSelector": {"matchLabels": {"s": "c"}}}],
                       "ports": [{"protocol": "TCP", "port": 6379}]})],
        [policy(cluster, {"from": [same]}),  # dashboard from a whole namespace
         policy(head, {"from": [{"namespaceSelector": {}}],
                       "ports": [{"protocol": "TCP", "port": 8265}]})],
        [policy({"x": "y"}, {"from": [same]})],  # selects no Ray pods of this cluster
    ]  # fmt: skip
    for docs in bad_cases:
        with pytest.raises(AssertionError):
            check_ray_network_policies(network_policies(docs), cluster, [])
    with pytest.raises(jsonschema.ValidationError):
        network_policies([policy(cluster, {"form": [same]})])  # typo


# ---------------------------------------------------------------- make cluster-token


def run_token_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOKEN_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def env_lines(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, val = line.partition("=")
            out[key.strip()] = val
    return out


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_script_creates_a_private_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the file's mode
    try:
        result = run_token_script("--env-file", env_file)
    finally:
        os.umask(old_umask)
    assert file_mode(env_file) == 0o600
    values = env_lines(env_file)
    token = values["RAY_AUTH_TOKEN"]
    assert re.fullmatch(r"[0-9a-f]{32,}", token), "the token must be 32+ hex characters"
    assert len(token) >= 64
    assert token not in result.stdout + result.stderr, "the script printed the token"
    # created from cluster/.env.example: the documented settings come along, auth mode token
    assert values["RAY_AUTH_MODE"] == "token"
    assert values["WANDB_MODE"] == "offline"
    assert list(tmp_path.iterdir()) == [env_file], "a temporary file was left behind"
    # and compose would now start: the required variable is set
    assert interpolate("${RAY_AUTH_TOKEN:?x}", values) == token


def test_token_script_never_overwrites_a_token(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    run_token_script("--env-file", env_file)
    first = env_file.read_text()
    run_token_script("--env-file", env_file)
    assert env_file.read_text() == first
    mine = "WANDB_MODE=online\nRAY_AUTH_TOKEN=" + "0f" * 20 + "\n"
    env_file.write_text(mine)
    env_file.chmod(0o644)
    result = run_token_script("--env-file", env_file)
    assert env_file.read_text() == mine  # kept as it was, byte for byte
    assert file_mode(env_file) == 0o600  # but no longer readable by others
    assert "0f" * 20 not in result.stdout + result.stderr


def test_token_script_fills_an_empty_token_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nWANDB_MODE=online\nRAY_AUTH_TOKEN=\nRAY_NUM_CPUS=4\n")
    env_file.chmod(0o664)
    run_token_script("--env-file", env_file)
    lines = env_file.read_text().splitlines()
    assert lines[0] == "# mine" and lines[1] == "WANDB_MODE=online" and lines[3] == "RAY_NUM_CPUS=4"
    assert re.fullmatch(r"RAY_AUTH_TOKEN=[0-9a-f]{64}", lines[2])
    assert file_mode(env_file) == 0o600
    other = tmp_path / "other.env"
    other.write_text("RAY_NUM_CPUS=4\n")  # no token line at all: one is appended
    run_token_script("--env-file", other)
    assert re.fullmatch(r"RAY_NUM_CPUS=4\nRAY_AUTH_TOKEN=[0-9a-f]{64}\n", other.read_text())
    tokens = {env_lines(env_file)["RAY_AUTH_TOKEN"], env_lines(other)["RAY_AUTH_TOKEN"]}
    assert len(tokens) == 2, "tokens must be random"


def test_makefile_has_cluster_token_target() -> None:
    text = MAKEFILE.read_text()
    m = re.search(r"^cluster-token:.*\n((?:\t.*\n)+)", text, re.M)
    assert m, "no `make cluster-token`"
    assert "cluster/cluster_token.py" in m.group(1)
    assert re.search(r"^\.PHONY:.*\bcluster-token\b", text, re.M)


# ---------------------------------------------------------------- docs and secrets


def test_readme_covers_the_workflows() -> None:
    text = README.read_text()
    for needle in (
        "docker compose up -d --scale ray-worker=3",
        "pbrl submit sweeps/fig1_stackelberg.yaml --address http://127.0.0.1:8265",
        "pbrl submit --logs JOB_ID",
        "--address auto",
        "dist.num_rollout_workers=",
        "ray up cluster/aws.yaml",
        "kubectl apply -f cluster/k8s/",
        "wandb sync",
        "RAY_AUTH_MODE",
        "make cluster-token",
        "RAY_AUTH_TOKEN",
        "NetworkPolicy",
    ):
        assert needle in text, needle


SECRET_PATTERNS = {
    "W&B API key (40 hex)": re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{40}(?![0-9a-fA-F])"),
    "Ray token (64 hex)": re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "OpenAI-style key": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "inline secret assignment": re.compile(
        r"(?i)\b(?:WANDB_API_KEY|RAY_AUTH_TOKEN|api_key|auth_token)"
        r"[ \t]*[:=][ \t]*['\"]?[A-Za-z0-9_\-]{16,}"
    ),
}
CONFIG_FILES = [
    COMPOSE, DOCKERFILE, DOCKERIGNORE, ENV_EXAMPLE, LAUNCHER, RAYCLUSTER, RAYJOB, PVC, README, LOCK,
    TOKEN_SCRIPT, GITIGNORE, MAKEFILE,
]  # fmt: skip


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secrets_in_config_files(path: Path) -> None:
    text = path.read_text()
    for what, pattern in SECRET_PATTERNS.items():
        assert not pattern.search(text), f"{what} in {path.relative_to(ROOT)}"


def test_secret_patterns_catch_real_looking_keys() -> None:
    fake_wandb = "WANDB_API_KEY=" + "0123456789abcdef" * 2 + "01234567"
    fake_token = "ab" * 32
    assert SECRET_PATTERNS["W&B API key (40 hex)"].search(fake_wandb)
    assert SECRET_PATTERNS["inline secret assignment"].search(fake_wandb)
    assert SECRET_PATTERNS["Ray token (64 hex)"].search(fake_token)
    assert not SECRET_PATTERNS["inline secret assignment"].search("WANDB_API_KEY=")
