"""Fake results folders for the report tests: the files ``pbrl run``/``pbrl sweep`` write, by hand.

``Fake.trial`` writes one trial folder (config.yaml, metrics.jsonl, and result.json or stopped.json
by its status); ``Fake.record`` writes the folder's marker and ``sweep.yaml``. Configs come from a
real (tiny) sweep file, so ``--confirm-seeds`` can rebuild and validate them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbrl_dist.config.loader import TrialSpec, load_sweep

TINY = """\
name: tiny
problem:
  name: stackelberg
  num_states: 4
  num_leader_actions: 3
  num_follower_actions: 3
  sparsity: 0.5
  gamma: 0.8
  tau: 0.2
method:
  estimator: exact
  oracle: exact
  num_iters: 40
  log_every: 10
methods:
  pbrl_value:
    algo: pbrl
    penalty: value
    lam: 20.0
    lr_x: 0.1
    lr_y: 0.1
  indep_pg:
    algo: indep_pg
    lr_x: 0.5
    lr_y: 0.5
logging:
  wandb: disabled
sweep:
  seeds: [0]
"""


class Fake:
    """Writes a fake results folder under ``out``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "out"
        self.out.mkdir()

    def specs(self, overrides: Sequence[str] = ()) -> list[TrialSpec]:
        """The trials of the tiny two-method sweep with ``overrides`` (e.g. a grid)."""
        path = self.root / "tiny.yaml"
        path.write_text(TINY, encoding="utf-8")
        return load_sweep(path, overrides=list(overrides)).trials

    def record(self, block: dict[str, Any], trials: Sequence[str] = ()) -> None:
        """Write the marker and ``sweep.yaml`` (its ``sweep:`` block is ``block``)."""
        (self.out / ".pbrl_results").write_text("", encoding="utf-8")
        rec = {"name": "tiny", "source": "tiny.yaml", "sweep": block, "trials": list(trials)}
        (self.out / "sweep.yaml").write_text(yaml.safe_dump(rec, sort_keys=False), encoding="utf-8")

    def trial(
        self,
        name: str,
        config: dict[str, Any],
        rows: Sequence[dict[str, Any]],
        status: str = "complete",
    ) -> Path:
        """Write one trial; ``status`` complete | stopped | incomplete | legacy (result.json, no status)."""
        d = self.out / name
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
        final = dict(rows[-1]) if rows else {}
        if status in ("complete", "legacy"):
            res: dict[str, Any] = {"trial": name, "wall_s": 1.5, "final": final}
            if status == "complete":
                res["status"] = "complete"
            (d / "result.json").write_text(json.dumps(res), encoding="utf-8")
        elif status == "stopped":
            stop = {"status": "stopped", "iter": rows[-1]["iter"], "by": "asha"}
            (d / "stopped.json").write_text(json.dumps(stop), encoding="utf-8")
        return d


def curve(value: float, last: int, *, every: int = 10, gap: float = 0.01) -> list[dict[str, Any]]:
    """Rows at iterations 0, every, ..., last with a constant leader return and follower gap."""
    return [
        {"iter": k, "upper/leader_return": value, "lower/gap": gap}
        for k in range(0, last + 1, every)
    ]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    """A fresh fake results folder ``tmp_path/out``."""
    return Fake(tmp_path)


@pytest.fixture
def rows_of() -> Any:
    """``curve`` as a fixture (test modules do not import conftest)."""
    return curve


@pytest.fixture
def fake_at() -> type[Fake]:
    """``Fake`` itself, for a test that needs several results folders (``Fake(root)`` each)."""
    return Fake
