"""The user's journeys, driven through the CLI on a two-node loopback Ray cluster.

Every sweep file's smoke block runs through ``pbrl sweep --address <cluster>`` twice, on the local
backend and on the Ray backend with 2 rollout workers (and oracle actors), and both give the numbers
of ``pbrl run`` (the same rows in every trial's metrics.jsonl, timing columns aside). The search +
ASHA file runs with its scheduler: stopped trials are marked, never reported as final, and each
sampled setting is its own report row. The W&B journey: offline runs, one per trial, with ids that
differ between two launches of the same sweep.

The cluster (head 2 CPUs + worker node 2 CPUs, ``ray.cluster_utils.Cluster``) lives in a helper
process for the whole module; each ``pbrl sweep`` is a subprocess that joins it, as a user's would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "sweeps"
PBRL = [sys.executable, "-m", "pbrl_dist.cli"]

CLUSTER = r"""
import sys
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
ray.shutdown()
print("ADDRESS " + cluster.address, flush=True)
sys.stdin.read()  # until the test module closes our stdin
cluster.shutdown()
"""

# Per sweep file: overrides for every run (``pbrl run`` and both sweeps) and for the Ray backend.
SMALL_ACTORS = ["dist.cpus_per_trial=0.5", "dist.cpus_per_worker=0.25"]
TABULAR_RAY = ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=1"]
RLHF_RAY = ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=1"]
# One grid point per file keeps the suite short; every method of every file still runs. Two files
# replace a grid axis by a plain override (the loader's one rule for axes), so that rule runs through
# pbrl run and pbrl sweep on both backends too.
ONE = ["sweep.grid.problem.game=[0]"]
MATRIX: dict[str, tuple[list[str], list[str]]] = {
    "demo_fig1": (["method.lam=20.0"], TABULAR_RAY),
    "fig1_stackelberg": (ONE, TABULAR_RAY),
    "fig3_incentive": (
        ONE,
        ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=2"],
    ),
    "shaping_chain": ([], TABULAR_RAY),
    "rlhf_toy": (["problem.env_shards=2"], RLHF_RAY),
    "fig2_atari_rlhf": (["problem.env_shards=2", "sweep.grid.problem.game=[BeamRider]"], RLHF_RAY),
    "gym_cartpole": (["problem.env_shards=2"], RLHF_RAY),
    "minatar_rlhf": (
        ["problem.env_shards=2", "problem.env_id=MinAtar/SpaceInvaders-v1"],
        RLHF_RAY,
    ),
}


def test_the_matrix_covers_every_sweep_file() -> None:
    files = {p.stem for p in SWEEPS.glob("*.yaml")}
    assert files == {*MATRIX, "fig1_search"}, "add the new sweep file to the journey matrix"
    # sweeps/variants/ holds other method settings of a matrix file's problem: test_sweep_smoke.py.


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line.startswith("ADDRESS "), "the test cluster did not start"
    try:
        yield line.split()[1]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _env(wandb: str = "disabled") -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    env.pop("RAY_ADDRESS", None)
    if wandb:
        env["WANDB_MODE"] = wandb
    else:
        env.pop("WANDB_MODE", None)
    return env


def _pbrl(*args: str, wandb: str = "disabled") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*PBRL, *args], capture_output=True, text=True, timeout=600, env=_env(wandb), cwd=ROOT
    )
    return proc


def _rows(trial_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (trial_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _trials(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/config.yaml"))


@pytest.mark.parametrize("stem", sorted(MATRIX))
def test_sweep_file_on_both_backends_gives_the_numbers_of_pbrl_run(
    stem: str, cluster: str, tmp_path: Path
) -> None:
    common, ray_args = MATRIX[stem]
    path = str(SWEEPS / f"{stem}.yaml")
    ref, local, remote = tmp_path / "run", tmp_path / "sweep_local", tmp_path / "sweep_ray"
    assert main(["run", path, "--smoke", "--out", str(ref), *common]) == 0
    names = _trials(ref)
    assert names
    for name in names:  # what ran is what the name and the command line say
        cfg = yaml.safe_load((ref / name / "config.yaml").read_text())
        for ov in common:
            key, value = ov.split("=", 1)
            if not key.startswith("sweep."):
                node = cfg
                for part in key.split("."):
                    node = node[part]
                assert node == yaml.safe_load(value), (name, key)

    for out, extra in ((local, []), (remote, [*ray_args, *SMALL_ACTORS])):
        proc = _pbrl(
            "sweep", path, "--smoke", "--address", cluster, "--out", str(out), *common, *extra
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"{len(names)}/{len(names)} trials finished (0 errored)" in proc.stdout
        assert _trials(out) == names
        for name in names:
            assert _rows(out / name) == _rows(ref / name), (stem, out.name, name)
            res = json.loads((out / name / "result.json").read_text())
            assert res["status"] == "complete"

    # The Ray backend's actors were really used, and recorded through the runner contract.
    kinds = set()
    for name in names:
        for line in (remote / name / "tune_attempts.jsonl").read_text().splitlines():
            entry = json.loads(line)
            kinds |= {a["kind"] for a in entry.get("actors") or entry.get("actors_at_end") or []}
    assert kinds, f"{stem}: no actor recorded on the ray backend"
    rec = yaml.safe_load((remote / "sweep.yaml").read_text())
    assert rec["smoke"] is True and rec["launch_id"] and rec["versions"]["ray"] == "2.60.0"


def test_search_and_asha_report_right(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "search"
    proc = _pbrl(
        "sweep",
        str(SWEEPS / "fig1_search.yaml"),
        "--smoke",
        "--address",
        cluster,
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = _trials(out)
    assert len(trials) == 6
    # Progress lines name each sampled setting (six different names, not one name six times).
    shown = [x.split()[1] for x in proc.stdout.splitlines() if x.startswith("[") and "/6]" in x]
    assert len(set(shown)) == 6 and all("lam=" in s and "lr_x=" in s for s in shown)
    stopped = [t for t in trials if (out / t / "stopped.json").exists()]
    complete = [t for t in trials if (out / t / "result.json").exists()]
    assert stopped and complete and set(stopped).isdisjoint(complete)
    assert len(stopped) + len(complete) == 6
    assert (
        f"left out {len(stopped)} of 6 trials: {len(stopped)} stopped by the scheduler"
        in proc.stdout
    )
    summary = __import__("pandas").read_csv(out / "report" / "summary.csv")
    rows = summary[summary["metric"] == "upper/leader_return"]
    assert len(rows) == len(complete) and (rows["n"] == 1).all()  # each sample is its own row
    for t in stopped:  # a stopped trial really stopped early
        last = _rows(out / t)[-1]["iter"]
        assert last < 80
    # The search is seeded (sweep.search_seed): a second launch draws the same six settings, and
    # a different seed draws others.
    again, other = tmp_path / "again", tmp_path / "other"
    for dest, extra in ((again, []), (other, ["sweep.search_seed=1"])):
        proc = _pbrl(
            "sweep",
            str(SWEEPS / "fig1_search.yaml"),
            "--smoke",
            "--address",
            cluster,
            "--out",
            str(dest),
            "--no-report",
            *extra,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    strip = lambda names: sorted(n.rsplit("__", 1)[0] for n in names)  # noqa: E731 (less the trial id)
    assert strip(_trials(again)) == strip(trials)
    assert set(strip(_trials(other))).isdisjoint(strip(trials))


def test_wandb_runs_are_offline_one_per_trial_and_differ_between_launches(
    cluster: str, tmp_path: Path
) -> None:
    ids = []
    for launch in ("a", "b"):
        out = tmp_path / launch
        proc = _pbrl(
            "sweep",
            str(SWEEPS / "demo_fig1.yaml"),
            "--smoke",
            "--address",
            cluster,
            "--out",
            str(out),
            "sweep.grid.method.lam=[20.0]",
            wandb="",
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs = sorted(out.glob("*/wandb/offline-run-*/run-*.wandb"))
        assert len(runs) == len(_trials(out)) == 3
        ids.append({p.stem.removeprefix("run-") for p in runs})
    assert len(ids[0]) == 3 and ids[0].isdisjoint(ids[1])


def test_a_wrong_address_fails_fast_with_one_line(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    proc = _pbrl(
        "sweep",
        str(SWEEPS / "demo_fig1.yaml"),
        "--smoke",
        "--address",
        "127.0.0.1:1",
        "--out",
        str(tmp_path / "x"),
    )
    assert proc.returncode == 2 and time.perf_counter() - t0 < 30
    assert "--address 127.0.0.1:1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
