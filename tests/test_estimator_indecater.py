"""IndeCateR (De Smet, Sansone, Zuidberg Dos Martires 2023; scgbench/estimators/indecater.py): exact for one node,
unbiased against the exact gradient by enumeration with a control that must fail, the binary form for K = 2, and
its decoder evaluations counted call by call."""

from __future__ import annotations

import math

import pytest
import torch

from scgbench.estimators import COST_ORACLE, Objective, compatibility, get_estimator, get_estimator_class
from scgbench.estimators import indecater as ic
from enumeration import exact, table_problem


def objective(cost) -> Objective:
    return Objective(sample_cost=None, cost=cost, provides=frozenset({COST_ORACLE}))


def draws(est, theta, cost, m: int):
    """m independent draws (one per batch row) of the cost [m] and of the gradient [m, N, K]."""
    params = theta.expand(m, *theta.shape).clone().requires_grad_(True)
    e = est.train().estimate(params, objective(cost))
    e.loss.backward()
    return e.cost.detach(), params.grad * m  # the surrogate is a mean over the batch


def z_scores(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    se = samples.std(0) / math.sqrt(len(samples))
    return ((samples.mean(0) - target).abs() / se.clamp_min(1e-12)).reshape(-1)


def test_one_node_is_the_exact_gradient_with_zero_variance():
    theta, table, cost = table_problem(1, 4, seed=1)
    _, grad = exact(theta, table)
    _, grads = draws(get_estimator("indecater", samples=1), theta, cost, 64)
    assert torch.allclose(grads, grad.expand_as(grads), atol=1e-12)


def test_unbiased_against_enumeration_with_a_control_that_fails(monkeypatch):
    torch.manual_seed(0)
    theta, table, cost = table_problem(3, 3, seed=2)
    value, grad = exact(theta, table)
    vals, grads = draws(get_estimator("indecater", samples=2), theta, cost, 20_000)
    assert float(z_scores(grads, grad).max()) < 4
    assert float(z_scores(vals[:, None], torch.tensor([value], dtype=vals.dtype)).max()) < 4
    # control: the alternatives' costs filed under the wrong categories ((z_d − j) mod K instead of (z_d + j)),
    # an indexing slip that K = 2 cannot show and K = 3 must
    real = ic.cost_table
    monkeypatch.setattr(ic, "cost_table", lambda codes, fb, fa, k: real(codes, fb, fa.flip(-1), k))
    _, bad = draws(get_estimator("indecater", samples=2), theta, cost, 20_000)
    assert float(z_scores(bad, grad).max()) > 4


def test_binary_nodes_match_the_bernoulli_form():
    """K = 2: the gradient equals the authors' binary form Σ_d σ(α_d)F_{d,1} + (1 − σ(α_d))F_{d,0}, α = θ₁ − θ₀,
    with F from the same base samples."""
    theta, table, cost = table_problem(3, 2, seed=5)
    seen = []

    def recording(z):
        seen.append(z.detach().clone())
        return cost(z)

    est = get_estimator("indecater", samples=3)
    params = theta.expand(4, 3, 2).clone().requires_grad_(True)
    est.train().estimate(params, objective(recording)).loss.backward()
    base = seen[0].argmax(-1)                                         # [B, S, N]
    powers = 2 ** torch.arange(2, -1, -1)
    f1 = torch.stack([table[(base.clone().index_fill_(-1, torch.tensor([d]), 1) * powers).sum(-1)] for d in range(3)],
                     -1).mean(1)                                      # [B, N]: node d set to 1
    f0 = torch.stack([table[(base.clone().index_fill_(-1, torch.tensor([d]), 0) * powers).sum(-1)] for d in range(3)],
                     -1).mean(1)
    t = theta.expand(4, 3, 2).clone().requires_grad_(True)
    s = torch.sigmoid(t[..., 1] - t[..., 0])
    ((s * f1 + (1 - s) * f0).sum(-1).mean()).backward()
    assert torch.allclose(params.grad, t.grad, atol=1e-12)


@pytest.mark.parametrize("n,k,s,chunk", [(3, 4, 2, 65_536), (5, 3, 1, 7), (2, 2, 3, 1)])
def test_counts_exactly_the_decoder_evaluations_it_reports(n, k, s, chunk):
    theta, _, cost = table_problem(n, k)
    rows = []
    est = get_estimator("indecater", samples=s, chunk_size=chunk)
    b = 6
    e = est.estimate(theta.expand(b, n, k), objective(lambda z: rows.append(z.shape[0] * z.shape[1]) or cost(z)))
    assert sum(rows) == b * e.evaluations == b * s * (n * (k - 1) + 1) == b * est.evaluations(n, k)
    assert max(rows[1:], default=0) <= max(chunk, b)                   # the alternatives come in chunks


def test_options_are_checked_and_matched_to_an_evaluation_budget():
    cls = get_estimator_class("indecater")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="samples=2"):
            cls(samples=bad)
    assert "cost-oracle" in compatibility(cls, provides=frozenset(), num_categories=10)
    assert cls.options_for_evaluations(400, 20, 10) == {"samples": 2}  # 2 · (20·9 + 1) = 362 ≤ 400
    assert cls.options_for_evaluations(180, 20, 10) is None              # one base sample costs 181
