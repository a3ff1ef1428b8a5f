"""Static checks of the cluster configs: docker-compose, Dockerfile, launcher YAML, KubeRay.

No docker engine, cluster or network is needed; the files are parsed with yaml.safe_load and
checked for the properties that make a multi-node Ray cluster work (see
shared/spec/PLATFORM_NOTES.md section 4 and pain points 2, 8 and 9), and for the one set of pins
(cluster/constraints.txt) that the image, the launcher, KubeRay's pods and .venv all install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
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
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
MAKEFILE = ROOT / "Makefile"

RESULTS_PATH = "/results"
AUTH_MODES = {"disabled", "token"}  # the two values Ray 2.60 understands
TORCH_PIN = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Resolve compose-style ``${VAR:-default}`` with an empty environment (defaults only)."""
    return _INTERP.sub(lambda m: m.group("default") or "", value)


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
def raycluster() -> dict[str, Any]:
    return load_yaml(RAYCLUSTER)


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return load_yaml(RAYJOB)


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


def test_compose_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = [str(p) for svc in services.values() for p in svc.get("ports", [])]
    assert published, "the head must publish the dashboard"
    for port in published:
        assert port.startswith("127.0.0.1:"), port
    head = {p.split(":", 1)[1] for p in map(str, services["ray-head"]["ports"])}
    assert head == {"8265:8265", "6379:6379", "10001:10001"}


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
        "cluster/.env",
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
    assert values["RAY_AUTH_MODE"] in AUTH_MODES
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
        assert env["RAY_AUTH_MODE"]["value"] in AUTH_MODES
        if env["RAY_AUTH_MODE"]["value"] == "token":
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
    if raycluster["spec"].get("enableInTreeAutoscaling"):
        auto_env = {e["name"]: e for e in raycluster["spec"]["autoscalerOptions"]["env"]}
        assert auto_env["RAY_AUTH_MODE"]["value"] == k8s_env(head)["RAY_AUTH_MODE"]["value"]


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
    assert submitter["RAY_AUTH_MODE"]["value"] == head["RAY_AUTH_MODE"]["value"]


def test_results_pvc_is_read_write_many() -> None:
    pvc = load_yaml(PVC)
    assert pvc["apiVersion"] == "v1"
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == "pbrl-results"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


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
