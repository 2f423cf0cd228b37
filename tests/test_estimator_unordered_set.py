"""The unordered set estimator (Kool, van Hoof, Welling 2020; scgbench/estimators/unordered_set.py): its sampler, its
set probabilities and ratios against brute force, and its gradient against the exact one by enumeration, with
controls that must fail the same check."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scgbench.estimators import COST_ORACLE, Objective, compatibility, get_estimator, get_estimator_class
from scgbench.estimators import unordered_set as us
from scgbench.estimators.exact import configurations
from enumeration import exact, table_problem


def draws(est, theta, cost, m: int):
    """m independent draws (one per batch row) of the estimate of E[f] [m] and of the gradient [m, N, K]."""
    params = theta.expand(m, *theta.shape).clone().requires_grad_(True)
    e = est.train().estimate(params, Objective(sample_cost=None, cost=cost, provides=frozenset({COST_ORACLE})))
    e.loss.backward()
    return e.cost.detach(), params.grad * m  # the surrogate is a mean over the batch


def z_scores(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    se = samples.std(0) / math.sqrt(len(samples))
    return ((samples.mean(0) - target).abs() / se.clamp_min(1e-12)).reshape(-1)


# -- set probabilities ----------------------------------------------------------------------------------------------
def brute_set_probability(p: torch.Tensor, subset) -> float:
    """p(S) of an unordered set under sampling without replacement: Σ over orderings of the Plackett-Luce product."""
    total = 0.0
    for order in itertools.permutations(subset):
        prob, used = 1.0, 0.0
        for i in order:
            prob *= float(p[i]) / (1.0 - used)
            used += float(p[i])
        total += prob
    return total


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_set_probabilities_sum_to_one_and_match_the_orderings(k):
    p = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(k), dtype=torch.float64), 0)
    subsets = list(itertools.combinations(range(6), k))
    log_p = p.log()[torch.tensor(subsets)]                               # [C(6,k), k]
    log_q = us.subset_log_probabilities(log_p)
    p_set = log_q[:, -1].exp()
    assert float(p_set.sum()) == pytest.approx(1.0, abs=1e-12)
    for row, s in enumerate(subsets[:8]):
        assert float(p_set[row]) == pytest.approx(brute_set_probability(p, s), rel=1e-10)
    # R(S, s) = p^{D∖s}(S∖s) / p(S) and R^{D∖s}(S, s') against brute force in the renormalised domains
    log_r1, log_r2 = us.log_ratios(log_p)
    row = len(subsets) // 2
    s = subsets[row]
    for a in range(k):
        pa = p.clone(); pa[s[a]] = 0; pa = pa / pa.sum()
        rest = [x for i, x in enumerate(s) if i != a]
        loo = brute_set_probability(pa, rest)
        assert float(log_r1[row, a].exp()) == pytest.approx(loo / brute_set_probability(p, s), rel=1e-10)
        assert float(log_r2[row, a, a]) == 0.0
        for b in range(k):
            if b != a:
                pab = pa.clone(); pab[s[b]] = 0; pab = pab / pab.sum()
                rest2 = [x for i, x in enumerate(s) if i not in (a, b)]
                assert float(log_r2[row, a, b].exp()) == pytest.approx(brute_set_probability(pab, rest2) / loo,
                                                                     rel=1e-10)


def set_frequency_z(codes: torch.Tensor, logq: torch.Tensor, k: int) -> float:
    """The largest |frequency − p(S)| / s.e. over the unordered k-sets of a small product domain, from sets
    ``codes`` [M, k, N] drawn without replacement from p = Π_n softmax (``logq`` [N, K])."""
    n, kk = logq.shape
    flat = (codes * kk ** torch.arange(n - 1, -1, -1)).sum(-1)           # configuration index
    assert (flat.sort(-1).values.diff(dim=-1) > 0).all()                  # without replacement
    joint = logq[torch.arange(n), configurations(n, kk)].sum(-1)          # [K^N]
    sets = list(itertools.combinations(range(kk ** n), k))
    key = {s: i for i, s in enumerate(sets)}
    idx = torch.tensor([key[tuple(r)] for r in flat.sort(-1).values.tolist()])
    freq = torch.bincount(idx, minlength=len(sets)).double() / len(codes)
    p_set = us.subset_log_probabilities(joint[torch.tensor(sets)])[:, -1].exp()
    assert float(p_set.sum()) == pytest.approx(1.0, abs=1e-12)
    return float(((freq - p_set).abs() / (p_set * (1 - p_set) / len(codes)).sqrt()).max())


def drawn_set_z(sampler, theta, seed: int, m: int = 40_000, k: int = 3) -> float:
    """Draw ``m`` k-sets with ``sampler`` from p = Π_n softmax(``theta``), check each draw's log p(c), and return
    :func:`set_frequency_z` of the sets."""
    torch.manual_seed(seed)
    logq = torch.log_softmax(torch.tensor(theta, dtype=torch.float64), -1)
    codes, log_p = sampler(logq.expand(m, *logq.shape), k)
    assert torch.allclose(log_p, logq[torch.arange(len(logq)), codes].sum(-1))
    return set_frequency_z(codes, logq, k)


def test_gumbel_top_k_over_the_product_space_draws_sets_with_their_probability():
    """Stochastic beam search over 2 nodes × 3 categories: each unordered 3-set's frequency matches p(S)."""
    assert drawn_set_z(us.gumbel_top_k_product, [[0.5, -0.3, 1.0], [0.0, 0.8, -1.2]], seed=0) < 4.5


def test_distinct_iid_draws_are_a_sample_without_replacement_with_a_control_that_fails():
    """The first k distinct configurations of i.i.d. draws: at a concentrated p (duplicates at almost every step, so
    the stream goes on past its first round) each 3-set's frequency matches p(S); the control, redrawing all k until
    they are distinct (i.i.d. draws conditioned on distinctness), does not."""
    theta = [[2.0, -0.3, 0.5], [0.0, 1.8, -1.2]]
    assert drawn_set_z(us.distinct_draws, theta, seed=6) < 4.5

    def redraw_until_distinct(lq, k):
        out = torch.empty(len(lq), k, lq.shape[1], dtype=torch.long)
        todo = torch.arange(len(lq))
        while len(todo):
            d = torch.distributions.Categorical(logits=lq[todo, None].expand(-1, k, -1, -1)).sample()
            ok = us.all_distinct(us.configuration_keys(d, lq.shape[-1]))
            out[todo[ok]] = d[ok]
            todo = todo[~ok]
        return out, lq.gather(2, out.transpose(1, 2)).sum(1)

    assert drawn_set_z(redraw_until_distinct, theta, seed=6) > 4.5


def test_the_sampler_sends_flat_rows_to_the_draws_and_concentrated_rows_to_the_beam(monkeypatch):
    """k·max p(s) ≤ 1/2 (here 3 uniform binary nodes, max p(s) = 1/8, k = 2) → i.i.d. draws; a concentrated row →
    the beam; a mixed batch puts each row's exact sample back in its place."""
    torch.manual_seed(7)
    flat = torch.log_softmax(torch.zeros(3, 2, dtype=torch.float64), -1)
    peaked = torch.log_softmax(torch.tensor([[3.0, 0.0], [0.0, 2.5], [1.0, 0.0]], dtype=torch.float64), -1)
    routed = []
    for name in ("distinct_draws", "gumbel_top_k_product"):
        real = getattr(us, name)
        monkeypatch.setattr(us, name, lambda lq, k, real=real, name=name: routed.append((name, len(lq))) or real(lq, k))
    m, k = 20_000, 2
    batch = torch.stack([flat, peaked]).repeat(m, 1, 1)                  # rows alternate flat, peaked
    codes, log_p = us.sample_without_replacement(batch, k)
    assert routed == [("gumbel_top_k_product", m), ("distinct_draws", m)]
    assert torch.allclose(log_p, batch.gather(2, codes.transpose(1, 2)).sum(1))
    assert set_frequency_z(codes[0::2], flat, k) < 4.5
    assert set_frequency_z(codes[1::2], peaked, k) < 4.5
    routed.clear()
    us.sample_without_replacement(flat.expand(5, 3, 2), 3)               # k·max p(s) = 3/8
    us.sample_without_replacement(flat.expand(5, 3, 2), 5)               # 5/8
    assert routed == [("distinct_draws", 5), ("gumbel_top_k_product", 5)]


def test_configuration_keys_are_equal_exactly_for_equal_configurations():
    g = torch.Generator().manual_seed(8)
    for n, kk in ((200, 2), (37, 10), (5, 3)):
        codes = torch.randint(0, kk, (64, n), generator=g)
        codes[1::2] = codes[0::2]                                           # half the pairs equal
        codes[3, -1] = (codes[2, -1] + 1) % kk                              # and one differing in its last node only
        keys = us.configuration_keys(codes, kk)
        same = (keys[:, None] == keys[None]).all(-1)
        assert torch.equal(same, (codes[:, None] == codes[None]).all(-1))


# -- the estimator --------------------------------------------------------------------------------------------------
def test_unbiased_for_the_gradient_and_the_value_with_controls_that_fail(monkeypatch):
    torch.manual_seed(1)
    theta, table, cost = table_problem(3, 3, seed=2)
    value, grad = exact(theta, table)
    est = get_estimator("unordered-set", k=4)
    vals, grads = draws(est, theta, cost, 20_000)
    assert float(z_scores(vals[:, None], torch.tensor([value], dtype=vals.dtype)).max()) < 4
    assert float(z_scores(grads, grad).max()) < 4
    # the baseline really reduces the variance of the plain unordered set estimator (Eq. 9)
    _, plain = draws(get_estimator("unordered-set", k=4, baseline=False), theta, cost, 20_000)
    assert float(z_scores(plain, grad).max()) < 4
    assert float(grads.var(0).sum()) < 0.5 * float(plain.var(0).sum())

    # control 1: the baseline without its diagonal term R^{D∖s}(S, s) = 1 (B_s no longer has mean E[f] for each s)
    real = us.log_ratios

    def no_diagonal(log_p):
        r1, r2 = real(log_p)
        return r1, r2 - torch.diag(torch.full((r2.shape[-1],), float("inf"), dtype=r2.dtype))

    monkeypatch.setattr(us, "log_ratios", no_diagonal)
    _, bad = draws(est, theta, cost, 20_000)
    assert float(z_scores(bad, grad).max()) > 4
    # control 2: the wrong leave-one-out ratio, R(S, s) = 1/p(S) (the k elements weighted as if drawn with
    # replacement from their own set's probability)
    monkeypatch.setattr(us, "log_ratios", lambda log_p: (lambda r1, r2: (
        torch.zeros_like(r1) - us.subset_log_probabilities(log_p)[:, -1:], r2))(*real(log_p)))
    _, bad = draws(est, theta, cost, 20_000)
    assert float(z_scores(bad, grad).max()) > 4


def test_k_equal_to_the_domain_is_the_exact_gradient_and_k_one_is_reinforce():
    torch.manual_seed(3)
    theta, table, cost = table_problem(2, 3, seed=4)
    value, grad = exact(theta, table)
    vals, grads = draws(get_estimator("unordered-set", k=9), theta, cost, 50)
    assert torch.allclose(vals, torch.full_like(vals, value), atol=1e-10)
    assert torch.allclose(grads, grad.expand_as(grads), atol=1e-10)     # every draw: zero variance
    # k = 1: the single sample's ∇log p(s)·f(s); reproduce the sample from the same noise
    est = get_estimator("unordered-set", k=1)
    torch.manual_seed(5)
    vals, grads = draws(est, theta, cost, 200)
    torch.manual_seed(5)
    codes, _ = us.sample_without_replacement(torch.log_softmax(theta, -1).expand(200, 2, 3), 1)
    z = torch.nn.functional.one_hot(codes[:, 0], 3).double()             # [200, N, K]
    f = cost(z[:, None])[:, 0]
    assert torch.allclose(vals, f)
    assert torch.allclose(grads, (z - torch.softmax(theta, -1)) * f[:, None, None])


def test_counts_k_evaluations_and_refuses_what_it_cannot_serve():
    theta, _, cost = table_problem(2, 3)
    calls = []
    est = get_estimator("unordered-set", k=5)
    est.estimate(theta.expand(7, 2, 3), Objective(None, lambda z: calls.append(z.shape) or cost(z),
                                                  provides=frozenset({COST_ORACLE})))
    assert calls == [torch.Size([7, 5, 2, 3])] and est.evaluations(2, 3) == 5
    why = compatibility(get_estimator_class("unordered-set"), provides={COST_ORACLE}, num_nodes=2, num_categories=3,
                        options={"k": 10})
    assert "k=9" in why
    assert "cost-oracle" in compatibility(get_estimator_class("unordered-set"), provides=frozenset(),
                                          num_categories=3)
    for bad in (0, 17, 2.5):
        with pytest.raises(ValueError, match="k=4"):
            get_estimator_class("unordered-set")(k=bad)
    assert get_estimator_class("unordered-set").options_for_evaluations(6, 2, 3) == {"k": 6}
    assert get_estimator_class("unordered-set").options_for_evaluations(60, 2, 3) == {"k": 9}


@pytest.mark.parametrize("k", [4, 6])
def test_masked_categories_are_never_in_the_set_and_k_covering_the_support_is_exact(k):
    """−inf logits: a set as large as the 4 configurations of positive probability (or larger: the rest are drawn
    at −inf) is the whole support, so the gradient is the exact one, finite, with 0 for the masked entries."""
    theta, table, cost = table_problem(2, 3, seed=6)
    theta[0, 2] = theta[1, 0] = float("-inf")
    value, grad = exact(theta, table)
    grad = grad.nan_to_num()
    vals, grads = draws(get_estimator("unordered-set", k=k), theta, cost, 40)
    assert torch.isfinite(grads).all() and torch.allclose(grads, grad.expand_as(grads), atol=1e-10)
    assert torch.allclose(vals, torch.full_like(vals, value), atol=1e-10)
