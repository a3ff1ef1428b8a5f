"""Deep RLHF problems (paper Sec. 2.2, 6.2; Figure 2; MATH.md §6.2, §7.2): an env factory and its spec.

Three problems share one interface, ``RLHFProblem``:

* ``atari_rlhf``: an ALE game (Seaquest, BeamRider, MsPacman in the paper) through
  ``pbrl_dist.envs.make_atari_vec_env``: 84×84 grayscale, 4 stacked frames, frame skip 4, true
  (unclipped) game reward. The synthetic teacher prefers the segment with the higher true reward.
* ``gym_rlhf``: any gymnasium env with a discrete action space (``problem.env_id``, e.g. ``CartPole-v1``
  or ``MinAtar/Breakout-v1``) through ``pbrl_dist.envs.gym``: vector observations get MLP nets, grids
  and images conv nets sized from their shape; unsupported spaces are refused before anything runs.
* ``toy_rlhf``: the moving-target gridworld of ``pbrl_dist.envs.toy`` with MLP nets; it runs the same
  code path in seconds and has a known optimal policy.

The lower MDP M_τ(x) = {S, A, r_x, P} has the env's dynamics P and the learned reward r_x; the problem
owns P (the env), γ, and how many parallel envs and independently seeded env shards a trial uses. The
learned reward r_x and the policy live in the algorithm (``rlhf/loop.py``).

Env shards: ``num_envs`` envs are split into ``env_shards`` groups, each with its own env object and
seed. A rollout backend steps whole shards, so the numbers depend on ``env_shards`` but not on how
many workers run them (same idea as ``mc_chunk`` in the tabular loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pbrl_dist.envs import VecEnv, make_atari_vec_env, make_toy_vec_env
from pbrl_dist.envs.atari import ale_game_id
from pbrl_dist.envs.gym import UnsupportedEnv, describe_env, make_gym_vec_env
from pbrl_dist.problems.registry import ProblemSpec, register_problem


@dataclass
class RLHFProblemConfig:
    """Fields every RLHF problem has.

    Attributes:
        name: problem registry key (``atari_rlhf`` or ``toy_rlhf``).
        num_envs: parallel envs of the agent (and, in PBRL, of the oracle) (PROPOSAL 16, MATH.md §7.2).
        env_shards: independently seeded env groups; ``num_envs`` must be a multiple of it.
        gamma: discount γ of the lower MDP (A2C and the value penalty).
    """

    name: str = "atari_rlhf"
    num_envs: int = 16
    env_shards: int = 1
    gamma: float = 0.99

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) range checks."""
        return [
            ("problem.env_shards", self.env_shards >= 1, "must be ≥ 1"),
            (
                "problem.num_envs",
                self.env_shards >= 1 and self.num_envs % self.env_shards == 0,
                f"must be a multiple of problem.env_shards={self.env_shards}",
            ),
        ]

    def obs_bytes(self) -> int:
        """Return the bytes of one stored observation (memory estimates before a sweep starts)."""
        return 64 * 4


@dataclass
class AtariRLHFConfig(RLHFProblemConfig):
    """An ALE game with the preprocessing of ``envs/atari.py`` (MATH.md §7.2).

    Attributes:
        game: "Seaquest", "BeamRider", "MsPacman", … (any ALE ROM name).
        sticky_action_prob: ALE repeat_action_probability (PROPOSAL 0.0: the paper ran gym's
            NoFrameskip-v4 games of its time, which had no sticky actions; 0.25 = Machado et al.).
        frame_skip: emulator frames per agent step (4).
        episodic_life: ``terminated`` on life loss (A2C bootstraps there) while the game goes on
            (PROPOSAL off: a life-loss signal would leak reward-like information past the teacher).
        noop_max: up to this many no-ops after each reset.
        max_episode_frames: per-episode emulator frame cap (108000 = 30 minutes).
        env_threads: ALE worker threads per env shard (0 = one per core).
        resume: how a checkpointed run gets its emulators back (ale-py cannot clone them):
            ``replay`` rebuilds each env shard from its seed and replays every action it took (exact:
            the resumed run equals the uninterrupted one; costs about one raw-emulator second per
            ~5k agent steps already taken), ``reseed`` starts fresh episodes from a derived seed
            (instant; running episodes are lost and the run no longer equals the uninterrupted one).
    """

    name: str = "atari_rlhf"
    game: str = "BeamRider"
    sticky_action_prob: float = 0.0
    frame_skip: int = 4
    episodic_life: bool = False
    noop_max: int = 30
    max_episode_frames: int = 108_000
    env_threads: int = 0
    resume: str = "replay"

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) range checks."""
        try:
            ale_game_id(self.game)
            game_ok, game_msg = True, ""
        except ValueError as e:
            game_ok, game_msg = False, str(e).split(": ", 1)[-1]
        return [
            *super().checks(),
            ("problem.game", game_ok, game_msg or "unknown game"),
            (
                "problem.sticky_action_prob",
                0.0 <= self.sticky_action_prob <= 1.0,
                "must be in [0, 1]",
            ),
            ("problem.frame_skip", self.frame_skip >= 1, "must be ≥ 1"),
            ("problem.noop_max", self.noop_max >= 0, "must be ≥ 0"),
            ("problem.max_episode_frames", self.max_episode_frames >= 1, "must be ≥ 1"),
            ("problem.env_threads", self.env_threads >= 0, "must be ≥ 0"),
            ("problem.resume", self.resume in ("replay", "reseed"), "must be replay or reseed"),
        ]

    def obs_bytes(self) -> int:
        """Return the bytes of one stored observation: a uint8 4×84×84 frame stack."""
        return 4 * 84 * 84


@dataclass
class GymRLHFConfig(RLHFProblemConfig):
    """A gymnasium env with a discrete action space (``envs/gym.py``).

    Attributes:
        env_id: a registered gymnasium id: ``CartPole-v1``, ``MinAtar/Breakout-v1`` (needs the
            ``minatar`` extra), ``Acrobot-v1``, ``mypkg.envs:MyEnv-v0``, …
        env_kwargs: keyword arguments of ``gymnasium.make`` (e.g. ``{max_episode_steps: 500}``).
        env_import: modules imported before the env is made (ones that register your own envs).
        resume: how a checkpointed run gets its envs back: ``replay`` rebuilds each shard from its seed
            and replays its actions (exact; the observation is checked), ``reseed`` starts fresh
            episodes (instant, not exact).
    """

    name: str = "gym_rlhf"
    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_import: list[str] = field(default_factory=list)
    resume: str = "replay"

    def env_info(self) -> Any:
        """Return the env's ``EnvInfo`` (builds one env the first time; cached)."""
        return describe_env(self.env_id, dict(self.env_kwargs), list(self.env_import))

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) range checks; the env must build and be supported."""
        try:
            self.env_info()
            env_ok, env_msg = True, ""
        except UnsupportedEnv as e:
            env_ok, env_msg = False, f"{self.env_id!r} cannot run here: {e}"
        return [
            *super().checks(),
            ("problem.env_id", env_ok, env_msg),
            ("problem.resume", self.resume in ("replay", "reseed"), "must be replay or reseed"),
        ]

    def obs_bytes(self) -> int:
        """Return the bytes of one stored observation."""
        info = self.env_info()
        return math.prod(info.obs_shape) * (1 if info.obs_dtype == "uint8" else 4)


@dataclass
class ToyRLHFConfig(RLHFProblemConfig):
    """The moving-target gridworld (``envs/toy.py``).

    Attributes:
        grid_size: G, cells per side.
        episode_length: T, steps per episode.
        target_move_prob: probability that the target moves after each step.
    """

    name: str = "toy_rlhf"
    num_envs: int = 8
    grid_size: int = 8
    episode_length: int = 100
    target_move_prob: float = 0.5

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) range checks."""
        return [
            *super().checks(),
            ("problem.grid_size", self.grid_size >= 2, "must be ≥ 2"),
            ("problem.episode_length", self.episode_length >= 1, "must be ≥ 1"),
            ("problem.target_move_prob", 0.0 <= self.target_move_prob <= 1.0, "must be in [0, 1]"),
        ]


@dataclass(frozen=True)
class RLHFProblem:
    """What the RLHF loop needs from a problem: how to build env shards, and what one step costs.

    Attributes:
        cfg: the validated problem config (picklable: a Ray rollout worker rebuilds the problem from it).
        net_kind: "atari" (conv nets on uint8 frame stacks), "grid" (conv nets on channels-last grids)
            or "mlp" (vector observations).
        frames_per_step: emulator frames per agent step (frame skip for Atari, 1 for the toy env).
        env_restorable: True if the env has ``state_dict``/``load_state_dict`` (exact resume); ale-py's
            vector env has no clone/restore, so Atari shards are re-seeded on resume instead.
        lr_key: the key looked up in the method's ``lr_by_game`` (ALE ROM id, env id, or "toy").
        obs_dtype: "uint8" (frames, grids: stored as bytes) or "float32".
    """

    cfg: Any
    net_kind: str
    frames_per_step: int
    env_restorable: bool
    lr_key: str
    obs_dtype: str = "float32"

    @property
    def name(self) -> str:
        """Return the problem's registry name."""
        return str(self.cfg.name)

    @property
    def gamma(self) -> float:
        """Return the discount γ."""
        return float(self.cfg.gamma)

    def make_env(self, *, num_envs: int, seed: int) -> VecEnv:
        """Build one env shard of ``num_envs`` envs seeded by ``seed`` (call ``reset()`` next).

        Args:
            num_envs: envs in this shard.
            seed: the shard's seed (every env draw derives from it).

        Returns:
            A ``pbrl_dist.envs.VecEnv``.
        """
        c = self.cfg
        if self.net_kind == "atari":
            return make_atari_vec_env(
                c.game,
                num_envs=num_envs,
                seed=seed,
                sticky_action_prob=c.sticky_action_prob,
                frame_skip=c.frame_skip,
                noop_max=c.noop_max,
                episodic_life=c.episodic_life,
                num_threads=c.env_threads,
                max_episode_frames=c.max_episode_frames,
            )
        if isinstance(c, GymRLHFConfig):
            return make_gym_vec_env(
                c.env_id,
                num_envs=num_envs,
                seed=seed,
                env_kwargs=dict(c.env_kwargs),
                imports=list(c.env_import),
            )
        return make_toy_vec_env(
            num_envs=num_envs,
            seed=seed,
            grid_size=c.grid_size,
            episode_length=c.episode_length,
            target_move_prob=c.target_move_prob,
        )


def build(cfg: RLHFProblemConfig) -> RLHFProblem:
    """Build the problem of a validated ``AtariRLHFConfig``, ``GymRLHFConfig`` or ``ToyRLHFConfig``."""
    if isinstance(cfg, AtariRLHFConfig):
        return RLHFProblem(
            cfg=cfg,
            net_kind="atari",
            frames_per_step=cfg.frame_skip,
            env_restorable=cfg.resume == "replay",
            lr_key=ale_game_id(cfg.game),
            obs_dtype="uint8",
        )
    if isinstance(cfg, GymRLHFConfig):
        info = cfg.env_info()
        return RLHFProblem(
            cfg=cfg,
            net_kind=info.net_kind,
            frames_per_step=1,
            env_restorable=cfg.resume == "replay",
            lr_key=cfg.env_id,
            obs_dtype=info.obs_dtype,
        )
    if isinstance(cfg, ToyRLHFConfig):
        return RLHFProblem(
            cfg=cfg, net_kind="mlp", frames_per_step=1, env_restorable=True, lr_key="toy"
        )
    raise TypeError(f"problem: expected AtariRLHFConfig or ToyRLHFConfig, got {type(cfg).__name__}")


def memory_floor(p: Any, m: Any) -> tuple[int, str]:
    """``ProblemSpec.memory_floor`` of deep RLHF: the observations of one fragment per role (stored,
    plus float32 copies in the learner) and of the preference buffer's segment pairs."""
    obs = int(p.obs_bytes())
    roll = p.num_envs * (m.n_steps + 1) * obs * 2 * 5
    buf = m.buffer_size * 2 * m.segment_length * obs + m.pair_window_steps * p.num_envs * obs
    return roll + buf, ("problem.num_envs" if roll >= buf else "method.buffer_size")


# Deep RLHF (Figure 2): an Atari game, any gymnasium env with discrete actions, or the toy gridworld.
# The metric keys come from the loop (``algos`` registry: ``rlhf``).
_RLHF_PROGRESS = ("rl/episode_return",)
for _cfg, _fig in (
    (AtariRLHFConfig, ("fig2_atari_rlhf.png", "pbrl_dist.report.figures:fig2_atari_rlhf")),
    (ToyRLHFConfig, ("rlhf_toy.png", "pbrl_dist.report.figures:toy_rlhf")),
    (GymRLHFConfig, None),
):
    register_problem(
        ProblemSpec(
            name=_cfg.name,
            config=_cfg,
            build=build,
            algos=("rlhf",),
            metrics={"rl/episode_return": "TRUE game return, mean of the last finished episodes"},
            higher_is_better=("rl/episode_return",),
            progress=_RLHF_PROGRESS,
            figure=_fig,
            memory_floor=memory_floor,
        )
    )
