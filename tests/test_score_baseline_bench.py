"""The variance split of ``python -m scgbench.bench.score_baseline``: closed forms on synthetic costs, and the
M-sample mean's share that must be subtracted."""

import torch

from scgbench.bench.score_baseline import linear_baseline, miss, variance_split


def _costs(b=20000, m=2, sigma=10.0, slope=3.0, seed=0):
    """f[b, j] = slope·u_b + σ·ε_bj: between-image variance slope²·Var(u) = 9, within-image σ² = 100."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, generator=g, dtype=torch.float64)
    return u, slope * u[:, None] + sigma * torch.randn(b, m, generator=g, dtype=torch.float64)


def test_the_split_recovers_the_within_and_between_image_variances():
    _, f = _costs()
    within, between = variance_split(f)
    assert abs(within - 100.0) < 3.0 and abs(between - 9.0) < 1.0
    # the control: without subtracting the 2-sample mean's share (σ²/M = 50) the between term is 59
    assert abs(float(f.mean(1).var()) - 59.0) < 2.0


def test_a_baseline_linear_in_the_feature_misses_nothing_and_a_constant_misses_the_between_term():
    u, f = _costs()
    fit, score = slice(0, 10000), slice(10000, None)
    assert abs(miss(f[score], linear_baseline(u[:, None], f.mean(1), fit, score))) < 1.0
    assert abs(miss(f[score], torch.full((10000,), float(f.mean()), dtype=f.dtype)) - 9.0) < 1.0
