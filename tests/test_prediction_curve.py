"""The accuracy-prediction curve (scgbench.metrics.prediction) and its figure, on synthetic embeddings."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression

from scgbench.metrics.prediction import (PREDICTION_STREAM, SparseGP, capped_sizes, curve_scalars, gp_nll,
                                         prediction_curve)
from scgbench.seeding import numpy_rng


def linear_data(n, d=6, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(99).normal(size=d)
    e = rng.normal(size=(n, d))
    return e, 0.9 + 0.01 * e @ w + rng.normal(0, noise, n)


def test_rmse_falls_with_size_and_tau_approaches_one():
    noise = 0.002
    x, y = linear_data(1600, noise=noise, seed=0)
    xt, yt = linear_data(400, noise=noise, seed=1)
    c = prediction_curve(x, y, xt, yt, sizes=(10, 100, 1000))
    assert c["sizes"] == [10, 100, 1000] and c["n_train"] == 1600 and c["n_test"] == 400
    r, t = c["rmse"], c["kendall_tau"]
    assert r[0] > r[1] > r[2], r
    assert r[2] < 1.3 * noise  # down to the noise floor
    assert r[0] > 1.5 * noise
    assert t[0] < t[1] < t[2] and t[2] > 0.9, t
    # the noise-free ranking is what limits τ: targets without noise are ranked almost perfectly
    clean = prediction_curve(x, 0.01 * x @ np.random.default_rng(99).normal(size=6), xt,
                             0.01 * xt @ np.random.default_rng(99).normal(size=6), sizes=(500,))
    assert clean["kendall_tau"][0] > 0.98
    assert "sparse GP" in c["regressor"]


def test_rmse_and_tau_are_their_definitions_on_a_known_case():
    # a constant (training-mean) prediction: mean(1, 3) = 2 against 0, 2, 4, 6 -> errors 2, 0, -2, -4
    x, y = np.array([[0.0], [1.0]]), np.array([1.0, 3.0])
    xt, yt = np.zeros((4, 1)), np.array([0.0, 2.0, 4.0, 6.0])
    c = prediction_curve(x, y, xt, yt, sizes=(2,), regressor=DummyRegressor())
    assert c["rmse"] == [pytest.approx(np.sqrt((4 + 0 + 4 + 16) / 4))]
    assert c["kendall_tau"] == [0.0]  # constant predictions rank nothing
    # an exact linear fit: RMSE 0 and τ 1; reversing the targets' order gives τ = -1
    x = np.arange(10.0)[:, None]
    xt = np.array([[2.5], [7.0], [-1.0], [4.0]])
    c = prediction_curve(x, 3 * x[:, 0] + 1, xt, 3 * xt[:, 0] + 1, sizes=(5,), regressor=LinearRegression())
    assert c["rmse"][0] == pytest.approx(0, abs=1e-9) and c["kendall_tau"][0] == pytest.approx(1.0)
    c = prediction_curve(x, 3 * x[:, 0] + 1, xt, -xt[:, 0], sizes=(5,), regressor=LinearRegression())
    assert c["kendall_tau"][0] == pytest.approx(-1.0)
    # τ-b with ties: scipy's value on (1, 2, 2, 3) vs (1, 3, 2, 4) is 0.9128709…
    x = np.array([[1.0], [2.0], [2.0], [3.0]])
    c = prediction_curve(x, x[:, 0], x, np.array([1.0, 3.0, 2.0, 4.0]), sizes=(4,), regressor=LinearRegression())
    assert c["kendall_tau"][0] == pytest.approx(0.9128709291752769)
    assert c["rmse"][0] == pytest.approx(np.sqrt(np.mean((x[:, 0] - [1, 3, 2, 4]) ** 2)))


SEEN: list = []


class Recorder(BaseEstimator, RegressorMixin):
    def fit(self, x, y):
        SEEN.append(np.array(x))
        return self

    def predict(self, x):
        return np.arange(len(x), dtype=float)


def test_training_subsets_are_nested_and_drawn_from_the_seeded_stream():
    SEEN.clear()
    n = 50
    x = np.c_[np.arange(n, dtype=float), np.ones(n)]  # column 0 identifies the cell; column 1 is constant
    y = np.random.default_rng(0).normal(size=n)
    c = prediction_curve(x, y, x[:5], y[:5], sizes=(40, 5, 20, 500), seed=3, regressor=Recorder())
    assert c["sizes"] == [5, 20, 40, 50]  # ascending, capped at what is available
    order = numpy_rng(3, PREDICTION_STREAM).permutation(n)
    for k, seen in zip(c["sizes"], SEEN):
        ids = order[:k].astype(float)
        assert np.allclose(seen[:, 0], (ids - ids.mean()) / ids.std())  # standardised on the subset
        assert np.all(seen[:, 1] == 0.0)  # a constant column stays finite (0)
    SEEN.clear()
    prediction_curve(x, y, x[:5], y[:5], sizes=(5,), seed=4, regressor=Recorder())
    assert not np.allclose(SEEN[0][:, 0], (order[:5] - order[:5].mean()) / order[:5].std())


def test_bad_input_is_refused():
    x, y = linear_data(30)
    with pytest.raises(ValueError, match="non-finite"):
        prediction_curve(x, np.r_[y[:-1], np.nan], x, y)
    with pytest.raises(ValueError, match="dimensions"):
        prediction_curve(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match=">= 2"):
        prediction_curve(x, y, x, y, sizes=(1, 10))
    with pytest.raises(ValueError, match="unknown regressor"):
        prediction_curve(x, y, x, y, regressor="svm")
    assert capped_sizes((100, 1000, 10000), 800) == [100, 800]


def test_sparse_gp_is_the_exact_gp_up_to_the_inducing_count_and_the_sor_mean_beyond():
    from scgbench.metrics.prediction import rbf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.05 * rng.normal(size=300)
    y = (y - y.mean()) / y.std()
    xt = rng.normal(size=(50, 3))
    exact = SparseGP(inducing=300).fit(x, y)
    k = rbf(x, x, exact.length_scale_, exact.signal_) + (exact.noise_ + 1e-8) * np.eye(300)
    want = rbf(xt, x, exact.length_scale_, exact.signal_) @ np.linalg.solve(k, y)
    assert np.allclose(exact.predict(xt), want, atol=1e-8)
    # beyond the inducing count: k_*m (σ² K_mm + K_mn K_nm)⁻¹ K_mn y, the first 100 rows the inducing points
    sparse = SparseGP(inducing=100).fit(x, y)
    ls, sf2, sn2 = sparse.length_scale_, sparse.signal_, sparse.noise_
    z = x[:100]
    kmn = rbf(z, x, ls, sf2)
    kmm = rbf(z, z, ls, sf2) + 1e-6 * sf2 * np.eye(100)  # with the implementation's jitter
    sor = rbf(xt, z, ls, sf2) @ np.linalg.solve(sn2 * kmm + kmn @ kmn.T, kmn @ y)
    assert np.allclose(sparse.predict(xt), sor, atol=1e-3)  # the naive solve is less well conditioned
    # and on a smooth, well-determined function it is close to the exact GP
    assert np.sqrt(np.mean((sparse.predict(xt) - want) ** 2)) < 0.1


def test_marginal_likelihood_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    y = np.sin(x[:, 0]) + 0.1 * rng.normal(size=30)
    theta = rng.normal(size=5) * 0.3
    _, g = gp_nll(theta, x, y)
    num = [(gp_nll(theta + e, x, y)[0] - gp_nll(theta - e, x, y)[0]) / 2e-6 for e in np.eye(5) * 1e-6]
    assert np.allclose(g, num, rtol=1e-4, atol=1e-6)


def test_curve_scalars_and_figure(tmp_path):
    import json

    from scgbench.figures import plot_prediction_curve, prediction_curve_figure, svg

    c = {"sizes": [100, 1000], "rmse": [0.02, 0.01], "kendall_tau": [0.4, 0.7], "n_test": 50, "n_train": 2000,
         "regressor": "sparse GP", "seed": 0}
    assert curve_scalars(c) == {"test/pred_curve_rmse_100": 0.02, "test/pred_curve_kendall_tau_100": 0.4,
                                "test/pred_curve_rmse_1000": 0.01, "test/pred_curve_kendall_tau_1000": 0.7}
    out = prediction_curve_figure(c, tmp_path / "figures" / "pred_curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "figures" / "pred_curve.json").read_text()) == c
    text = svg(plot_prediction_curve({"run $a$": c, "run b": c}), "pc")
    assert text.startswith("<svg") and "run $a$" in text and "Kendall" in text and "RMSE" in text
    assert "1,000" in text and "mathdefault" not in text  # plain size labels on the log axis
    assert [p.name for p in tmp_path.rglob("*.part*")] == []
