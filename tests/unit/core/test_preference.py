"""Tests for segments, the synthetic teacher, the Bradley–Terry loss (``core``) and the FIFO buffer and
reward statistics (``rlhf.buffer``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pbrl_dist.core.preference import (
    SegmentPairs,
    SyntheticTeacher,
    absorbing_steps,
    bt_loss,
    gather_segments,
    myopic_returns,
    normalize_rewards,
    preference_accuracy,
    sample_segment_pairs,
    teacher_labels,
    valid_segment_starts,
)
from pbrl_dist.core.types import generator
from pbrl_dist.rlhf.buffer import PreferenceBuffer, RunningMeanStd

# -------------------------------------------------------------------------------------------------
# Bradley–Terry loss
# --------------------------------------------------------------------------------------------------


def test_bt_loss_hand_cases() -> None:
    r1 = torch.tensor([[1.0, 0.5], [0.0, 0.0], [2.0, 0.0], [0.3, 0.3]], dtype=torch.float64)
    r2 = torch.tensor([[0.0, 0.5], [0.0, 0.0], [0.0, 0.0], [0.6, 0.0]], dtype=torch.float64)
    # z = [1, 0, 2, 0]
    y = torch.tensor([1.0, 1.0, 0.0, 0.5], dtype=torch.float64)
    expected = torch.tensor(
        [math.log1p(math.exp(-1.0)), math.log(2.0), math.log1p(math.exp(2.0)), math.log(2.0)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(bt_loss(r1, r2, y, reduction="none"), expected)
    torch.testing.assert_close(bt_loss(r1, r2, y), expected.mean())
    torch.testing.assert_close(bt_loss(r1, r2, y, reduction="sum"), expected.sum())
    # y = ½: ½·log(1+e^{-z}) + ½·log(1+e^{z})
    half = bt_loss(r1[:1], r2[:1], torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(
        half, 0.5 * (expected[0] + torch.log1p(torch.exp(torch.tensor(1.0)))).double()
    )


def test_bt_loss_is_stable_for_large_logits() -> None:
    r1 = torch.tensor([[500.0, 500.0]])
    r2 = torch.zeros(1, 2)
    assert bt_loss(r1, r2, torch.tensor([0.0])).item() == pytest.approx(1000.0)
    assert bt_loss(r1, r2, torch.tensor([1.0])).item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(bt_loss(r2, r1, torch.tensor([1.0])))


def test_bt_loss_gradient_matches_finite_differences() -> None:
    """Central differences in float64, eps = 1e-6: truncation O(eps²) ≈ 1e-12, rounding ≈ 1e-10."""
    g = generator(0, "bt_fd")
    B, H = 4, 5
    r1 = torch.randn(B, H, generator=g, dtype=torch.float64, requires_grad=True)
    r2 = torch.randn(B, H, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    (g1, g2) = torch.autograd.grad(bt_loss(r1, r2, y), (r1, r2))
    eps = 1e-6
    for r, grad in ((r1, g1), (r2, g2)):
        fd = torch.zeros_like(grad)
        for idx in range(r.numel()):
            with torch.no_grad():
                flat = r.view(-1)
                old = flat[idx].item()
                flat[idx] = old + eps
                fp = bt_loss(r1, r2, y).item()
                flat[idx] = old - eps
                fm = bt_loss(r1, r2, y).item()
                flat[idx] = old
            fd.view(-1)[idx] = (fp - fm) / (2 * eps)
        torch.testing.assert_close(grad, fd, rtol=0, atol=1e-8)
    # closed form ∂ℓ/∂r¹_t = (σ(z) − y)/B for the mean reduction
    z = (r1.sum(1) - r2.sum(1)).detach()
    torch.testing.assert_close(g1, ((torch.sigmoid(z) - y) / B)[:, None].expand(B, H))
    assert torch.autograd.gradcheck(lambda a, b: bt_loss(a, b, y), (r1, r2))


def test_preference_accuracy_ignores_ties() -> None:
    r1 = torch.tensor([[1.0], [0.0], [3.0]])
    r2 = torch.tensor([[0.0], [1.0], [0.0]])
    y = torch.tensor([1.0, 1.0, 0.5])
    assert preference_accuracy(r1, r2, y).item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------------


def test_valid_segment_starts_matches_brute_force() -> None:
    g = generator(1, "dones")
    T, N, H = 30, 5, 6
    done = torch.rand(T, N, generator=g) < 0.15
    valid = valid_segment_starts(done, H)
    assert valid.shape == (T - H + 1, N)
    for t0 in range(T - H + 1):
        for n in range(N):
            assert bool(valid[t0, n]) == (not done[t0 : t0 + H - 1, n].any().item())


def test_sampled_segments_never_cross_episodes() -> None:
    g = generator(2, "seg")
    T, N, H = 60, 4, 10
    done = torch.rand(T, N, generator=g) < 0.05
    # encode (t, n) in the observation to check what was cut
    obs = torch.stack(torch.meshgrid(torch.arange(T), torch.arange(N), indexing="ij"), -1).float()
    rew = torch.rand(T, N, generator=g)
    act = torch.randint(0, 3, (T, N), generator=g)
    pairs = sample_segment_pairs(
        obs_TN=obs,
        actions_TN=act,
        true_rewards_TN=rew,
        done_TN=done,
        num_pairs=50,
        H=H,
        generator=g,
    )
    assert pairs.obs1_BH.shape == (50, H, 2)
    assert pairs.act1_BH.shape == (50, H)
    for o_BH, a_BH, ret_B in (
        (pairs.obs1_BH, pairs.act1_BH, pairs.ret1_B),
        (pairs.obs2_BH, pairs.act2_BH, pairs.ret2_B),
    ):
        for o, a, ret in zip(o_BH, a_BH, ret_B, strict=True):
            t = o[:, 0].long()
            n = int(o[0, 1])
            assert torch.equal(t, t[0] + torch.arange(H))
            assert (o[:, 1] == n).all()
            assert not done[t[:-1], n].any()
            assert torch.equal(a, act[t, n])
            assert ret.item() == pytest.approx(rew[t, n].sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="no window"):
        sample_segment_pairs(
            obs_TN=obs,
            actions_TN=act,
            true_rewards_TN=rew,
            done_TN=torch.ones(T, N, dtype=torch.bool),
            num_pairs=1,
            H=H,
            generator=g,
        )


# ------------------------------------------------------------------------------------------------
# Teacher
# --------------------------------------------------------------------------------------------------


def test_teacher_on_hand_made_segments() -> None:
    # one env, 8 steps; segments of H = 2 starting at t0 = 0, 2, 4, 6
    rew_T1 = torch.tensor([[1.0], [1.0], [0.0], [2.0], [3.0], [0.0], [0.5], [0.0]])
    t0 = torch.tensor([0, 2, 4, 6])
    n = torch.zeros(4, dtype=torch.int64)
    ret = gather_segments(rew_T1, t0, n, 2).sum(1)  # [2, 2, 3, 0.5]
    torch.testing.assert_close(ret, torch.tensor([2.0, 2.0, 3.0, 0.5]))
    ret1, ret2 = ret[[0, 0, 2, 3]], ret[[1, 2, 3, 2]]
    y = SyntheticTeacher()(ret1, ret2)
    torch.testing.assert_close(y, torch.tensor([0.5, 0.0, 1.0, 0.0]))  # tie, worse, better, worse
    torch.testing.assert_close(SyntheticTeacher()(ret2, ret1), 1.0 - y)  # swap symmetry
    # a tie threshold turns near-equal returns into ½
    y_thr = teacher_labels(torch.tensor([1.0, 1.0]), torch.tensor([1.05, 1.5]), tie_threshold=0.1)
    torch.testing.assert_close(y_thr, torch.tensor([0.5, 0.0]))


def test_bt_teacher_frequencies_match_bradley_terry() -> None:
    """Empirical P(y = 1) vs sigmoid(Δ/β); tolerance 5 binomial std errors (Bonferroni-safe)."""
    beta, n = 0.5, 20_000
    deltas = torch.tensor([-1.0, -0.2, 0.3, 0.7, 2.0])
    ret1 = deltas.repeat_interleave(n)
    ret2 = torch.zeros_like(ret1)
    y = teacher_labels(ret1, ret2, mode="bt", temperature=beta, generator=generator(3, "bt"))
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    freq = y.view(len(deltas), n).mean(1).double()
    p = torch.sigmoid(deltas.double() / beta)
    se = torch.sqrt(p * (1 - p) / n)
    assert ((freq - p).abs() <= 5 * se).all(), (freq, p)


def test_teacher_error_rate_flips_labels() -> None:
    n, eps = 20_000, 0.1
    ret1, ret2 = torch.ones(n), torch.zeros(n)
    y = teacher_labels(ret1, ret2, error_rate=eps, generator=generator(4, "err"))
    flip = 1.0 - y.mean().item()
    assert abs(flip - eps) <= 5 * math.sqrt(eps * (1 - eps) / n)
    ties = teacher_labels(ret1, ret1.clone(), error_rate=eps, generator=generator(4, "err"))
    assert (ties == 0.5).all()  # ties are not flipped
    with pytest.raises(ValueError, match="generator"):
        teacher_labels(ret1, ret2, mode="bt")
    with pytest.raises(ValueError, match="mode"):
        teacher_labels(ret1, ret2, mode="oracle")


def _step_rewards(rets: list[float], H: int = 4) -> torch.Tensor:
    """(B, H) step rewards whose sums are ``rets`` (all on the last step)."""
    rew = torch.zeros(len(rets), H)
    rew[:, -1] = torch.tensor(rets)
    return rew


def test_bpref_teacher_with_default_settings_is_todays_teacher_bit_for_bit() -> None:
    g = generator(5, "pairs")
    rew1, rew2 = torch.randn(64, 6, generator=g), torch.randn(64, 6, generator=g)
    ret1, ret2 = rew1.sum(1), rew2.sum(1)
    for teacher in (SyntheticTeacher(), SyntheticTeacher(mode="bt", error_rate=0.2)):
        g1, g2 = generator(6, "teacher"), generator(6, "teacher")
        answered, y = teacher.label(rew1, rew2, ret1, ret2, generator=g1)
        assert answered.all()
        assert torch.equal(y, teacher(ret1, ret2, generator=g2))
        assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))  # same draws


def test_myopic_teacher_weighs_the_end_of_a_segment_most() -> None:
    # equal returns, but segment 2 earns its reward on the last step: γ^3 = 0.729 < 1
    rew1 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    rew2 = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.9]])
    ret1, ret2 = rew1.sum(1), rew2.sum(1)
    _, y_plain = SyntheticTeacher().label(rew1, rew2, ret1, ret2)
    assert y_plain.tolist() == [0.5, 1.0]  # a tie; 2 > 1.9
    _, y = SyntheticTeacher(gamma=0.9).label(rew1, rew2, ret1, ret2)
    # scores: 0.729 vs 1 (segment 2 preferred); 2·0.9 = 1.8 vs 1.9 (segment 2 preferred)
    assert y.tolist() == [0.0, 0.0]
    assert torch.allclose(
        myopic_returns(rew1, 0.9), torch.tensor([0.729, 1.8], dtype=torch.float64)
    )


def test_skip_teacher_leaves_queries_with_two_low_segments_unanswered() -> None:
    ret1, ret2 = [0.0, 5.0, 1.0, 0.0], [0.5, 0.0, 1.0, 3.0]  # mean m = 10.5 / 8 = 1.3125
    rew1, rew2 = _step_rewards(ret1), _step_rewards(ret2)
    t = SyntheticTeacher(skip=1.0)  # threshold ε·m = 1.3125: pairs 0 and 2 have no segment above
    answered, y = t.label(rew1, rew2, rew1.sum(1), rew2.sum(1))
    assert answered.tolist() == [False, True, False, True]
    assert y.tolist() == [1.0, 0.0]  # the answered pairs' labels, in order
    # everything low: nothing answered, no labels
    zeros = torch.zeros(4)
    answered, y = t.label(rew1 * 0, rew2 * 0, zeros, zeros)
    assert not answered.any() and y.numel() == 0


def test_equal_teacher_labels_near_ties_half() -> None:
    ret1, ret2 = [1.0, 2.0, 4.0], [1.2, 3.0, 0.0]  # m = 11.2 / 6 ≈ 1.867; ε·m = 0.3733
    rew1, rew2 = _step_rewards(ret1), _step_rewards(ret2)
    _, y = SyntheticTeacher(equal=0.2).label(rew1, rew2, rew1.sum(1), rew2.sum(1))
    assert y.tolist() == [0.5, 0.0, 1.0]
    # the equal rule comes after the mistake flip: a near tie stays ½ whatever the flip did
    _, y = SyntheticTeacher(equal=0.2, error_rate=0.99).label(
        rew1, rew2, rew1.sum(1), rew2.sum(1), generator=generator(1, "t")
    )
    assert y[0] == 0.5


# ------------------------------------------------------------------------------------------------
# Buffer
# --------------------------------------------------------------------------------------------------


def _pairs(start: int, B: int, H: int = 3) -> tuple[SegmentPairs, torch.Tensor]:
    """Pairs whose contents encode their insertion id (start + i)."""
    ids = torch.arange(start, start + B, dtype=torch.float32)
    obs1 = ids[:, None, None].expand(B, H, 2).clone()
    obs2 = -obs1
    act = (ids.long() % 5)[:, None].expand(B, H).clone()
    pairs = SegmentPairs(obs1, act, obs2, (act + 1) % 5, ids, -ids)
    return pairs, (ids % 2 == 0).float()


def test_fifo_keeps_last_3000_in_order() -> None:
    buf = PreferenceBuffer(3, (2,), capacity=3000)
    start = 0
    for B in [576] + [16] * 30 + [500] * 3 + [940, 4]:  # 3500 in total, wrapping mid-batch
        p, y = _pairs(start, B)
        buf.add(p, y)
        start += B
    assert start == 3500
    assert buf.num_added == 3500
    assert len(buf) == 3000
    allp = buf.all_pairs()
    expect = torch.arange(500, 3500)
    assert torch.equal(allp.ids_B, expect)
    assert torch.equal(allp.ret1_B, expect.float())
    assert torch.equal(allp.obs1_BH[:, 0, 0], expect.float())
    assert torch.equal(allp.act2_BH[:, 0], (expect % 5 + 1) % 5)
    assert torch.equal(allp.y_B, (expect % 2 == 0).float())


def test_buffer_batch_larger_than_capacity() -> None:
    buf = PreferenceBuffer(3, (2,), capacity=10)
    p, y = _pairs(0, 25)
    buf.add(p, y)
    assert torch.equal(buf.all_pairs().ids_B, torch.arange(15, 25))


def test_buffer_state_dict_round_trip_is_exact() -> None:
    buf = PreferenceBuffer(3, (2,), capacity=50)
    for s in range(0, 70, 7):
        buf.add(*_pairs(s, 7))
    state = buf.state_dict()
    other = PreferenceBuffer(3, (2,), capacity=50)
    other.load_state_dict(state)
    for b in (buf, other):  # identical draws and identical future writes
        b.add(*_pairs(70, 5))
    g1, g2 = generator(5, "rb"), generator(5, "rb")
    for _ in range(3):
        x1, x2 = buf.sample(16, g1), other.sample(16, g2)
        for name in (
            "obs1_BH",
            "act1_BH",
            "obs2_BH",
            "act2_BH",
            "y_B",
            "ret1_B",
            "ret2_B",
            "ids_B",
        ):
            assert torch.equal(getattr(x1, name), getattr(x2, name))
    assert torch.equal(buf.all_pairs().ids_B, other.all_pairs().ids_B)
    with pytest.raises(ValueError, match="capacity"):
        PreferenceBuffer(3, (2,), capacity=10).load_state_dict(state)


def test_buffer_epoch_visits_each_pair_once() -> None:
    buf = PreferenceBuffer(3, (2,), capacity=100)
    buf.add(*_pairs(0, 70))
    ids = torch.cat([b.ids_B for b in buf.epoch(32, generator(6, "ep"))])
    assert torch.equal(ids.sort().values, torch.arange(70))


def test_buffer_frame_stack_storage_round_trip() -> None:
    """Stacked-frame segments are stored as H + k − 1 frames and rebuilt exactly."""
    H, k, B = 5, 4, 3
    g = generator(7, "frames")
    frames = torch.randint(0, 256, (B, H + k - 1, 6, 6), generator=g, dtype=torch.uint8)
    idx = torch.arange(H)[:, None] + torch.arange(k)[None, :]
    obs = frames[:, idx]  # (B, H, k, 6, 6), oldest frame first
    act = torch.zeros(B, H, dtype=torch.int64)
    pairs = SegmentPairs(obs, act, obs.flip(0), act, torch.zeros(B), torch.zeros(B))
    buf = PreferenceBuffer(H, (k, 6, 6), obs_dtype=torch.uint8, capacity=8, frame_stack=k)
    buf.add(pairs, torch.ones(B))
    assert buf._obs1.shape == (8, H + k - 1, 6, 6)
    got = buf.all_pairs()
    assert torch.equal(got.obs1_BH, obs)
    assert torch.equal(got.obs2_BH, obs.flip(0))
    broken = obs.clone()
    broken[0, 2] = 0  # a stack that does not shift (episode boundary inside)
    with pytest.raises(ValueError, match="frame_stack"):
        buf.add(SegmentPairs(broken, act, obs, act, torch.zeros(B), torch.zeros(B)), torch.ones(B))


def test_buffer_frame_stack_storage_holds_segments_with_an_absorbing_end() -> None:
    """Atari stacks: a segment that contains a game end (absorbing steps after it, from
    ``sample_segment_pairs``) is stored and its real steps come back exactly, its actions too."""
    T, N, k, A, H = 30, 3, 4, 5, 8
    g = generator(9, "stacks")
    raw = torch.randint(1, 256, (T + k, N, 6, 6), generator=g, dtype=torch.uint8)
    done = torch.zeros(T, N, dtype=torch.bool)
    done[10, 0] = done[17, 1] = done[5, 2] = done[20, 2] = True
    obs = torch.zeros(T, N, k, 6, 6, dtype=torch.uint8)
    for n in range(
        N
    ):  # each step's stack: the episode's last k frames (first frame repeated at reset)
        start = 0
        for t in range(T):
            idx = [max(start, t - k + 1 + j) for j in range(k)]
            obs[t, n] = raw[idx, n]
            if done[t, n]:
                start = t + 1
    pairs = sample_segment_pairs(
        obs_TN=obs,
        actions_TN=torch.randint(0, A, (T, N), generator=g),
        true_rewards_TN=torch.rand(T, N, generator=g),
        done_TN=done,
        num_pairs=24,
        H=H,
        generator=g,
        absorb_action=A,
    )
    absorbing = pairs.act1_BH == A
    assert absorbing.any()
    buf = PreferenceBuffer(
        H, (k, 6, 6), obs_dtype=torch.uint8, capacity=32, frame_stack=k, absorb_action=A
    )
    buf.add(pairs, torch.ones(24))
    got = buf.all_pairs()
    assert torch.equal(got.act1_BH, pairs.act1_BH) and torch.equal(got.act2_BH, pairs.act2_BH)
    real = ~absorbing
    assert torch.equal(got.obs1_BH[real], pairs.obs1_BH[real])
    real2 = pairs.act2_BH != A
    assert torch.equal(got.obs2_BH[real2], pairs.obs2_BH[real2])
    # without the absorbing action the same segments cannot be stored as frames
    plain = PreferenceBuffer(H, (k, 6, 6), obs_dtype=torch.uint8, capacity=32, frame_stack=k)
    with pytest.raises(ValueError, match="frame_stack"):
        plain.add(pairs, torch.ones(24))


# ------------------------------------------------------------------------------------------------
# Normalisation and schedule
# --------------------------------------------------------------------------------------------------


def test_running_mean_std_and_normalisation() -> None:
    g = generator(8, "rms")
    chunks = [torch.randn(n, generator=g) * 3 + 2 for n in (1, 17, 100, 5)]
    rms = RunningMeanStd()
    for c in chunks:
        rms.update(c)
    allx = torch.cat(chunks).double()
    torch.testing.assert_close(rms.mean, allx.mean())
    torch.testing.assert_close(rms.var, allx.var(unbiased=False))
    r = normalize_rewards(allx, mean=rms.mean, std=rms.std)
    assert r.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert r.std(unbiased=False).item() == pytest.approx(0.05, rel=1e-6)
    other = RunningMeanStd()
    other.load_state_dict(rms.state_dict())
    assert other.count == rms.count
    assert torch.equal(other.mean, rms.mean)


def test_absorbing_steps_follow_the_first_episode_end() -> None:
    g = generator(4, "absorb")
    done = torch.rand(40, 7, generator=g) < 0.2
    got = absorbing_steps(done)
    for b in range(40):
        for t in range(7):
            assert bool(got[b, t]) == bool(done[b, :t].any())


def test_segments_with_an_absorbing_state_pad_after_the_end() -> None:
    """With ``absorb_action``, segments may hold an episode end: the steps after it are the absorbing
    state (observation zeros, action |A|, true reward 0); the steps up to it are the rollout's own."""
    g = generator(5, "seg")
    T, N, H, A = 40, 3, 8, 3
    done = torch.rand(T, N, generator=g) < 0.25  # episodes of ≈ 4 steps: few fit a segment
    obs = torch.stack(torch.meshgrid(torch.arange(T), torch.arange(N), indexing="ij"), -1).float()
    obs = obs + 1.0  # (t + 1, n + 1): zeros only where absorbing
    rew = torch.rand(T, N, generator=g)
    act = torch.randint(0, A, (T, N), generator=g)
    pairs = sample_segment_pairs(
        obs_TN=obs,
        actions_TN=act,
        true_rewards_TN=rew,
        done_TN=done,
        num_pairs=40,
        H=H,
        generator=g,
        absorb_action=A,
    )
    padded = 0
    for o_BH, a_BH, ret_B in (
        (pairs.obs1_BH, pairs.act1_BH, pairs.ret1_B),
        (pairs.obs2_BH, pairs.act2_BH, pairs.ret2_B),
    ):
        for o, a, ret in zip(o_BH, a_BH, ret_B, strict=True):
            t0, n = int(o[0, 0]) - 1, int(o[0, 1]) - 1
            t = t0 + torch.arange(H)
            ends = done[t, n].nonzero().squeeze(1)
            real = H if ends.numel() == 0 else int(ends[0]) + 1  # the ending step is real
            padded += H - real
            assert torch.equal(o[:real, 0].long() - 1, t[:real])
            assert torch.equal(a[:real], act[t[:real], n])
            assert (o[real:] == 0).all() and (a[real:] == A).all()
            assert ret.item() == pytest.approx(rew[t[:real], n].sum().item(), rel=1e-6)
    assert padded > 0  # the draw did include episode ends


def test_bpref_teachers_on_10000_pairs_follow_their_definitions() -> None:
    """Skip, equal and myopic teachers, alone and combined with the mistake teacher, on 10,000 random
    pairs against each definition recomputed here in numpy: the deterministic rules exactly
    (tolerance 0: which queries are answered, which labels are ½, which segment wins), the mistake
    rate within 5 binomial standard errors."""
    n, H = 10_000, 5
    rng = np.random.default_rng(0)
    rew1 = rng.choice([0.0, 0.0, 1.0, 2.0], size=(n, H))  # low returns and near ties happen
    rew2 = rng.choice([0.0, 0.0, 1.0, 2.0], size=(n, H))
    ret1, ret2 = rew1.sum(1), rew2.sum(1)
    m = np.concatenate([ret1, ret2]).mean()

    def sign_label(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))

    def ask(t: SyntheticTeacher, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        args = (torch.from_numpy(rew1), torch.from_numpy(rew2))
        answered, y = t.label(*args, *(a.sum(1) for a in args), generator=generator(seed, "t"))
        return answered.numpy(), y.double().numpy()

    answered, y = ask(SyntheticTeacher(skip=1.0))  # skip: both segments at or below ε·m
    want = np.maximum(ret1, ret2) > 1.0 * m
    assert np.array_equal(answered, want) and 0.02 < 1 - want.mean() < 0.5
    assert np.array_equal(y, sign_label(ret1, ret2)[want])
    answered, y = ask(SyntheticTeacher(equal=0.3))  # equal: |ret1 − ret2| < ε·m is ½
    alike = np.abs(ret1 - ret2) < 0.3 * m
    assert answered.all() and 0.05 < alike.mean() < 0.5
    assert np.array_equal(y, np.where(alike, 0.5, sign_label(ret1, ret2)))
    _, y = ask(SyntheticTeacher(gamma=0.9))  # myopic: Σ_t γ^(H−1−t)·r_t decides
    w = 0.9 ** np.arange(H - 1, -1, -1)
    myopic = sign_label(rew1 @ w, rew2 @ w)
    assert np.array_equal(y, myopic) and (myopic != sign_label(ret1, ret2)).mean() > 0.01
    # all four: skip, then the myopic label, the mistake flip (ε = 0.1), then equal's ½
    answered, y = ask(SyntheticTeacher(skip=1.0, equal=0.3, gamma=0.9, error_rate=0.1), seed=1)
    assert np.array_equal(answered, want)
    alike_k, base = alike[want], myopic[want]
    assert np.array_equal(y[alike_k], np.full(alike_k.sum(), 0.5))
    decided = ~alike_k & (base != 0.5)
    flipped = (y[decided] != base[decided]).mean()
    assert abs(flipped - 0.1) <= 5 * np.sqrt(0.1 * 0.9 / decided.sum()), flipped
