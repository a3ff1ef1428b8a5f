"""Write cluster/constraints.txt: every runtime dependency of pbrl_dist pinned at the installed version.

Run with the interpreter of the environment to lock (``make constraints`` uses .venv's). The closure
starts at pbrl_dist's own requirements (no dev/bench extras) and follows each package's requirements,
with the extras they ask for. Local version labels are dropped (``torch==2.13.0``, not ``+cpu``), so
the same pin is met by the CPU wheel from download.pytorch.org and by any other 2.13.0 build.
"""

from __future__ import annotations

import sys
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "cluster" / "constraints.txt"
HEADER = """\
# Pins for every Ray node: the Docker image (cluster/Dockerfile, which KubeRay's pods run), the
# cluster launcher (cluster/aws.yaml setup_commands) and `make` (.venv) install pbrl_dist with
#   pip install -c cluster/constraints.txt ...
# so the driver and every worker run the same ray, torch, wandb, gymnasium, ale-py, numpy...
# Runtime closure of pbrl_dist (no dev/bench extras). Regenerate after changing dependencies:
#   make constraints      (= .venv/bin/python cluster/lock_constraints.py)
# torch stays CPU-only: install it first from https://download.pytorch.org/whl/cpu.
"""


def closure(root: str = "pbrl_dist") -> dict[str, Distribution]:
    """Installed distributions reachable from ``root``'s requirements, by canonical name."""
    seen: dict[str, tuple[Distribution, set[str]]] = {}

    def visit(name: str, extras: set[str]) -> None:
        key = canonicalize_name(name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            return  # an optional platform-specific requirement that does not apply here
        old = seen[key][1] if key in seen else None
        if old is not None and extras <= old:
            return
        active = (old or set()) | extras
        seen[key] = (dist, active)
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in sorted(active)] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                visit(req.name, set(req.extras))

    visit(root, set())
    return {k: d for k, (d, _) in seen.items() if k != canonicalize_name(root)}


def render() -> str:
    pins = sorted(
        (f"{d.metadata['Name']}=={d.version.split('+')[0]}" for d in closure().values()),
        key=str.lower,
    )
    return HEADER + "\n".join(pins) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({render().count('==')} pins)", file=sys.stderr)
