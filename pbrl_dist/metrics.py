"""Metric names and sinks.

Every metric key used anywhere in pbrl_dist is listed in ``METRICS`` with its meaning (a problem
registered from outside documents its own in ``ProblemSpec.metrics``; ``catalog.describe_metric``
reads both). Keys are namespaced by level: ``upper/`` (leader / designer / reward model objective), ``lower/`` (follower / players),
``penalty/`` (penalty estimates), ``perf/`` (throughput), ``rm/`` (reward model).

A leaf below every loop: it imports only ``cadence`` and ``safe_io`` (DESIGN.md §2).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pbrl_dist.cadence import Timer
from pbrl_dist.safe_io import open_append

METRICS: dict[str, str] = {
    "iter": "outer iteration k of Algorithm 1 (0-based; logged after the step)",
    "upper/leader_return": "Σ_s ρ(s)·V_l^{π_x,σ_y}(s), leader unregularized, exact",
    "upper/objective": "f(x, π_y) + λ·(penalty estimate), the penalized objective F_λ",
    "lower/gap": "Σ_s ρ(s)·(V*_f(s) − V_f^{π_x,σ_y}(s)), follower entropy-regularized, exact",
    "penalty/value": "plug-in estimate V_x(π̂) − V_x(π_y) of the value penalty",
    "penalty/bellman": "plug-in estimate of the Bellman penalty g(x, π_y) = τ·Σρ·KL(π_y ‖ π*_x)",
    "penalty/ni": "plug-in estimate of the Nikaido–Isoda function ψ",
    "upper/designer_return": "designer return under (P^d, r^d) and the players' joint policy, exact",
    "lower/ni_gap": "Nikaido–Isoda function ψ(x, π) of the players' policies, exact",
    "lower/oracle_err": "‖π̂ − π*_x‖_∞ of the oracle output (exact mode only)",
    "perf/iter_per_s": "outer iterations per second of wall time",
    "perf/env_steps_per_s": "environment steps per second",
    "rm/accuracy": "reward-model accuracy on held-out preference pairs (RLHF: fresh non-tie pairs, scored before training on them)",
}

# Deep RLHF (rlhf/loop.py): "iter" there counts A2C updates of the agent.
METRICS.update(
    {
        "env_frames": "x axis of RLHF rows: agent env steps × frame skip (Atari) or × 1 (toy env)",
        "perf/env_frames": "same as env_frames: agent env steps × frames per step (oracle excluded)",
        "perf/oracle_env_frames": "env frames spent by PBRL's oracle π̂* (its own envs), not in env_frames",
        "rl/episode_return": "TRUE game return, mean of the agent's last method.return_window finished episodes",
        "rl/best_episode_return": "TRUE game return of the agent's best finished episode so far",
        "rl/episodes": "number of the agent's finished episodes (games) so far",
        "rm/return_corr": "Pearson correlation of Σ_t r_φ vs true Σ_t r over fresh segments, before training on them",
        "rm/labels_used": "preference labels requested from the synthetic teacher so far (initial + new)",
        "rm/epochs": "reward-learning epochs so far (warm-up included)",
        "rm/bt_loss": "mean Bradley–Terry loss over the minibatches of the last reward epoch (dropout on)",
        "rm/absorbing_reward": "r̃_φ(absorbing), normalised like the agent's reward (method.absorbing); the agent counts γ/(1−γ) of it after each game end",
        "lower/policy_loss": "A2C policy loss −mean(Â·log π(a|s)) of the last agent update",
        "lower/value_loss": "A2C value loss mean((R − V)²) of the last agent update",
        "lower/entropy": "mean policy entropy in the last agent update",
        "upper/coef": "PBRL upper-level coefficient c = 1/λ = c0·decay^⌊iter/M⌋ (M: method.upper_coef_decay_every, or its _fraction of the trial's updates)",
        "upper/score_loss": "c·(segment score-function surrogate), mean over the agent updates that applied it since the last row (absent if none did)",
        "upper/score_grad_ratio": "‖∇θ c·score term‖ / ‖∇θ A2C loss‖, mean over the updates that applied the score term since the last row",
        "penalty/p_hat": "PBRL: p̂ = V_φ(π̂*) − V_φ(π_θ) on the oracle's and the agent's windows, measured before each reward epoch (dropout off), mean since the last row",
        "penalty/p_hat_positive": "PBRL: fraction of the run's reward epochs so far with p̂ > 0 before the epoch (the penalty acts only then)",
        "rm/penalty_grad_ratio": "PBRL: ‖∇φ λ·(1−γ)·max(p̂, 0)‖ / ‖∇φ BT loss‖ on the first minibatch of each reward epoch, mean since the last row",
        "rm/eval_accuracy": "reward-model accuracy on the common evaluation set (method.rm_eval_pairs: fixed reference policies and env seed, true-return labels; the same pairs for every method and seed)",
        "rm/eval_return_corr": "Pearson correlation of Σ_t r_φ vs true Σ_t r on the common evaluation set's segments",
        "rm/queries_skipped": "queries the skip teacher left unanswered so far (method.teacher_skip > 0 only)",
        "oracle/episode_return": "PBRL: TRUE game return of the oracle π̂*, mean of its last method.return_window finished episodes",
    }
)


class MetricSink(Protocol):
    """Something that receives metric rows."""

    def log(self, row: Mapping[str, Any]) -> None:
        """Receive one row (must contain ``iter``)."""
        ...


class JsonlSink:
    """Append rows to a JSON-lines file (flushed every row, so a crash loses nothing logged)."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` for appending."""
        self.path = path
        self._fh = open_append(path)  # O_NOFOLLOW: never through a planted link

    def log(self, row: Mapping[str, Any]) -> None:
        """Write one JSON line (non-finite floats as the JSON tokens ``NaN``, ``Infinity``,
        ``-Infinity``, which Python's ``json`` and pandas read back as floats)."""
        self._fh.write(dumps_row(row) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class ListSink:
    """Keep rows in memory (tests, summaries)."""

    def __init__(self) -> None:
        """Start empty."""
        self.rows: list[dict[str, Any]] = []

    def log(self, row: Mapping[str, Any]) -> None:
        """Store a copy of ``row``."""
        self.rows.append(dict(row))


class FanOut:
    """Forward every row to several sinks."""

    def __init__(self, *sinks: MetricSink) -> None:
        """Wrap ``sinks``."""
        self.sinks = sinks

    def log(self, row: Mapping[str, Any]) -> None:
        """Forward ``row``."""
        for s in self.sinks:
            s.log(row)


class ProgressSink:
    """Print a one-line progress report at most every ``every_s`` seconds."""

    def __init__(
        self,
        label: str,
        total: int,
        every_s: float = 5.0,
        keys: tuple[str, ...] = (),
        actors: str = "",
    ) -> None:
        """Report progress of ``total`` iterations for the trial ``label`` (``actors``: where it runs,
        e.g. ``ray 4w+1o`` for 4 rollout workers and 1 oracle actor)."""
        self.label, self.total, self.every_s, self.keys = label, total, every_s, keys
        self.where = f" [{actors}]" if actors else ""
        self._timer = Timer(every_s)

    def log(self, row: Mapping[str, Any]) -> None:
        """Print when enough time has passed."""
        if not self._timer.ready():
            return
        it = int(row.get("iter", 0))  # every loop logs the iterations done (the last row: total)
        shown = " ".join(f"{k.split('/')[-1]}={_fmt(row[k])}" for k in self.keys if k in row)
        print(
            f"    {self.label}{self.where}: {it}/{self.total} it ({self._timer.elapsed():.0f}s) {shown}",
            flush=True,
        )


def scalar_metrics(row: Mapping[str, Any], *, finite_only: bool) -> dict[str, Any]:
    """Flatten a metric row for dashboards: per-game lists → their mean, bools → 0/1 ints.

    With ``finite_only`` (W&B) non-finite numbers are dropped; without it (Tune) they are kept, and the
    strings JSON writes for them ("nan", "inf") are parsed back. Other strings are not metrics.
    """
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, list | tuple):
            nums = [float(x) for x in v if isinstance(x, int | float)]
            if nums:
                out[k] = sum(nums) / len(nums)
        elif isinstance(v, bool):
            if finite_only:
                out[k] = int(v)
        elif isinstance(v, int | float):
            if not finite_only or math.isfinite(float(v)):
                out[k] = v
        elif isinstance(v, str) and not finite_only:
            with contextlib.suppress(ValueError):
                out[k] = float(v)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        v = sum(v) / max(len(v), 1)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def dumps_row(row: Mapping[str, Any]) -> str:
    """One metrics row as a JSON line; NaN and ±inf stay numbers (``NaN``, ``Infinity``)."""
    return json.dumps(_jsonable(row), allow_nan=True)


NON_FINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
"""The strings older pbrl wrote for non-finite floats (``str(float)``), read back as floats."""


def as_number(v: Any) -> Any:
    """``v`` with the strings older pbrl wrote for NaN/±inf turned back into floats (lists too)."""
    if isinstance(v, str) and v.strip().lower() in NON_FINITE_TEXT:
        return NON_FINITE_TEXT[v.strip().lower()]
    if isinstance(v, list):
        return [as_number(x) for x in v]
    return v


def non_finite(row: Mapping[str, Any]) -> str | None:
    """The first metric of ``row`` that is NaN or ±inf (a list counts if any element is), else None.

    Bools and integers are always finite; the strings older pbrl wrote ("nan", "inf") count too.
    """
    for k, v in row.items():
        vals = v if isinstance(v, list | tuple) else [v]
        for x in vals:
            x = as_number(x)
            if isinstance(x, float) and not math.isfinite(x):
                return str(k)
    return None


class Diverged(Exception):
    """A trial's metrics went NaN or ±inf: it ends as *diverged* (a final state, never *complete*)."""

    def __init__(self, metric: str, iteration: Any, row: Mapping[str, Any]) -> None:
        """Remember which metric went non-finite, at which iteration, and the whole row."""
        self.metric, self.iter, self.row = metric, iteration, dict(row)
        super().__init__(f"diverged: {metric} = {row.get(metric)} at iteration {iteration}")


class DivergenceGuard:
    """Forward every row to ``inner``, then raise ``Diverged`` if the row holds a NaN or ±inf.

    The row is written everywhere first (metrics.jsonl keeps it, as numbers), so the place where the
    trial diverged is on record; the loop stops there.
    """

    def __init__(self, inner: MetricSink) -> None:
        """Wrap ``inner`` (the trial's fan-out of sinks)."""
        self.inner = inner

    def log(self, row: Mapping[str, Any]) -> None:
        """Forward ``row``; raise ``Diverged`` when one of its metrics is not finite."""
        self.inner.log(row)
        bad = non_finite(row)
        if bad is not None:
            raise Diverged(bad, row.get("iter"), row)
