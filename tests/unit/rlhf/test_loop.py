"""Tests for the deep RLHF loop (``rlhf/loop.py``): smoke runs through the CLI, exact resume,
DRLHF = PBRL with both couplings off, determinism, and one reward-model step.

Runtimes on one shared core: toy runs ≈ 1 s each; the Atari smoke (BeamRider, 2 envs, 3 methods) ≈ 15 s.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _rlhf_tiny import FIG2, TINY, TOY, TOY_SWEEP

from pbrl_dist import cli
from pbrl_dist.algos import ALGOS, METHOD_SCHEMAS
from pbrl_dist.config import load_sweep
from pbrl_dist.config.loader import ConfigError
from pbrl_dist.core.preference import bt_loss, sample_segment_pairs, teacher_labels
from pbrl_dist.core.types import generator
from pbrl_dist.metrics import METRICS, ListSink
from pbrl_dist.nets import make_actor_critic, reward
from pbrl_dist.problems import PROBLEMS
from pbrl_dist.problems.rlhf import AtariRLHFConfig, ToyRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, RLHFLearner, reward_model_step, run
from pbrl_dist.testing import MemoryCheckpointer


def _run(cfg: RLHFConfig, ckpt: Any = None, seed: int = 3) -> tuple[list[dict], Any]:
    sink = ListSink()
    res = run(build(TOY), cfg, seed=seed, sink=sink, ckpt=ckpt)
    return sink.rows, res


def _strip_perf(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "perf/env_steps_per_s"} for r in rows]


# --- registry and config --------------------------------------------------------------------------


def test_registered() -> None:
    assert ALGOS["rlhf"] is run
    assert METHOD_SCHEMAS["rlhf"] is RLHFConfig
    assert PROBLEMS["atari_rlhf"][0] is AtariRLHFConfig
    assert PROBLEMS["toy_rlhf"][0] is ToyRLHFConfig


def test_logged_keys_are_documented() -> None:
    rows, _ = _run(TINY)
    absorbing, _ = _run(dataclasses.replace(TINY, absorbing=True))
    keys = {k for r in rows + absorbing for k in r}
    assert "rm/absorbing_reward" in keys
    assert {"iter", "env_frames", "perf/env_frames", "rl/episode_return", "penalty/value"} <= keys
    assert keys <= set(METRICS), sorted(keys - set(METRICS))


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("method.mode=sarsa", "method.mode"),
        ("method.segment_length=100", "method.initial_rollout_steps"),
        ("method.upper_coef=0", "method.upper_coef"),
        ("method.compute_dtype=float16", "method.compute_dtype"),
        ("problem.env_shards=3", "problem.num_envs"),
    ],
)
def test_bad_config_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_sweep(TOY_SWEEP, smoke=True, overrides=[override])


@pytest.mark.parametrize("key", ["num_rollout_workers", "num_oracles"])
def test_ray_workers_must_divide_the_env_shards(key: str) -> None:
    ok = ["dist.backend=ray", "problem.env_shards=4", f"dist.{key}=2"]
    load_sweep(TOY_SWEEP, smoke=True, overrides=ok)
    with pytest.raises(ConfigError, match=rf"dist\.{key}: must divide problem\.env_shards=4"):
        load_sweep(TOY_SWEEP, smoke=True, overrides=[*ok[:2], f"dist.{key}=3"])


def test_bad_game_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"problem\.game"):
        load_sweep(FIG2, smoke=True, overrides=["sweep.grid.problem.game=[NotAGame]"])


# --- smoke runs through the CLI (local backend) -----------------------------------------------------


def _check_results(out: Path, num_trials: int) -> None:
    trial_dirs = sorted(p.parent for p in out.glob("*/result.json"))
    assert len(trial_dirs) == num_trials
    for d in trial_dirs:
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert rows and all("iter" in r and "env_frames" in r for r in rows)
        assert rows[-1]["env_frames"] >= rows[0]["env_frames"] > 0


def test_cli_smoke_toy(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    assert cli.main(["run", str(TOY_SWEEP), "--smoke", "--out", str(out)]) == 0
    _check_results(out, 3)
    assert (out / "figures" / "rlhf_toy.png").exists()


@pytest.mark.atari
def test_cli_smoke_atari_beamrider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "atari"
    argv = ["run", str(FIG2), "--smoke", "--out", str(out), "sweep.grid.problem.game=[BeamRider]"]
    assert cli.main(argv) == 0
    _check_results(out, 3)
    # No episode ends in the smoke budget: no empty figure, one line saying why.
    assert not (out / "figures" / "fig2_atari_rlhf.png").exists()
    said = capsys.readouterr().out
    assert "figure fig2_atari_rlhf.png: not written: no rl/episode_return value" in said
    frames = json.loads(
        (out / "pbrl__game=BeamRider__s0" / "metrics.jsonl").read_text().splitlines()[-1]
    )
    assert frames["env_frames"] == frames["perf/env_frames"]
    assert frames["env_frames"] % 4 == 0  # agent steps × frame skip 4


# --- determinism, couplings, resume ----------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_differs() -> None:
    a, ra = _run(TINY)
    b, rb = _run(TINY)
    assert _strip_perf(a) == _strip_perf(b)
    np.testing.assert_array_equal(
        ra.final_state["episode_returns"], rb.final_state["episode_returns"]
    )
    c, _ = _run(TINY, seed=4)
    assert _strip_perf(a) != _strip_perf(c)


def test_drlhf_is_pbrl_with_both_couplings_off() -> None:
    drlhf, _ = _run(dataclasses.replace(TINY, mode="drlhf"))
    off, _ = _run(
        dataclasses.replace(
            TINY, mode="pbrl", use_upper_in_policy=False, use_penalty_in_reward=False
        )
    )
    assert _strip_perf(drlhf) == _strip_perf(off)
    # mode=drlhf forces the switches off whatever they say.
    forced, _ = _run(dataclasses.replace(TINY, mode="drlhf", use_upper_in_policy=True))
    assert _strip_perf(forced) == _strip_perf(drlhf)
    # ... and the couplings do change the numbers.
    for kw in ({"use_upper_in_policy": False}, {"use_penalty_in_reward": False}):
        coupled, _ = _run(dataclasses.replace(TINY, mode="pbrl", **kw))
        assert _strip_perf(coupled) != _strip_perf(drlhf), kw


@pytest.mark.parametrize("mode", ["a2c_oracle", "drlhf", "pbrl"])
def test_resume_after_crash_equals_uninterrupted(mode: str) -> None:
    cfg = dataclasses.replace(TINY, mode=mode)
    ref_ck = MemoryCheckpointer(every=1000)  # saves only at the end: the uninterrupted final state
    ref_rows, ref = _run(cfg, ckpt=ref_ck)
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    assert ck.saved is not None and ck.saved["k"] == 30
    rows, res = _run(cfg, ckpt=ck)
    # Rows logged after the restored iteration are identical (run_trial trims the file to k).
    assert _strip_perf(rows) == [r for r in _strip_perf(ref_rows) if r["iter"] > 30]
    assert {k: v for k, v in res.metrics.items() if not k.startswith("perf/env_steps")} == {
        k: v for k, v in ref.metrics.items() if not k.startswith("perf/env_steps")
    }
    for key in ("episode_returns", "episode_frames"):
        np.testing.assert_array_equal(res.final_state[key], ref.final_state[key])
    final, want = ck.saved["learner"], ref_ck.saved["learner"]
    nets = {"agent": (final["agent"], want["agent"]), "oracle": (final["oracle"], want["oracle"])}
    if want["reward_model"] is not None:
        nets["rm"] = (final["reward_model"]["rm"], want["reward_model"]["rm"])
    for net, (got, ref_net) in nets.items():
        if ref_net is not None:
            for name, t in ref_net.items():
                assert torch.equal(got[name], t), (net, name)
    assert final["counters"] == want["counters"]


def test_oracle_every_steps_the_oracle_on_every_kth_update_and_resumes_off_phase() -> None:
    cfg = dataclasses.replace(TINY, mode="pbrl", oracle_every=4)
    ref_rows, ref = _run(cfg)
    every, _ = _run(dataclasses.replace(cfg, oracle_every=1))
    updates = cfg.num_updates(TOY.num_envs)  # of 20 agent steps each
    assert ref.metrics["perf/oracle_env_frames"] == math.ceil(updates / 4) * 20
    assert every[-1]["perf/oracle_env_frames"] == updates * 20
    assert _strip_perf(ref_rows) != _strip_perf(every)
    # A crash at update 30 (not a multiple of 4) resumes into the same schedule.
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    rows, res = _run(cfg, ckpt=ck)
    assert _strip_perf(rows) == [r for r in _strip_perf(ref_rows) if r["iter"] > 30]
    assert res.metrics["perf/oracle_env_frames"] == ref.metrics["perf/oracle_env_frames"]


def test_oracle_resolve_steps_restart_the_oracle_before_each_reward_epoch_and_resume() -> None:
    cfg = dataclasses.replace(TINY, mode="pbrl", oracle_resolve_steps=3)
    ref_rows, ref = _run(cfg)
    updates = cfg.num_updates(TOY.num_envs)  # one oracle fragment (20 steps) per update, plus
    epochs = ref.metrics["rm/epochs"] - cfg.warmup_epochs  # 3 re-solving fragments per reward epoch
    assert ref.metrics["perf/oracle_env_frames"] == (updates + 3 * epochs) * 20
    assert _strip_perf(ref_rows) != _strip_perf(
        _run(dataclasses.replace(cfg, oracle_resolve_steps=0))[0]
    )
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    rows, _ = _run(cfg, ckpt=ck)
    assert _strip_perf(rows) == [r for r in _strip_perf(ref_rows) if r["iter"] > 30]


def test_oracle_lr_and_a_longer_penalty_window_run_and_resume() -> None:
    cfg = dataclasses.replace(TINY, mode="pbrl", oracle_lr=0.02, penalty_window_steps=40)
    prob = build(TOY)
    env = prob.make_env(num_envs=1, seed=0)
    L = RLHFLearner(prob, cfg, seed=0, obs_shape=tuple(env.obs_shape), num_actions=env.num_actions)
    env.close()
    assert L.oracle is not None and L.oracle.opt.param_groups[0]["lr"] == 0.02
    assert L.agent.opt.param_groups[0]["lr"] == cfg.lr
    assert (L.window_chunks, L.penalty_chunks) == (4, 8)  # 20 and 40 steps of 5-step fragments
    ref_rows, _ = _run(cfg)
    assert _strip_perf(ref_rows) != _strip_perf(_run(dataclasses.replace(cfg, oracle_lr=0.0))[0])
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    assert (
        len(ck.saved["learner"]["window"]) == 8 and len(ck.saved["learner"]["oracle_window"]) == 8
    )
    rows, _ = _run(cfg, ckpt=ck)
    assert _strip_perf(rows) == [r for r in _strip_perf(ref_rows) if r["iter"] > 30]


def test_oracle_every_is_read_by_pbrl_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"method\.oracle_every: must be ≥ 1"):
        load_sweep(str(TOY_SWEEP), smoke=True, overrides=["method.oracle_every=0"])
    with pytest.raises(ConfigError, match=r"method.oracle_every: not read by .* mode drlhf"):
        load_sweep(str(TOY_SWEEP), smoke=True, overrides=["methods.drlhf.oracle_every=2"])
    load_sweep(str(TOY_SWEEP), smoke=True, overrides=["method.oracle_every=2"])  # pbrl reads it


ATARI_TINY = dataclasses.replace(
    TINY, total_env_steps=400, initial_rollout_steps=30, log_every_steps=100, clip_true_reward=True
)


@pytest.mark.atari
@pytest.mark.parametrize("mode", ["a2c_oracle", "pbrl"])
def test_atari_resume_replays_the_emulators_and_equals_uninterrupted(mode: str) -> None:
    """ale-py cannot clone emulators; the shards replay their actions and the run continues bitwise."""
    prob = build(AtariRLHFConfig(game="BeamRider", num_envs=4, env_shards=2, env_threads=1))
    cfg = dataclasses.replace(ATARI_TINY, mode=mode)
    ref_ck = MemoryCheckpointer(every=1000)
    ref_sink = ListSink()
    ref = run(prob, cfg, seed=0, sink=ref_sink, ckpt=ref_ck)
    ck = MemoryCheckpointer(every=12, crash_after=12)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(prob, cfg, seed=0, sink=ListSink(), ckpt=ck)
    sink = ListSink()
    res = run(prob, cfg, seed=0, sink=sink, ckpt=ck)
    assert sink.rows and sink.rows[0]["iter"] > 12
    assert _strip_perf(sink.rows) == [r for r in _strip_perf(ref_sink.rows) if r["iter"] > 12]
    for key in ("episode_returns", "episode_frames"):
        np.testing.assert_array_equal(res.final_state[key], ref.final_state[key])
    for name, t in ref_ck.saved["learner"]["agent"].items():
        assert torch.equal(ck.saved["learner"]["agent"][name], t), name
    # The replayed shard state is the uninterrupted one (observations, action history).
    for a, b in zip(
        ck.saved["agent_src"]["shards"], ref_ck.saved["agent_src"]["shards"], strict=True
    ):
        np.testing.assert_array_equal(a["obs"], b["obs"])
        np.testing.assert_array_equal(a["env"]["actions"], b["env"]["actions"])


@pytest.mark.atari
def test_atari_resume_reseed_option_finishes() -> None:
    """``problem.resume: reseed`` starts fresh episodes (instant) and the run still completes."""
    prob = build(AtariRLHFConfig(game="BeamRider", num_envs=2, env_threads=1, resume="reseed"))
    ck = MemoryCheckpointer(every=10, crash_after=10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(prob, ATARI_TINY, seed=0, sink=ListSink(), ckpt=ck)
    agent_at_crash = ck.saved["learner"]["agent"]
    sink = ListSink()
    res = run(prob, ATARI_TINY, seed=0, sink=sink, ckpt=ck)
    assert sink.rows[0]["iter"] > 10 and res.metrics["iter"] == sink.rows[-1]["iter"]
    assert ck.saved["k"] == res.metrics["iter"]
    assert not all(
        torch.equal(ck.saved["learner"]["agent"][k], v) for k, v in agent_at_crash.items()
    )


@pytest.mark.atari
def test_atari_replay_detects_a_changed_emulator() -> None:
    """A replay that does not reproduce the saved observation fails loudly instead of drifting."""
    from pbrl_dist.rlhf.rollouts import RolloutShard, RolloutSpec

    prob = build(AtariRLHFConfig(game="BeamRider", num_envs=2, env_threads=1))
    shard = RolloutShard(RolloutSpec(prob, "agent", 0, 5, {}), 0, 2)
    try:
        shard.collect(shard.policy.state_dict(), 0)
        state = shard.state_dict()
        state["obs"] = state["obs"] + 1
        with pytest.raises(RuntimeError, match="did not reproduce"):
            shard.load_state_dict(state)
    finally:
        shard.close()


# --- the reward-model step ------------------------------------------------------------------------


def test_reward_model_step_decreases_bt_loss_on_a_fixed_batch() -> None:
    env = build(TOY).make_env(num_envs=4, seed=0)
    obs = [env.reset()]
    rng = np.random.default_rng(0)
    acts, rews, dones = [], [], []
    for _ in range(60):
        a = rng.integers(0, env.num_actions, env.num_envs)
        o, r, te, tr, _ = env.step(a)
        acts.append(a)
        rews.append(r)
        dones.append(te | tr)
        obs.append(o)
    gen = generator(0, "test")
    pairs = sample_segment_pairs(
        obs_TN=torch.from_numpy(np.stack(obs[:-1])),
        actions_TN=torch.from_numpy(np.stack(acts)),
        true_rewards_TN=torch.from_numpy(np.stack(rews)),
        done_TN=torch.from_numpy(np.stack(dones)),
        num_pairs=16,
        H=10,
        generator=gen,
    )
    y = teacher_labels(pairs.ret1_B, pairs.ret2_B)
    learner = RLHFLearner(build(TOY), TINY, seed=0, obs_shape=(7,), num_actions=5)
    assert learner.rm is not None
    learner.rm.buffer.add(pairs, y)
    batch = learner.rm.buffer.all_pairs()
    rm = learner.rm.rm

    def eval_loss() -> float:
        rm.eval()
        with torch.no_grad():
            r1 = reward(rm, batch.obs1_BH, batch.act1_BH)
            r2 = reward(rm, batch.obs2_BH, batch.act2_BH)
        return float(bt_loss(r1, r2, batch.y_B))

    before = eval_loss()
    rm.train()
    for _ in range(30):
        reward_model_step(rm, learner.rm.opt, batch, gen=gen)
    after = eval_loss()
    assert after < 0.8 * before, (before, after)


# --- method.reuse_acting_graph --------------------------------------------------------------------


def test_reusing_the_acting_graph_gives_the_same_a2c_step() -> None:
    """The A2C step on the acting passes' own outputs equals the step that runs the net again."""
    from pbrl_dist.rlhf import A2CTrainer
    from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

    prob = build(ToyRLHFConfig(num_envs=4, env_shards=2, episode_length=12))
    kw = {"compute_dtype": "float32", "hidden": (16, 16)}
    trainers, rolls = [], []
    for bound in (False, True):
        net = make_actor_critic("mlp", (7,), 5, generator=generator(0, "init"), hidden=(16, 16))
        tr = A2CTrainer(net, TINY, lr=1e-2, gamma=0.9)
        src = ShardGroup(RolloutSpec(prob, "agent", 0, 6, kw))
        if bound:
            src.bind(net)
        roll = src.collect(net.state_dict(), 0)
        assert (roll.graph is not None) == bound
        stats = tr.step(roll, roll.rewards_TN)
        trainers.append((tr, stats))
        rolls.append(roll)
    (a, sa), (b, sb) = trainers
    torch.testing.assert_close(rolls[0].actions_TN, rolls[1].actions_TN, rtol=0, atol=0)
    for (name, pa), pb in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
    assert sa.policy_loss == pytest.approx(sb.policy_loss, rel=1e-5, abs=1e-7)
    assert sa.value_loss == pytest.approx(sb.value_loss, rel=1e-5)
    assert rolls[1].without_graph().graph is None


def test_reuse_acting_graph_runs_every_mode_and_resumes(tmp_path: Path) -> None:
    for mode in ("a2c_oracle", "drlhf", "pbrl"):
        cfg = dataclasses.replace(TINY, mode=mode, reuse_acting_graph=True)
        rows, res = _run(cfg)
        plain, _ = _run(dataclasses.replace(TINY, mode=mode))
        assert rows[-1]["iter"] == plain[-1]["iter"] and res.metrics["env_frames"] == 1600
        # close to the unbound run, not bitwise: per-step vs batched forward passes
        assert abs(rows[0]["lower/entropy"] - plain[0]["lower/entropy"]) < 0.05, mode
    cfg = dataclasses.replace(TINY, mode="pbrl", reuse_acting_graph=True)
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    rows, _ = _run(cfg, ckpt=ck)  # the checkpoint holds no graph, and the run finishes
    assert rows and rows[0]["iter"] > 30


def test_reuse_acting_graph_is_refused_on_the_ray_backend() -> None:
    with pytest.raises(ConfigError, match=r"method.reuse_acting_graph: needs dist.backend=local"):
        load_sweep(
            TOY_SWEEP,
            smoke=True,
            overrides=[
                "method.reuse_acting_graph=true",
                "dist.backend=ray",
                "dist.num_rollout_workers=1",
            ],
        )


# --- method.absorbing: episode ends lead to an absorbing state whose reward r_φ learns -----------


def test_absorbing_runs_resumes_and_labels_games_shorter_than_a_segment() -> None:
    """Games of 6 steps and 10-step segments: without the absorbing state no segment fits inside a
    game (the loop refuses at the start, and a collapsed agent would get no new labels at all); with
    it every window yields pairs, and a crash at update 30 resumes to the uninterrupted numbers."""
    short = ToyRLHFConfig(num_envs=4, episode_length=6)
    cfg = dataclasses.replace(TINY, mode="pbrl")
    with pytest.raises(ValueError, match=r"no segment of method\.segment_length steps fits"):
        run(build(short), cfg, seed=3, sink=ListSink())
    cfg = dataclasses.replace(cfg, absorbing=True)
    sink = ListSink()
    res = run(build(short), cfg, seed=3, sink=sink)
    labelling_events = cfg.num_updates(short.num_envs) // cfg.rm_every
    assert (
        res.metrics["rm/labels_used"] == cfg.initial_pairs + labelling_events * cfg.pairs_per_epoch
    )
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(build(short), cfg, seed=3, sink=ListSink(), ckpt=ck)
    again = ListSink()
    run(build(short), cfg, seed=3, sink=again, ckpt=ck)
    assert _strip_perf(again.rows) == [r for r in _strip_perf(sink.rows) if r["iter"] > 30]
    # drlhf reads it too, and it changes the numbers of the default toy (episodes of 30 steps)
    plain, _ = _run(dataclasses.replace(TINY, mode="drlhf"))
    absorbing, _ = _run(dataclasses.replace(TINY, mode="drlhf", absorbing=True))
    assert _strip_perf(plain) != _strip_perf(absorbing)


def test_a_seam_in_the_window_is_not_read_as_a_game_end_with_absorbing() -> None:
    """After a re-seed (Atari resume, replaced rollout worker) the window is emptied, not cut: an
    absorbing segment would take the seam for the game ending."""
    from pbrl_dist.rlhf.rollouts import Rollout

    roll = Rollout(
        obs_TN=torch.zeros(5, 4, 7),
        actions_TN=torch.zeros(5, 4, dtype=torch.int64),
        rewards_TN=torch.zeros(5, 4),
        dones_TN=torch.zeros(5, 4, dtype=torch.bool),
        last_obs_N=torch.zeros(4, 7),
        episode_returns=[],
    )
    for absorbing in (False, True):
        cfg = dataclasses.replace(TINY, mode="pbrl", absorbing=absorbing)
        L = RLHFLearner(build(TOY), cfg, seed=0, obs_shape=(7,), num_actions=5)
        L.push_window(roll)
        L.break_window()
        if absorbing:
            assert L.window == []
        else:
            (cut,) = L.window
            assert cut.dones_TN[-1].all() and not cut.dones_TN[:-1].any()


def test_absorbing_is_refused_with_continuing() -> None:
    with pytest.raises(ConfigError, match=r"method\.absorbing: needs method\.continuing false"):
        load_sweep(
            str(TOY_SWEEP),
            smoke=True,
            overrides=["method.absorbing=true", "method.continuing=true"],
        )


def _absorbing_trainer(gamma: float = 0.9) -> Any:
    from pbrl_dist.rlhf.reward_model import RewardModelTrainer

    cfg = dataclasses.replace(TINY, absorbing=True, reward_std=0.5)
    t = RewardModelTrainer(
        cfg,
        net_kind="mlp",
        obs_dtype="float32",
        gamma=gamma,
        seed=0,
        obs_shape=(3,),
        num_actions=2,
        net_kwargs={"hidden": (4,)},
    )
    t.rms.update(torch.tensor([0.3, -1.0, 2.0, 0.5]))  # a non-trivial normalisation
    return t


def test_end_value_makes_the_return_that_of_the_episode_then_the_absorbing_state_forever() -> None:
    gamma = 0.9
    t = _absorbing_trainer(gamma)
    with torch.no_grad():
        t.rm.absorbing.fill_(-0.7)
    r = torch.tensor([0.2, -0.1, 0.4, 0.3], dtype=torch.float64)
    dones = torch.tensor([False, False, True, False])  # the episode is steps 0-2
    shaped = t.with_end_value(t.rm, r, dones).detach()
    got = sum(gamma**k * shaped[k] for k in range(3))
    r_abs = float(t.normalized(torch.tensor(-0.7)))
    want = sum(gamma**k * r[k] for k in range(3)) + sum(gamma**k * r_abs for k in range(3, 3000))
    assert float(got) == pytest.approx(float(want), rel=1e-6)  # r_φ(absorbing) is float32


def test_absorbing_reward_gradients_match_finite_differences_in_float64() -> None:
    """d/d r_φ(absorbing) of the BT loss (segments with absorbing steps) and of the value penalty."""
    from pbrl_dist.rlhf.reward_model import WithAbsorbing
    from pbrl_dist.rlhf.rollouts import Rollout

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.float64, generator=g))

        def forward(self, obs: torch.Tensor, generator: Any = None) -> torch.Tensor:
            return obs @ self.w

    g = generator(0, "fd")
    rm = WithAbsorbing(Linear())
    rm.absorbing.data = torch.tensor(3.0, dtype=torch.float64)  # oracle's ends: p̂ > 0, not clamped
    obs1, obs2 = (torch.randn(5, 4, 3, dtype=torch.float64, generator=g) for _ in range(2))
    act1 = torch.tensor([[0, 1, 2, 2]] * 5)  # two absorbing steps (action |A| = 2)
    act2 = torch.tensor([[1, 0, 1, 2]] * 5)  # one
    y = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0], dtype=torch.float64)
    t = _absorbing_trainer()
    obs_TN = torch.randn(6, 2, 3, dtype=torch.float64, generator=g)
    dones = torch.zeros(6, 2, dtype=torch.bool)
    dones[2, 0] = dones[4, 1] = True
    oracle = Rollout(
        obs_TN=obs_TN,
        actions_TN=torch.zeros(6, 2, dtype=torch.int64),
        rewards_TN=torch.zeros(6, 2),
        dones_TN=dones,
        last_obs_N=obs_TN[-1],
        episode_returns=[],
    )
    agent = Rollout(**{**vars(oracle), "dones_TN": torch.zeros(6, 2, dtype=torch.bool)})
    penalty = t.penalty_fn(oracle, agent, lam=2.0)

    def losses() -> list[torch.Tensor]:
        bt = bt_loss(reward(rm, obs1, act1), reward(rm, obs2, act2), y)
        return [bt, penalty(rm)]

    for i in range(2):
        (grad,) = torch.autograd.grad(losses()[i], rm.absorbing)
        eps = 1e-6
        with torch.no_grad():
            rm.absorbing += eps
            up = float(losses()[i])
            rm.absorbing -= 2 * eps
            down = float(losses()[i])
            rm.absorbing += eps
        assert float(grad) == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9), i
        assert float(grad) != 0.0
