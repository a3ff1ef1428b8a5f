"""Reward shaping (Sec. 2.2): the chain, the shaped lower MDP, the metrics and final_state.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbrl_dist.core import mdp
from pbrl_dist.problems import get_problem
from pbrl_dist.problems.shaping import ShapingConfig, ShapingProblem, build, make_chain

CFG = ShapingConfig(num_states=6, retrain_iters=20)


def test_chain_is_a_stochastic_sparse_reward_chain() -> None:
    P, r, rho = make_chain(CFG)
    S = CFG.num_states
    assert P.shape == (S, 2, S) and r.shape == (S, 2)
    torch.testing.assert_close(P.sum(-1), torch.ones(S, 2, dtype=torch.float64))
    assert r[S - 1, 1] == 1.0 and r[0, 0] == CFG.distractor and int((r != 0).sum()) == 2
    assert rho[0] == 1.0 and rho.sum() == 1.0
    # 'right' mostly moves right, slips stay below cfg.slip·1.5; another game perturbs the slips.
    assert bool((P[:-1, 1, 1:].diagonal() >= 1 - 1.5 * CFG.slip).all())
    assert torch.equal(make_chain(CFG)[0], P)
    assert not torch.equal(make_chain(ShapingConfig(num_states=6, game=1))[0], P)


def test_only_the_reward_depends_on_x_and_zero_x_is_no_shaping() -> None:
    prob = build(CFG)
    x0, _ = prob.init_params(seed=0, scale=0.5)
    assert torch.equal(x0, torch.zeros_like(prob.r_SA))
    P, r0 = prob.lower_mdp(x0)
    torch.testing.assert_close(r0, prob.r_SA)
    x = torch.randn(prob.r_SA.shape, dtype=torch.float64)
    P1, r1 = prob.lower_mdp(x)
    assert P1 is P
    torch.testing.assert_close(r1, prob.r_SA + CFG.shaping_scale * torch.tanh(x))
    assert float((r1 - prob.r_SA).abs().max()) <= CFG.shaping_scale


def test_upper_objective_is_minus_the_sparse_task_return_and_differentiable_in_y() -> None:
    prob = build(CFG)
    x, y = prob.init_params(seed=1, scale=0.5)
    y = y.requires_grad_(True)
    f = prob.upper_objective(x, y)
    torch.testing.assert_close(f, -prob.task_return(torch.softmax(y, -1)))
    (g,) = torch.autograd.grad(f, (y,))
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_gap_is_zero_at_the_soft_optimal_policy_of_the_shaped_mdp() -> None:
    prob = build(CFG)
    x = torch.randn(
        prob.r_SA.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    P, r = prob.lower_mdp(x)
    opt = mdp.soft_policy_iteration(P, r, prob.gamma, prob.tau)
    y_star = torch.log(opt.pi_SA)
    assert prob.metrics(x, y_star)["lower/gap"] == pytest.approx(0.0, abs=1e-9)
    assert prob.metrics(x, torch.zeros_like(y_star))["lower/gap"] > 0


def test_final_state_recomputes_the_metrics() -> None:
    prob = build(CFG)
    x, y = prob.init_params(seed=2, scale=0.5)
    m = prob.metrics(x, y)
    z = prob.final_state(x, y)
    assert set(m) == {
        "upper/task_return",
        "lower/gap",
        "upper/retrain_shaped_return",
        "upper/retrain_sparse_return",
    }
    pi = torch.as_tensor(z["pi"])
    v, _ = mdp.evaluate_policy(
        torch.as_tensor(z["P"]), torch.as_tensor(z["r"]), pi, float(z["gamma"]), 0.0
    )
    assert float(mdp.expected_value(v, torch.as_tensor(z["rho"]))) == pytest.approx(
        float(z["task_return"]), abs=1e-12
    )
    np.testing.assert_allclose(z["r_shaped"], z["r"] + CFG.shaping_scale * np.tanh(z["x"]))


def test_retraining_off_drops_those_metrics_and_mc_is_refused() -> None:
    prob = ShapingProblem(ShapingConfig(num_states=4, retrain_iters=0))
    x, y = prob.init_params(seed=0, scale=0.5)
    assert set(prob.metrics(x, y)) == {"upper/task_return", "lower/gap"}
    with pytest.raises(ValueError, match="estimator=exact only"):
        prob.mc_chunk(x, y, None, parts=("joint",), num_rollouts=1, horizon=2, seed=0)


def test_config_checks_and_registration() -> None:
    bad = {
        k for k, ok, _ in ShapingConfig(num_states=1, slip=0.6, shaping_scale=0).checks() if not ok
    }
    assert bad == {"problem.num_states", "problem.slip", "problem.shaping_scale"}
    spec = get_problem("shaping")
    assert spec is not None and spec.config is ShapingConfig and spec.build is build
    assert spec.algos == ("pbrl", "indep_pg") and spec.progress[0] in spec.higher_is_better
