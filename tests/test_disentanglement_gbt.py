"""QuantisedGBT (the histogram GradientBoostingClassifier behind DCI) against sklearn's estimator: same
importances (atol 1e-9) and identical predictions on the training data and on held-out data with unseen
in-between values, for binary and 3-/12-class problems on quantised features (8–64 levels), with a constant
feature and a 2-sample class; duplicated features (exact ties) change only how the importance is split
between the copies; continuous or too-closely spaced features fall back to sklearn. The data sets are
chosen free of tied splits (asserted), which sklearn breaks by its random feature order."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from scgbench.metrics.disentanglement import gbt
from scgbench.metrics.disentanglement.dci import compute_importance_gbt
from scgbench.metrics.disentanglement.gbt import QuantisedGBT


def quantised(seed, n, levels, n_classes, noise=0.5, n_test=400):
    """Features on a grid of ``levels[j]`` values in [-1, 1]; classes = quantiles of a noisy mix of the
    first three features."""
    rng = np.random.RandomState(seed)
    levels = np.asarray(levels)
    X = rng.randint(0, 1 << 20, size=(n + n_test, levels.size)) % levels / (levels - 1.0) * 2 - 1
    latent = X[:, 0] + 0.7 * X[:, 1] - 0.5 * X[:, 2] + noise * rng.randn(n + n_test)
    y = np.digitize(latent, np.quantile(latent, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X[:n], y[:n], X[n:], y[n:]


def held_out(X_test, levels, seed=99):
    """Test points plus unseen values: uniform in [-1.1, 1.1] and the midpoints between grid values."""
    rng = np.random.RandomState(seed)
    m, F = 300, len(levels)
    mids = np.stack([((rng.randint(0, L - 1, m) + 0.5) / (L - 1.0)) * 2 - 1 for L in levels], axis=1)
    return np.concatenate([X_test, rng.uniform(-1.1, 1.1, (m, F)), mids])


def assert_same_model(ours, ref, X, X_new):
    assert ours.fallback_reason_ is None
    np.testing.assert_allclose(ours.feature_importances_, ref.feature_importances_, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_array_equal(ours.train_predict(), ref.predict(X))
    np.testing.assert_array_equal(ours.predict(X_new), ref.predict(X_new))
    np.testing.assert_allclose(ours.decision_function(X_new), ref.decision_function(X_new), rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed, n, levels, n_classes, params", [
    (0, 1000, [8, 16, 8, 32, 64], 2, {}),  # binary: one tree per stage
    (1, 1500, [16, 8, 8, 64, 8], 3, {}),
    (0, 1500, [8, 8, 16, 8, 64], 12, {"n_estimators": 30}),
    (1, 1500, [16, 8, 8, 64, 8], 3, {"n_estimators": 30, "max_depth": 2, "learning_rate": 0.3}),
])
def test_matches_sklearn(seed, n, levels, n_classes, params, monkeypatch):
    X, y, Xt, _ = quantised(seed, n, levels, n_classes)
    if n_classes == 2:
        y = 2 * y - 1  # labels -1, 1
    else:  # the sample → child step without the [n, bins] comparison table
        monkeypatch.setattr(gbt, "RIGHT_TABLE_BYTES", 0)
    ours = QuantisedGBT(random_state=0, **params).fit(X, y)
    assert ours.n_tied_nodes_ == 0  # precondition: sklearn's choice is then determined by the data
    ref = GradientBoostingClassifier(random_state=0, **params).fit(X, y)
    assert_same_model(ours, ref, X, held_out(Xt, levels))
    assert np.array_equal(ours.decision_function(X).reshape(len(X), -1), ours.train_raw_predictions_)


def test_constant_feature_tiny_class_and_labels():
    levels = [16, 8, 8, 64, 8]
    X, y, Xt, _ = quantised(1, 1500, levels, 3)
    X = np.hstack([X, np.full((len(X), 1), 0.25)])  # a constant code never splits
    X_new = held_out(Xt, levels)
    X_new = np.hstack([X_new, np.random.RandomState(1).uniform(-1, 1, (len(X_new), 1))])
    y = np.array(["a", "b", "c", "tiny"])[y]
    y[[5, 17]] = "tiny"  # a 2-sample class: its tree's nodes turn pure
    ours = QuantisedGBT(random_state=0).fit(X, y)
    assert ours.n_tied_nodes_ == 0
    ref = GradientBoostingClassifier(random_state=0).fit(X, y)
    assert_same_model(ours, ref, X, X_new)
    assert ours.feature_importances_[-1] == 0.0


def test_duplicated_feature_ties_only_move_importance_between_copies():
    X, y, Xt, _ = quantised(0, 1000, [8, 16, 8, 32, 64], 2)
    X2, Xt2 = np.hstack([X, X[:, :1]]), np.hstack([Xt, Xt[:, :1]])
    ours = QuantisedGBT(random_state=0).fit(X2, y)
    ref = GradientBoostingClassifier(random_state=0).fit(X2, y)
    assert ours.n_tied_nodes_ > 0  # every split on code 0 could be taken on its copy as well
    np.testing.assert_array_equal(ours.train_predict(), ref.predict(X2))
    np.testing.assert_array_equal(ours.predict(Xt2), ref.predict(Xt2))
    imp, imp_ref = ours.feature_importances_, ref.feature_importances_
    np.testing.assert_allclose(imp[1:5], imp_ref[1:5], rtol=0, atol=1e-9)
    assert imp[0] + imp[5] == pytest.approx(imp_ref[0] + imp_ref[5], abs=1e-9)
    assert imp[0] > 0 and imp[5] > 0  # ties are broken by a random feature order, not always the first


@pytest.mark.parametrize("make_x", [
    lambda rng: rng.randn(1000, 3),  # continuous: > 256 distinct values
    lambda rng: np.where(rng.rand(1000, 3) < 0.5, np.float32(1), np.nextafter(np.float32(1), np.float32(2)))
    * rng.randint(1, 4, (1000, 3)),  # values one float32 ulp apart: sklearn never splits between them
    lambda rng: rng.randint(0, 8, (400, 3)) / 7.0,  # quantised but small: sklearn decides its own ties
])
def test_fallback_is_sklearn(make_x):
    rng = np.random.RandomState(0)
    X = make_x(rng)
    latent = X[:, 0] + 0.3 * rng.randn(len(X))
    y = (latent > np.median(latent)).astype(int) + (X[:, 1] > np.median(X[:, 1]))
    ours = QuantisedGBT(n_estimators=20, random_state=0).fit(X, y)
    ref = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    assert ours.fallback_reason_ is not None
    np.testing.assert_array_equal(ours.feature_importances_, ref.feature_importances_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_array_equal(ours.train_predict(), ref.predict(X))


def test_dci_importance_matrix_backends_agree():
    X, y, Xt, yt = quantised(0, 1000, [8, 16, 8, 32, 64], 2)
    y2 = np.stack([y, (X[:, 3] > 0.1).astype(int)])  # two factors
    yt2 = np.stack([yt, (Xt[:, 3] > 0.1).astype(int)])
    fast = compute_importance_gbt(X.T, y2, Xt.T, yt2, seed=0)
    ref = compute_importance_gbt(X.T, y2, Xt.T, yt2, seed=0, gbt="sklearn")
    np.testing.assert_allclose(fast[0], ref[0], rtol=0, atol=1e-9)
    assert fast[1:] == ref[1:]
    with pytest.raises(ValueError, match="gbt must be"):
        compute_importance_gbt(X.T, y2, Xt.T, yt2, gbt="xgboost")
