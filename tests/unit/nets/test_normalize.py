"""``nets.ObsNormalized``: running observation statistics held in the net's buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbrl_dist.nets import ObsNormalized, make_actor_critic


def test_running_statistics_equal_those_of_all_observations_seen() -> None:
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, generator=g) * 4 + 2 for n in (5, 17, 1, 40)]
    net = make_actor_critic("mlp", (3,), 2, normalize_obs=True, hidden=(8,))
    assert isinstance(net, ObsNormalized)
    for b in batches:
        net.update(b)
    seen = torch.cat(batches).double().numpy()
    np.testing.assert_allclose(net.obs_mean.numpy(), seen.mean(0), rtol=1e-12)
    np.testing.assert_allclose(net.obs_var.numpy(), seen.var(0), rtol=1e-12)
    assert float(net.obs_count) == len(seen)


def test_the_net_sees_clipped_normalised_observations_and_the_stats_travel_in_state_dict() -> None:
    net = make_actor_critic("mlp", (2,), 3, normalize_obs=True, hidden=(8,))
    net.update(torch.tensor([[0.0, 10.0], [2.0, 10.0]]))  # μ = (1, 10), σ² = (1, 0)
    z = net.normalize(torch.tensor([[3.0, 10.0], [1.0, 11.0]]))
    torch.testing.assert_close(z, torch.tensor([[2.0, 0.0], [0.0, 10.0]]))  # 1/√1e-8 clipped to 10
    other = make_actor_critic("mlp", (2,), 3, normalize_obs=True, hidden=(8,))
    other.load_state_dict(net.state_dict())  # what a rollout worker receives
    obs = torch.randn(4, 2)
    for a, b in zip(net(obs), other(obs), strict=True):
        assert torch.equal(a, b)


def test_atari_frames_are_not_normalised() -> None:
    with pytest.raises(ValueError, match="normalize_obs"):
        make_actor_critic("atari", (4, 84, 84), 6, normalize_obs=True)


def test_separate_trunks_give_the_value_its_own_layers_and_leave_the_shared_net_unchanged() -> None:
    def net(separate: bool) -> torch.nn.Module:
        return make_actor_critic(
            "mlp",
            (4,),
            2,
            hidden=(8, 8),
            separate=separate,
            generator=torch.Generator().manual_seed(1),
        )

    shared, split = net(False), net(True)
    assert split.value_trunk is not None and shared.value_trunk is None
    for name, p in shared.trunk.state_dict().items():  # same draws for the policy trunk
        assert torch.equal(p, split.trunk.state_dict()[name])
    obs = torch.randn(3, 4)
    torch.testing.assert_close(shared(obs)[0], split(obs)[0])  # same policy at init
    (v,) = torch.autograd.grad(
        split(obs)[1].sum(), list(split.trunk.parameters())[:1], allow_unused=True
    )
    assert v is None  # the value does not flow through the policy trunk
    with pytest.raises(ValueError, match="ac_separate_trunks"):
        make_actor_critic("grid", (10, 10, 4), 3, separate=True)
