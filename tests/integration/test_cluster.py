"""A 2-node Ray cluster (``ray.cluster_utils.Cluster``): a sweep whose trials span both nodes.

The cluster runs in a subprocess (its nodes must be added from a main thread, and the test process may
already hold a Ray runtime). Head: 1 CPU; worker node: 2 CPUs. Each trial uses the ray executor with one
rollout worker and ``placement_strategy=SPREAD``, so its learner and its actor land on different nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbrl_dist.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

SCRIPT = r"""
import json, sys
import ray
from ray.cluster_utils import Cluster

sweep, out, bad_out = sys.argv[1:4]
overrides = sys.argv[4:]
cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
from pbrl_dist.cli import main

rc = main(["sweep", sweep, "--out", out, "--address", cluster.address, *overrides])
# 1 learner + 3 workers = 4 CPUs > the cluster's 3: refused before any trial starts.
rc_big = main(["sweep", sweep, "--out", bad_out, "--address", cluster.address, *overrides,
               "dist.num_rollout_workers=3"])
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print("RESULT " + json.dumps({"rc": rc, "rc_big": rc_big, "nodes": nodes}), flush=True)
ray.shutdown()
cluster.shutdown()
"""


def test_sweep_on_a_two_node_cluster(tiny_sweep: Path, tmp_path: Path) -> None:
    out, bad_out, ref = tmp_path / "tune", tmp_path / "big", tmp_path / "local"
    common = [
        "sweep.seeds=[0,1]",
        "sweep.trials=seed",  # one Tune trial per seed: two placement groups, spread over the nodes
        "method.estimator=mc",
        "method.num_iters=12",
        "method.log_every=4",
    ]
    cluster_args = [
        "dist.backend=ray",
        "dist.num_rollout_workers=1",
        "dist.placement_strategy=SPREAD",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tiny_sweep),
            str(out),
            str(bad_out),
            *common,
            *cluster_args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT ") :])
    assert res["rc"] == 0 and len(res["nodes"]) == 2
    assert res["rc_big"] == 2 and not bad_out.exists()
    assert "needs 4 CPUs" in proc.stderr and "the Ray cluster has 3 CPUs" in proc.stderr

    assert main(["run", str(tiny_sweep), "--out", str(ref), *common]) == 0
    seen = set()
    for name in ("pbrl_value__s0", "pbrl_value__s1"):
        (attempt,) = [
            json.loads(x) for x in (out / name / "tune_attempts.jsonl").read_text().splitlines()
        ]
        (actor,) = attempt["actors"]
        assert attempt["node_id"] != actor["node_id"], "SPREAD put learner and worker on one node"
        seen |= {attempt["node_id"], actor["node_id"]}
        assert (out / name / "metrics.jsonl").read_text() == (
            ref / name / "metrics.jsonl"
        ).read_text()
    assert seen == set(res["nodes"])
