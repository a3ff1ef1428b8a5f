"""Shape and mode tests for the actor-critic and reward-model networks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pbrl_dist.core.types import generator
from pbrl_dist.nets import (
    AtariRewardModel,
    MLPRewardModel,
    make_actor_critic,
    make_reward_model,
    reward,
)

ATARI_SHAPE = (4, 84, 84)


def _frames(*lead: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (*lead, *ATARI_SHAPE), generator=generator(0, "frames"), dtype=torch.uint8
    )


def test_atari_actor_critic_shapes() -> None:
    ac = make_actor_critic("atari", ATARI_SHAPE, 9, generator=generator(0, "ac"))
    logits, value = ac(_frames(5))
    assert logits.shape == (5, 9)
    assert value.shape == (5,)
    logits, value = ac(_frames(3, 2))  # (T, N) leading dims
    assert logits.shape == (3, 2, 9)
    assert value.shape == (3, 2)
    assert torch.isfinite(logits).all()
    assert torch.isfinite(value).all()
    convs = [m for m in ac.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs] == [
        (8, 4, 32),
        (4, 2, 64),
        (3, 1, 64),
        (3, 1, 64),
    ]
    assert ac.fc[0].out_features == 512


def test_actor_critic_init_is_seeded() -> None:
    a = make_actor_critic("mlp", (7,), 5, generator=generator(1, "ac"))
    b = make_actor_critic("mlp", (7,), 5, generator=generator(1, "ac"))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # policy head starts near-uniform (orthogonal gain 0.01)
    logits, _ = a(torch.randn(4, 7, generator=generator(0, "x")))
    assert logits.abs().max() < 0.1


def test_mlp_actor_critic_shapes() -> None:
    ac = make_actor_critic("mlp", (7,), 5)
    logits, value = ac(torch.zeros(6, 7))
    assert logits.shape == (6, 5)
    assert value.shape == (6,)
    logits, value = ac(torch.zeros(4, 3, 7))
    assert logits.shape == (4, 3, 5)
    assert value.shape == (4, 3)


@pytest.mark.parametrize("kind", ["atari", "mlp"])
def test_reward_model_per_action_output(kind: str) -> None:
    if kind == "atari":
        rm = make_reward_model("atari", ATARI_SHAPE, 9, generator=generator(0, "rm"))
        obs = _frames(2, 3)  # (B, H) segments
    else:
        rm = make_reward_model("mlp", (7,), 9, generator=generator(0, "rm"))
        obs = torch.randn(2, 3, 7, generator=generator(0, "obs"))
    rm.eval()
    r_BHA = rm(obs)
    assert r_BHA.shape == (2, 3, 9)
    actions = torch.tensor([[0, 4, 8], [1, 1, 2]])
    r_BH = reward(rm, obs, actions)
    assert r_BH.shape == (2, 3)
    torch.testing.assert_close(r_BH, r_BHA.gather(-1, actions.unsqueeze(-1)).squeeze(-1))


def test_atari_reward_model_architecture() -> None:
    rm = AtariRewardModel(ATARI_SHAPE, 6, batchnorm=True, leaky_slope=0.01)
    convs = [m for m in rm.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs] == [
        (7, 3, 16),
        (5, 2, 16),
        (3, 1, 16),
        (3, 1, 16),
    ]
    assert rm.fc.out_features == 64
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in rm.modules()) == 4
    assert rm(_frames(4)).shape == (4, 6)
    assert not any(
        isinstance(m, torch.nn.BatchNorm2d) for m in AtariRewardModel(ATARI_SHAPE, 6).modules()
    )


@pytest.mark.parametrize("kind", ["atari", "mlp"])
def test_dropout_active_in_train_only(kind: str) -> None:
    if kind == "atari":
        rm = AtariRewardModel(ATARI_SHAPE, 4, dropout_p=0.5, generator=generator(0, "rm"))
        obs = _frames(8)
    else:
        rm = MLPRewardModel(7, 4, dropout_p=0.5, generator=generator(0, "rm"))
        obs = torch.randn(8, 7, generator=generator(0, "obs"))
    rm.train()
    a = rm(obs, generator(0, "drop", 1))
    b = rm(obs, generator(0, "drop", 2))
    c = rm(obs, generator(0, "drop", 1))
    assert not torch.allclose(a, b)  # different masks
    assert torch.equal(a, c)  # the mask is a function of the generator
    rm.eval()
    e1, e2 = rm(obs, generator(0, "drop", 1)), rm(obs, generator(0, "drop", 2))
    assert torch.equal(e1, e2)
    rm.dropout_p = 0.0
    rm.train()
    assert torch.allclose(rm(obs), e1)  # eval mode = no dropout


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_actor_critic("transformer", (7,), 3)
    with pytest.raises(ValueError, match="obs_shape"):
        make_reward_model("mlp", (4, 84, 84), 3)
    with pytest.raises(ValueError, match="dropout_p"):
        make_reward_model("mlp", (7,), 3, dropout_p=1.0)


def test_nets_and_preference_import_only_torch() -> None:
    code = (
        "import sys, pbrl_dist.nets, pbrl_dist.core.preference;"
        "mods = ('gymnasium', 'ale_py', 'ray', 'omegaconf', 'wandb');"
        "bad = [m for m in mods if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_frames_to_float_is_the_plain_scaling_in_channels_last_memory() -> None:
    from pbrl_dist.nets.atari import frames_to_float

    obs = _frames(3, 2)
    x = frames_to_float(obs, ATARI_SHAPE)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, obs.reshape(-1, *ATARI_SHAPE).float() / 255.0)
    f = obs.float()  # float input is not modified in place
    frames_to_float(f, ATARI_SHAPE)
    assert torch.equal(f, obs.float())


@pytest.mark.parametrize("kind", ["actor_critic", "reward_model"])
def test_channels_last_nets_match_the_contiguous_layout(kind: str) -> None:
    """The layout is a speed choice only: outputs and gradients equal the plain NCHW network's."""
    import copy

    make = make_actor_critic if kind == "actor_critic" else make_reward_model
    net = make("atari", ATARI_SHAPE, 6, generator=generator(0, kind)).double()
    plain = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    assert net.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    net.eval()
    plain.eval()
    obs = _frames(4).double()

    def scalar(m: torch.nn.Module) -> torch.Tensor:
        out = m(obs)
        if isinstance(out, tuple):
            return out[0].logsumexp(-1).sum() + out[1].square().sum()
        return out.square().sum()

    ours, ref = scalar(net), scalar(plain)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    ours.backward()
    ref.backward()
    for (name, p), q in zip(net.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-14, msg=name)


@pytest.mark.parametrize("kind", ["atari", "mlp"])
def test_bfloat16_compute_keeps_float32_parameters_and_outputs(kind: str) -> None:
    """bf16 autocast: outputs are float32 and within bf16 rounding of the float32 network's."""
    shape = ATARI_SHAPE if kind == "atari" else (7,)
    obs = _frames(6) if kind == "atari" else torch.randn(6, 7, generator=generator(0, "x"))
    g = generator(0, "init")
    fp32 = make_actor_critic(kind, shape, 5, generator=g)
    bf16 = make_actor_critic(kind, shape, 5, compute_dtype="bfloat16")
    bf16.load_state_dict(fp32.state_dict())
    rm32 = make_reward_model(kind, shape, 5, generator=g).eval()
    rm16 = make_reward_model(kind, shape, 5, compute_dtype="bfloat16").eval()
    rm16.load_state_dict(rm32.state_dict())
    for a, b in zip(fp32(obs), bf16(obs), strict=True):
        assert b.dtype == torch.float32
        scale = a.abs().max()
        assert (a - b).abs().max() <= 0.03 * scale  # bf16 keeps 8 bits of mantissa (0.4 %)
        assert not torch.equal(a, b)  # it did run in bf16
    r32, r16 = rm32(obs), rm16(obs)
    assert r16.dtype == torch.float32
    assert (r32 - r16).abs().max() <= 0.03 * r32.abs().max()
    logits, value = bf16(obs)
    (logits.logsumexp(-1).sum() + value.sum()).backward()
    for p in bf16.parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32


def test_unknown_compute_dtype_names_the_argument() -> None:
    with pytest.raises(ValueError, match="compute_dtype"):
        make_actor_critic("mlp", (7,), 5, compute_dtype="float16")
