"""Deep RLHF (paper Sec. 2.2, 6.2; Figure 2): the loop, its config, trainers and rollouts.

``run`` is registered as ``method.algo: rlhf``; its schema is ``RLHFConfig``. See ``loop.py`` for the
order of the steps.
"""

from pbrl_dist.algos.registry import AlgoSpec, register_algo
from pbrl_dist.rlhf.a2c import A2CStats, A2CTrainer
from pbrl_dist.rlhf.config import MODES, RLHF_READS, RLHFConfig, couplings, reads, shard_checks
from pbrl_dist.rlhf.loop import RLHFLearner, run
from pbrl_dist.rlhf.reward_model import RewardModelTrainer, reward_model_step

register_algo(
    AlgoSpec(
        name="rlhf",
        run=run,
        schema=RLHFConfig,
        reads=reads,
        choices={"mode": MODES},
        # env shards always step on the rollout workers; only PBRL mode has the oracle role π̂*
        actor_work=lambda cfg: (True, cfg.mode == "pbrl"),
        checks=shard_checks,
        metrics=(
            "env_frames", "perf/env_frames", "perf/env_steps_per_s", "perf/oracle_env_frames",
            "rl/episode_return", "rl/best_episode_return", "rl/episodes", "rm/accuracy",
            "rm/return_corr", "rm/labels_used", "rm/epochs", "rm/bt_loss", "rm/absorbing_reward", "lower/policy_loss",
            "lower/value_loss", "lower/entropy", "upper/coef", "upper/score_loss", "penalty/value",
            "upper/score_grad_ratio", "penalty/p_hat", "penalty/p_hat_positive",
            "rm/penalty_grad_ratio", "rm/queries_skipped", "oracle/episode_return",
            "rm/eval_accuracy", "rm/eval_return_corr",
        ),
    )
)  # fmt: skip

__all__ = [
    "MODES",
    "RLHF_READS",
    "A2CStats",
    "A2CTrainer",
    "RLHFConfig",
    "RLHFLearner",
    "RewardModelTrainer",
    "couplings",
    "reward_model_step",
    "run",
]
