"""A2C's observation and reward normalisation in the RLHF loop (``method.normalize_obs``,
``method.normalize_reward``): the return scaling against all returns seen, exact resume, the checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _rlhf_tiny import TINY

from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import GymRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, run
from pbrl_dist.rlhf.stats import ReturnNormalizer
from pbrl_dist.testing import MemoryCheckpointer


def test_rewards_are_divided_by_the_std_of_every_discounted_return_seen() -> None:
    g = np.random.default_rng(0)
    T, N, gamma = 7, 3, 0.9
    norm = ReturnNormalizer()
    ret, seen = np.zeros(N), []
    for _ in range(4):  # four fragments
        r = g.normal(size=(T, N)).astype(np.float32)
        d = g.random((T, N)) < 0.2
        got = norm(torch.from_numpy(r), torch.from_numpy(d), gamma=gamma).numpy()
        for t in range(T):  # the reference: np.var over every G so far (no pseudo-count)
            ret = ret * gamma + r[t].astype(np.float64)
            seen.extend(ret.tolist())
            want = np.clip(r[t] / np.sqrt(np.var(seen) + 1e-8), -10, 10)
            np.testing.assert_allclose(got[t], want, rtol=1e-3)  # SB3's 1e-4 pseudo-count aside
            ret = np.where(d[t], 0.0, ret)


CARTPOLE = GymRLHFConfig(env_id="CartPole-v1", num_envs=4)
A2C = dataclasses.replace(
    TINY,
    mode="a2c_oracle",
    clip_true_reward=False,
    normalize_obs=True,
    normalize_reward=True,
    total_env_steps=2000,
    log_every_steps=400,
)


def _run(cfg: RLHFConfig, ckpt: MemoryCheckpointer | None = None) -> list[dict]:
    sink = ListSink()
    run(build(CARTPOLE), cfg, seed=0, sink=sink, ckpt=ckpt)
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in sink.rows]


@pytest.mark.parametrize("mode", ["a2c_oracle", "pbrl"])
def test_a_normalised_run_resumes_bit_for_bit(mode: str) -> None:
    cfg = dataclasses.replace(A2C, mode=mode)
    if mode != "a2c_oracle":
        cfg = dataclasses.replace(cfg, normalize_reward=False, clip_true_reward=True)
    ref = _run(cfg)
    assert ref != _run(dataclasses.replace(cfg, normalize_obs=False))
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(cfg, ckpt=ck)
    assert _run(cfg, ckpt=ck) == [r for r in ref if r["iter"] > 30]


def test_reward_normalisation_replaces_the_sign_clipping() -> None:
    checks = {k: ok for k, ok, _ in RLHFConfig(normalize_reward=True).checks()}
    assert checks["method.normalize_reward"] is False  # clip_true_reward defaults to True
    ok = RLHFConfig(normalize_reward=True, clip_true_reward=False).checks()
    assert all(good for k, good, _ in ok if k == "method.normalize_reward")
