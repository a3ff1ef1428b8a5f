"""Actors only where they work: ``algos.registry.actor_counts``, the bundles a trial reserves
(``launch/specs.trial_bundles``), the one-line note before a launch, and the progress line's label."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrl_dist.algos.registry import actor_counts
from pbrl_dist.cli import main
from pbrl_dist.config.loader import load_sweep
from pbrl_dist.launch.specs import idle_actor_notes, trial_bundles

SWEEP = """\
name: actors
problem: {name: stackelberg, num_states: 4, num_leader_actions: 3, num_follower_actions: 3,
          sparsity: 0.5, gamma: 0.8, tau: 0.2}
method: {algo: pbrl, estimator: exact, oracle: exact, lam: 20.0, lr_x: 0.1, lr_y: 0.1,
         num_iters: 4, log_every: 2}
methods:
  pbrl_value: {penalty: value}
  indep_pg: {algo: indep_pg}
logging: {wandb: disabled, progress_every_s: 1000}
sweep: {seeds: [0]}
"""
RAY = ["dist.backend=ray", "dist.num_rollout_workers=3", "dist.num_oracles=2"]


def _trials(tmp_path: Path, *overrides: str) -> dict[str, object]:
    path = tmp_path / "actors.yaml"
    path.write_text(SWEEP)
    return {t.name.split("__")[0]: t for t in load_sweep(path, overrides=list(overrides)).trials}


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        # exact gradients: no rollout workers; PBRL's oracle still gets its 2 actors
        ("exact", {"pbrl_value": (0, 2), "indep_pg": (0, 0)}),
        # Monte Carlo: 3 rollout workers each; indep_pg has no oracle
        ("mc", {"pbrl_value": (3, 2), "indep_pg": (3, 0)}),
    ],
)
def test_actor_counts_and_bundles_follow_the_work_each_method_gives(
    tmp_path: Path, estimator: str, expected: dict[str, tuple[int, int]]
) -> None:
    trials = _trials(tmp_path, *RAY, f"method.estimator={estimator}", "dist.cpus_per_worker=0.5")
    for name, (w, o) in expected.items():
        cfg = trials[name].cfg  # type: ignore[attr-defined]
        assert actor_counts(cfg.method, cfg.dist) == (w, o), name
        b = trial_bundles(cfg)
        assert len(b.bundles) == 1 + w + o, name
        assert b.total_cpus == pytest.approx(1.0 + 0.5 * (w + o)), name


def test_actor_counts_are_zero_on_the_local_backend_and_zero_workers_mean_one(
    tmp_path: Path,
) -> None:
    local = _trials(tmp_path, "method.estimator=mc")["pbrl_value"].cfg  # type: ignore[attr-defined]
    assert actor_counts(local.method, local.dist) == (0, 0)
    assert len(trial_bundles(local).bundles) == 1
    zero = _trials(
        tmp_path, "method.estimator=mc", "dist.backend=ray", "dist.num_rollout_workers=0"
    )
    cfg = zero["pbrl_value"].cfg  # type: ignore[attr-defined]
    assert actor_counts(cfg.method, cfg.dist) == (1, 0)


def test_rlhf_actor_counts_oracles_only_in_pbrl_mode() -> None:
    from pbrl_dist.config.schema import DistConfig
    from pbrl_dist.rlhf import RLHFConfig

    dist = DistConfig(backend="ray", num_rollout_workers=2, num_oracles=1)
    assert actor_counts(RLHFConfig(mode="pbrl"), dist) == (2, 1)
    assert actor_counts(RLHFConfig(mode="drlhf"), dist) == (2, 0)
    assert actor_counts(RLHFConfig(mode="a2c_oracle"), dist) == (2, 0)


def test_idle_actor_notes_say_how_many_trials_start_none(tmp_path: Path) -> None:
    trials = list(_trials(tmp_path, *RAY).values())
    notes = idle_actor_notes(trials)  # type: ignore[arg-type]
    assert notes == [
        "dist.num_rollout_workers=3: no work in 2 of 2 trials (exact gradients, no Monte Carlo "
        "rollouts, e.g. pbrl_value__s0): none started, no CPUs reserved",
        "dist.num_oracles=2: no work in 1 of 2 trials (no best-response oracle, e.g. indep_pg__s0): "
        "none started, no CPUs reserved",
    ]
    assert idle_actor_notes(list(_trials(tmp_path, "method.estimator=mc").values())) == []  # type: ignore[arg-type]


def test_show_prints_the_idle_actor_note_once_before_the_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "actors.yaml"
    path.write_text(SWEEP)
    assert main(["show", str(path), *RAY]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if "no work in" in ln] == [
        "# dist.num_rollout_workers=3: no work in 2 of 2 trials (exact gradients, no Monte Carlo "
        "rollouts, e.g. pbrl_value__s0): none started, no CPUs reserved",
        "# dist.num_oracles=2: no work in 1 of 2 trials (no best-response oracle, e.g. indep_pg__s0): "
        "none started, no CPUs reserved",
    ]
