"""Deep RLHF (paper Sec. 2.2, 6.2; Figure 2): the loop, its config, trainers and rollouts.

``run`` is registered as ``method.algo: rlhf``; its schema is ``RLHFConfig``. See ``loop.py`` for the
order of the steps.
"""

from pbrl_dist.rlhf.a2c import A2CStats, A2CTrainer
from pbrl_dist.rlhf.config import MODES, RLHFConfig, couplings
from pbrl_dist.rlhf.loop import RLHFLearner, run
from pbrl_dist.rlhf.reward_model import RewardModelTrainer, reward_model_step

__all__ = [
    "MODES",
    "A2CStats",
    "A2CTrainer",
    "RLHFConfig",
    "RLHFLearner",
    "RewardModelTrainer",
    "couplings",
    "reward_model_step",
    "run",
]
