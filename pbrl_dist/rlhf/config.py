"""The RLHF loop's config (``method.*`` of ``algo: rlhf``) and the switches derived from it.

Hyperparameters: MATH.md §7.2 (K117 numbers where the paper gives them, else PROPOSED defaults).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pbrl_dist.core.preference import TEACHER_MODES
from pbrl_dist.nets import COMPUTE_DTYPES

MODES = ("a2c_oracle", "drlhf", "pbrl")
UPPER_COEF_DECAY_EVERY = 100_000  # the default decay period, in A2C updates (PROPOSAL)


@dataclass
class RLHFConfig:
    """Hyperparameters of the RLHF loop (MATH.md §7.2; K117 numbers, else PROPOSED defaults).

    Attributes:
        name: the method's label in results and figures.
        algo: ``rlhf`` (this loop).
        mode: ``a2c_oracle``, ``drlhf`` or ``pbrl``.
        use_upper_in_policy: PBRL: add c·∇_θ f (segment score function) to the policy step.
        use_penalty_in_reward: PBRL: add λ·∇_φ p̂ (value penalty, oracle π̂*) to the reward step.
        total_env_steps: agent env steps in all (PROPOSAL 10M = 40M Atari frames); the initial
            pair-collection rollout counts towards it.
        lr: A2C learning rate (RMSprop; PROPOSAL 7e-4).
        lr_by_game: per-game A2C learning rates that replace ``lr`` (PROPOSAL {BeamRider: 3e-4}); keys
            match case- and underscore-insensitively ("BeamRider" = "beam_rider").
        rms_alpha: RMSprop smoothing constant.
        rms_eps: RMSprop ε.
        ent_coef: entropy coefficient (PROPOSAL 0.01).
        vf_coef: value-loss coefficient (0.5).
        n_steps: A2C rollout length per env per update (5; batch = 5·num_envs).
        max_grad_norm: gradient-norm clip of the A2C steps (0.5).
        clip_true_reward: a2c_oracle trains on sign(r) instead of r (standard for Atari A2C).
        ac_hidden: actor-critic trunk widths (MLP nets only; the Atari net is fixed).
        ac_separate_trunks: MLP nets: the value head gets its own trunk of ``ac_hidden`` widths
            (Stable-Baselines3's ``MlpPolicy``; default: one shared trunk).
        normalize_obs: the actor-critic sees observations normalised by running statistics, clipped
            to ±10 (rl-zoo's ``normalize: true`` for A2C, Stable-Baselines3's ``VecNormalize``);
            every mode, agent and oracle (``nets.ObsNormalized``; not for Atari frames).
        normalize_reward: ``a2c_oracle``: the true reward is divided by the running std of each env's
            discounted return and clipped to ±10 (``VecNormalize``'s reward scaling; with
            ``clip_true_reward`` false). The RLHF modes already normalise r̃_φ (``reward_std``).
        continuing: A2C on a learned reward (the agent in drlhf/pbrl, the oracle) bootstraps across
            episode ends, as in a continuing task. BT preferences fix r_φ only up to an additive
            constant, and with episode ends that constant is not harmless: a negative offset pays the
            agent to end episodes early, a positive one to drag them out. Treating episodes as one
            continuing stream makes every policy's value shift by the same c/(1 − γ), so the policy
            step is invariant to the constant, but it also removes what losing costs (off by
            default; it halved DRLHF on MinAtar Breakout in a seed-0 probe, RESULTS.md; see
            ``absorbing``). ``a2c_oracle`` on the true reward always stops at episode ends.
        absorbing: an episode end leads to an absorbing state whose reward r_φ(absorbing) is learned
            from the preferences (Kostrikov et al. 2019): segments may contain an episode end
            (padded with absorbing steps, true reward 0), and the A2C steps on r̃_φ count
            γ/(1 − γ)·r̃_φ(absorbing) after every end. Without it an end is worth 0 of the zero-mean
            r̃_φ, which can pay the agent to end games early, and segments cut inside games never
            show the teacher a game that ended early (MinAtar Breakout: RESULTS.md). Not with
            ``continuing``. An "end" is every step the env reports done, as the A2C step already
            treats it: terminations, but also time-limit truncations and, on Atari with episodic
            lives, a lost life; there the padding is the agent's MDP, not the game's.
        reuse_acting_graph: local backend only: the env shards act with the learner's own nets (the
            agent's, and the oracle's) with autograd on, and the A2C step differentiates those acting
            outputs instead of running the net again on the whole fragment (exact: the weights do not
            change within a fragment; the last bits differ from the batched forward pass, so a run with
            it is not bitwise one without, and it is refused on the Ray backend).
        compute_dtype: ``float32``, or ``bfloat16`` to run the actor-critic and reward model (acting,
            learning, reward labelling) under autocast: parameters, gradients and optimizer state
            stay float32. About 1.6× faster network steps on a CPU with AVX512-BF16
            (BENCHMARKS.md); results differ from float32 runs.
        rm_lr: reward-model learning rate (Adam; PROPOSAL 2e-4).
        rm_batch_size: pairs per reward-model minibatch (PROPOSAL 32).
        rm_dropout: dropout between the reward model's FC layers (PROPOSAL 0.5).
        rm_hidden: reward-model hidden widths (MLP nets only).
        rm_every: A2C updates between reward-learning epochs (PROPOSAL 250; the paper's n is unknown).
        rm_epoch_batches: minibatches per reward epoch; 0 = one full pass over the buffer.
        rm_eval_pairs: when > 0, r_φ is also scored in every row on this many segment pairs of a
            common evaluation set (``rlhf/evalset.py``: fixed reference policies, a fixed env seed,
            true-return labels), the same for every method and seed: ``rm/eval_accuracy``,
            ``rm/eval_return_corr``. Held in memory: 2·pairs·segment_length observations.
        reward_std: r̃_φ is normalised to zero mean and this std before A2C (Christiano: 0.05).
        initial_pairs: pairs labelled before training (K117: 576).
        initial_rollout_steps: steps per env of the initial policy to cut them from.
        warmup_epochs: reward-model epochs on the initial pairs (K117: 500).
        pairs_per_epoch: new pairs per reward-learning epoch (K117: 16).
        buffer_size: only the last this many pairs are kept (K117: 3000).
        segment_length: H, steps per segment (PROPOSAL 25).
        pair_window_steps: new pairs are cut from the agent's last this many steps per env.
        teacher_mode: ``deterministic`` (paper: prefer the higher true return) or ``bt``
            (B-Pref's *stochastic* teacher: segment 1 preferred with probability
            sigmoid(β·(R¹ − R²))).
        teacher_beta: the ``bt`` teacher's rationality β > 0 (B-Pref: 1; larger is more rational).
        teacher_error_rate: probability that the teacher flips a label (B-Pref's *mistake* ε: 0.1).
        teacher_gamma: myopic discount γ ∈ (0, 1]: the teacher compares Σ_t γ^(H−1−t)·r_t, the end
            of a segment weighing most (B-Pref's *myopic* teacher: 0.9; 1 = not myopic).
        teacher_skip: ε_skip ≥ 0: queries whose two segments both have a true return ≤ ε_skip·m
            go unanswered, m = the mean true return of the queried segments (B-Pref's *skip*: 0.1;
            counted in ``rm/queries_skipped``; ``rm/labels_used`` counts answered ones).
        teacher_equal: ε_equal ≥ 0: pairs whose true returns differ by < ε_equal·m are labelled ½
            (B-Pref's *equal* teacher: 0.1). Each teacher knob is a sweep axis
            (``core.preference.SyntheticTeacher``); B-Pref's six teachers are in docs/RLHF.md.
        upper_coef: c0, initial upper-level coefficient c = 1/λ (PROPOSAL 1.0).
        upper_coef_decay: c is multiplied by this every ``upper_coef_decay_every`` updates (PROPOSAL 0.5).
        upper_coef_decay_every: A2C updates between decays (PROPOSAL 1e5).
        upper_coef_decay_every_fraction: when > 0, the decay period as a fraction of the trial's A2C
            updates instead: M = max(1, round(f·num_updates)). The paper's schedule (1e5 updates in
            a 40M-frame run of ≈ 1.25e5 updates) is f = 0.8, and it then acts the same way in a
            300k-step trial, where 1e5 updates never come. Not with ``upper_coef_decay_every``.
        oracle_steps: inner A2C steps of the oracle π̂* per agent update (PBRL with the penalty).
        oracle_every: the oracle takes its ``oracle_steps`` every this many agent updates (1: every
            update, Algorithm 1). r_φ moves only every ``rm_every`` updates, so a slower oracle still
            tracks argmax V_φ; 2 halves the oracle's env steps and updates (BENCHMARKS.md, RESULTS.md).
        oracle_warm_start: π̂* continues from its own previous parameters (True) or restarts from
            the agent's current parameters every iteration (False).
        oracle_lr: π̂*'s A2C learning rate (0: the agent's): a best response may be solved faster
            than the agent learns.
        penalty_window_steps: p̂ and the penalty read the last this many steps (per env) of the
            oracle's and the agent's rollouts (0: ``pair_window_steps``); more steps, less noise in p̂,
            older samples.
        penalty_batch: when > 0, each reward-model step's penalty gradient uses this many samples
            drawn from each window instead of the whole windows, and the clamp max(p̂, 0) is decided
            once per reward epoch by p̂ on the whole windows (``RewardModelTrainer.penalty_fn``): a
            long ``penalty_window_steps`` then costs one no-grad pass per epoch, not a pass per step.
        oracle_resolve_steps: when > 0, before each reward epoch π̂* restarts from the agent's
            current parameters and takes this many A2C steps on r̃_φ (a look-ahead best response,
            re-solved at every reward update; its fragments refill the oracle's window, on which p̂
            is measured). Costs this many oracle fragments per ``rm_every`` updates.
        log_every_steps: a metrics row every this many agent env steps (and at the end).
        return_window: ``rl/episode_return`` is the mean of the last this many finished episodes.
    """

    name: str = "pbrl"
    algo: str = "rlhf"
    mode: str = "pbrl"
    use_upper_in_policy: bool = True
    use_penalty_in_reward: bool = True
    total_env_steps: int = 10_000_000
    # --- A2C ---
    lr: float = 7e-4
    lr_by_game: dict[str, float] = field(default_factory=dict)
    rms_alpha: float = 0.99
    rms_eps: float = 1e-5
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    n_steps: int = 5
    max_grad_norm: float = 0.5
    clip_true_reward: bool = True
    ac_hidden: list[int] = field(default_factory=lambda: [64, 64])
    ac_separate_trunks: bool = False
    normalize_obs: bool = False
    normalize_reward: bool = False
    continuing: bool = False
    absorbing: bool = False
    reuse_acting_graph: bool = False
    compute_dtype: str = "float32"
    # --- reward model ---
    rm_lr: float = 2e-4
    rm_batch_size: int = 32
    rm_dropout: float = 0.5
    rm_hidden: list[int] = field(default_factory=lambda: [64, 64])
    rm_every: int = 250
    rm_epoch_batches: int = 0
    rm_eval_pairs: int = 0
    reward_std: float = 0.05
    # --- preference schedule ---
    initial_pairs: int = 576
    initial_rollout_steps: int = 200
    warmup_epochs: int = 500
    pairs_per_epoch: int = 16
    buffer_size: int = 3000
    segment_length: int = 25
    pair_window_steps: int = 50
    teacher_mode: str = "deterministic"
    teacher_beta: float = 1.0
    teacher_error_rate: float = 0.0
    teacher_gamma: float = 1.0
    teacher_skip: float = 0.0
    teacher_equal: float = 0.0
    # --- PBRL coupling ---
    upper_coef: float = 1.0
    upper_coef_decay: float = 0.5
    upper_coef_decay_every: int = UPPER_COEF_DECAY_EVERY
    upper_coef_decay_every_fraction: float = 0.0
    oracle_steps: int = 1
    oracle_every: int = 1
    oracle_warm_start: bool = True
    oracle_resolve_steps: int = 0
    oracle_lr: float = 0.0
    penalty_window_steps: int = 0
    penalty_batch: int = 0
    # --- logging / evaluation ---
    log_every_steps: int = 100_000
    return_window: int = 100

    def init_steps(self, num_envs: int) -> int:
        """Return the agent env steps of the initial pair-collection rollout (0 for ``a2c_oracle``)."""
        if self.mode == "a2c_oracle":
            return 0
        return math.ceil(self.initial_rollout_steps / self.n_steps) * self.n_steps * num_envs

    def num_updates(self, num_envs: int) -> int:
        """Return the A2C updates (outer iterations) that spend ``total_env_steps`` with ``num_envs`` envs."""
        batch = self.n_steps * num_envs
        return max(1, (self.total_env_steps - self.init_steps(num_envs)) // batch)

    def decay_period(self, num_updates: int) -> int:
        """Return M, the A2C updates between decays of c (``upper_coef_decay_every[_fraction]``)."""
        if self.upper_coef_decay_every_fraction > 0:
            return max(1, round(self.upper_coef_decay_every_fraction * num_updates))
        return self.upper_coef_decay_every

    def outer_iters(self, problem_cfg: Any) -> int:
        """Return ``num_updates`` for the problem's env count (progress totals, checkpoints, ASHA)."""
        return self.num_updates(int(problem_cfg.num_envs))

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) for every range rule of this config."""
        m = "method."
        out = [
            (m + "mode", self.mode in MODES, f"must be one of {', '.join(MODES)}"),
            (m + "algo", self.algo == "rlhf", "must be rlhf for this config"),
            (m + "total_env_steps", self.total_env_steps >= 1, "must be ≥ 1"),
            (m + "lr", self.lr > 0, "must be > 0"),
            (m + "lr_by_game", all(v > 0 for v in self.lr_by_game.values()), "values must be > 0"),
            (m + "rms_alpha", 0 < self.rms_alpha < 1, "must be in (0, 1)"),
            (m + "rms_eps", self.rms_eps > 0, "must be > 0"),
            (m + "ent_coef", self.ent_coef >= 0, "must be ≥ 0"),
            (m + "vf_coef", self.vf_coef >= 0, "must be ≥ 0"),
            (m + "n_steps", self.n_steps >= 1, "must be ≥ 1"),
            (m + "max_grad_norm", self.max_grad_norm > 0, "must be > 0"),
            (
                m + "normalize_reward",
                not (self.normalize_reward and self.clip_true_reward),
                "needs method.clip_true_reward false (it replaces the sign clipping)",
            ),
            (m + "ac_hidden", len(self.ac_hidden) >= 1 and min(self.ac_hidden) >= 1, "widths ≥ 1"),
            (
                m + "compute_dtype",
                self.compute_dtype in COMPUTE_DTYPES,
                f"must be one of {', '.join(COMPUTE_DTYPES)}",
            ),
            (m + "rm_lr", self.rm_lr > 0, "must be > 0"),
            (m + "rm_batch_size", self.rm_batch_size >= 1, "must be ≥ 1"),
            (m + "rm_dropout", 0 <= self.rm_dropout < 1, "must be in [0, 1)"),
            (m + "rm_hidden", len(self.rm_hidden) >= 1 and min(self.rm_hidden) >= 1, "widths ≥ 1"),
            (m + "rm_every", self.rm_every >= 1, "must be ≥ 1"),
            (m + "rm_epoch_batches", self.rm_epoch_batches >= 0, "must be ≥ 0 (0 = full pass)"),
            (m + "rm_eval_pairs", self.rm_eval_pairs >= 0, "must be ≥ 0 (0 = no evaluation set)"),
            (m + "reward_std", self.reward_std > 0, "must be > 0"),
            (m + "initial_pairs", self.initial_pairs >= 1, "must be ≥ 1"),
            (m + "warmup_epochs", self.warmup_epochs >= 0, "must be ≥ 0"),
            (m + "pairs_per_epoch", self.pairs_per_epoch >= 0, "must be ≥ 0"),
            (m + "segment_length", self.segment_length >= 1, "must be ≥ 1"),
            (
                m + "buffer_size",
                self.buffer_size >= self.initial_pairs,
                f"must be ≥ method.initial_pairs={self.initial_pairs}",
            ),
            (
                m + "initial_rollout_steps",
                self.initial_rollout_steps >= self.segment_length,
                f"must be ≥ method.segment_length={self.segment_length}",
            ),
            (
                m + "pair_window_steps",
                self.pair_window_steps >= self.segment_length,
                f"must be ≥ method.segment_length={self.segment_length}",
            ),
            (
                m + "teacher_mode",
                self.teacher_mode in TEACHER_MODES,
                f"must be one of {', '.join(TEACHER_MODES)}",
            ),
            (m + "teacher_error_rate", 0 <= self.teacher_error_rate < 1, "must be in [0, 1)"),
            (m + "teacher_beta", self.teacher_beta > 0, "must be > 0"),
            (
                m + "teacher_beta",
                self.teacher_beta == 1.0 or self.teacher_mode == "bt",
                "is the bt teacher's rationality: needs method.teacher_mode=bt",
            ),
            (m + "teacher_gamma", 0 < self.teacher_gamma <= 1, "must be in (0, 1]"),
            (m + "teacher_skip", self.teacher_skip >= 0, "must be ≥ 0"),
            (m + "teacher_equal", self.teacher_equal >= 0, "must be ≥ 0"),
            (m + "upper_coef", self.upper_coef > 0, "must be > 0 (c = 1/λ)"),
            (m + "upper_coef_decay", 0 < self.upper_coef_decay <= 1, "must be in (0, 1]"),
            (m + "upper_coef_decay_every", self.upper_coef_decay_every >= 1, "must be ≥ 1"),
            (
                m + "upper_coef_decay_every_fraction",
                0 <= self.upper_coef_decay_every_fraction <= 1,
                "must be in [0, 1] (0: use method.upper_coef_decay_every)",
            ),
            (
                m + "upper_coef_decay_every_fraction",
                self.upper_coef_decay_every_fraction == 0
                or self.upper_coef_decay_every == UPPER_COEF_DECAY_EVERY,
                f"sets the decay period, as does method.upper_coef_decay_every="
                f"{self.upper_coef_decay_every}: set one of them",
            ),
            (m + "oracle_steps", self.oracle_steps >= 1, "must be ≥ 1"),
            (m + "oracle_every", self.oracle_every >= 1, "must be ≥ 1"),
            (m + "oracle_resolve_steps", self.oracle_resolve_steps >= 0, "must be ≥ 0"),
            (m + "oracle_lr", self.oracle_lr >= 0, "must be ≥ 0 (0: the agent's lr)"),
            (m + "penalty_batch", self.penalty_batch >= 0, "must be ≥ 0 (0: the whole windows)"),
            (
                m + "penalty_window_steps",
                self.penalty_window_steps == 0 or self.penalty_window_steps >= self.n_steps,
                f"must be 0 (the pairs' window) or ≥ method.n_steps={self.n_steps}",
            ),
            (
                m + "absorbing",
                not (self.absorbing and self.continuing),
                "needs method.continuing false (a continuing stream has no absorbing state)",
            ),
            (m + "log_every_steps", self.log_every_steps >= 1, "must be ≥ 1"),
            (m + "return_window", self.return_window >= 1, "must be ≥ 1"),
        ]
        return out


def couplings(cfg: RLHFConfig) -> tuple[bool, bool]:
    """Return the effective (use_upper_in_policy, use_penalty_in_reward): both off unless mode=pbrl."""
    if cfg.mode == "pbrl":
        return bool(cfg.use_upper_in_policy), bool(cfg.use_penalty_in_reward)
    return False, False


def game_key(name: str) -> str:
    """Return the key ``lr_by_game`` matches on: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def agent_lr(cfg: RLHFConfig, lr_key: str) -> float:
    """Return the A2C learning rate for a problem: ``lr_by_game[lr_key]`` if given, else ``lr``."""
    lrs = {game_key(k): v for k, v in cfg.lr_by_game.items()}
    return float(lrs.get(game_key(lr_key), cfg.lr))


# Which RLHFConfig fields each mode reads: a field set for a mode that does not read it is an error.
_RLHF_COMMON = frozenset(
    {
        "mode", "total_env_steps", "lr", "lr_by_game", "rms_alpha", "rms_eps", "ent_coef", "vf_coef",
        "n_steps", "max_grad_norm", "ac_hidden", "compute_dtype", "log_every_steps", "return_window",
        "reuse_acting_graph", "normalize_obs", "ac_separate_trunks",
    }
)  # fmt: skip
_RLHF_REWARD_MODEL = frozenset(
    {
        "continuing", "absorbing", "rm_lr", "rm_batch_size", "rm_dropout", "rm_hidden", "rm_every",
        "rm_epoch_batches", "rm_eval_pairs", "reward_std", "initial_pairs", "initial_rollout_steps", "warmup_epochs",
        "pairs_per_epoch", "buffer_size", "segment_length", "pair_window_steps", "teacher_mode",
        "teacher_beta", "teacher_error_rate", "teacher_gamma", "teacher_skip", "teacher_equal",
    }
)  # fmt: skip
_RLHF_PBRL = frozenset(
    {
        "use_upper_in_policy", "use_penalty_in_reward", "upper_coef", "upper_coef_decay",
        "upper_coef_decay_every", "upper_coef_decay_every_fraction", "oracle_steps", "oracle_every",
        "oracle_warm_start", "oracle_resolve_steps", "oracle_lr", "penalty_window_steps",
        "penalty_batch",
    }
)  # fmt: skip
RLHF_READS: dict[str, frozenset[str]] = {
    "a2c_oracle": _RLHF_COMMON | {"clip_true_reward", "normalize_reward"},
    "drlhf": _RLHF_COMMON | _RLHF_REWARD_MODEL,
    "pbrl": _RLHF_COMMON | _RLHF_REWARD_MODEL | _RLHF_PBRL,
}
"""``method.mode`` → the ``RLHFConfig`` fields that mode reads."""


def reads(cfg: Any) -> frozenset[str]:
    """Return the ``method.*`` fields the config's mode reads (the unread-field check uses it)."""
    return RLHF_READS.get(cfg.mode, RLHF_READS["pbrl"])


def shard_checks(cfg: Any) -> list[tuple[str, bool, str]]:
    """``AlgoSpec.checks`` of deep RLHF (``cfg``: the whole trial config): on the ray backend every
    rollout (and oracle) worker owns whole env shards, and there is no acting graph to reuse; Atari
    frames are not normalised (``method.normalize_obs``)."""
    if cfg.method.normalize_obs and cfg.problem.name == "atari_rlhf":
        return [
            (
                "method.normalize_obs",
                False,
                "is not for Atari frames (the Atari nets scale their uint8 frames themselves)",
            )
        ]
    shards = getattr(cfg.problem, "env_shards", None)
    if shards is None or cfg.dist.backend != "ray":
        return []
    if cfg.method.reuse_acting_graph:
        return [
            (
                "method.reuse_acting_graph",
                False,
                "needs dist.backend=local (Ray rollout workers act in other processes, so there "
                "is no acting graph to reuse)",
            )
        ]
    workers = (
        ("dist.num_rollout_workers", max(1, cfg.dist.num_rollout_workers)),
        ("dist.num_oracles", cfg.dist.num_oracles),
    )
    msg = f"must divide problem.env_shards={shards} (each rollout worker owns whole env shards)"
    return [(key, n == 0 or shards % n == 0, msg) for key, n in workers]
