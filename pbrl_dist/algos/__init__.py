"""Outer loops, one readable file each: PBRL (Algorithm 1), independent PG, incentive design, RLHF.

Each loop registers one ``AlgoSpec`` (``algos/registry.py``) in its own module: run function, method
schema, the fields it reads and their allowed values. The mappings below are read-only views of it:

- ``ALGOS``: ``method.algo`` → the loop's ``run(problem, cfg, *, seed, sink, runner, ckpt)``;
- ``METHOD_SCHEMAS``: ``method.algo`` → the dataclass that types and closes the ``method:`` block;
- ``ALGO_SPECS``: ``method.algo`` → its ``AlgoSpec``.
"""

from __future__ import annotations

from typing import Any

from pbrl_dist.algos import incentive, indep_pg, pbrl, rlhf  # noqa: F401  (register)
from pbrl_dist.algos.registry import AlgoSpec, AlgoView, algo_specs, register_algo

# --- Deep RLHF (A2C oracle / DRLHF / PBRL) brings its own typed config. ---------------------------
# The table of which RLHFConfig fields each mode reads lives here while algos/rlhf.py is being split;
# it belongs next to RLHFConfig (a ``reads()`` hook) once that lands.
_RLHF_COMMON = frozenset(
    {
        "mode", "total_env_steps", "lr", "lr_by_game", "rms_alpha", "rms_eps", "ent_coef", "vf_coef",
        "n_steps", "max_grad_norm", "ac_hidden", "compute_dtype", "log_every_steps", "return_window",
    }
)  # fmt: skip
_RLHF_REWARD_MODEL = frozenset(
    {
        "continuing", "rm_lr", "rm_batch_size", "rm_dropout", "rm_hidden", "rm_every",
        "rm_epoch_batches", "reward_std", "initial_pairs", "initial_rollout_steps", "warmup_epochs",
        "pairs_per_epoch", "buffer_size", "segment_length", "pair_window_steps", "teacher_mode",
        "teacher_error_rate",
    }
)  # fmt: skip
_RLHF_PBRL = frozenset(
    {
        "use_upper_in_policy", "use_penalty_in_reward", "upper_coef", "upper_coef_decay",
        "upper_coef_decay_every", "oracle_steps", "oracle_warm_start",
    }
)  # fmt: skip
RLHF_READS: dict[str, frozenset[str]] = {
    "a2c_oracle": _RLHF_COMMON | {"clip_true_reward"},
    "drlhf": _RLHF_COMMON | _RLHF_REWARD_MODEL,
    "pbrl": _RLHF_COMMON | _RLHF_REWARD_MODEL | _RLHF_PBRL,
}
"""``method.mode`` → the ``RLHFConfig`` fields that mode reads."""


def _rlhf_reads(cfg: Any) -> frozenset[str]:
    return RLHF_READS.get(cfg.mode, RLHF_READS["pbrl"])


register_algo(
    AlgoSpec(
        name="rlhf",
        run=rlhf.run,
        schema=rlhf.RLHFConfig,
        reads=_rlhf_reads,
        choices={"mode": rlhf.MODES},
        metrics=(
            "env_frames", "perf/env_frames", "perf/env_steps_per_s", "perf/oracle_env_frames",
            "rl/episode_return", "rl/best_episode_return", "rl/episodes", "rm/accuracy",
            "rm/return_corr", "rm/labels_used", "rm/epochs", "rm/bt_loss", "lower/policy_loss",
            "lower/value_loss", "lower/entropy", "upper/coef", "upper/score_loss", "penalty/value",
        ),
    )
)  # fmt: skip

ALGO_SPECS: AlgoView = AlgoView(lambda s: s)
ALGOS: AlgoView = AlgoView(lambda s: s.run)
METHOD_SCHEMAS: AlgoView = AlgoView(lambda s: s.schema)

__all__ = ["ALGOS", "ALGO_SPECS", "METHOD_SCHEMAS", "AlgoSpec", "algo_specs", "register_algo"]
