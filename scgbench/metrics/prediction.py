"""Performance prediction from a graph embedding (SPEC §2.4's extension): the accuracy-prediction curve.

:func:`prediction_curve` fits a regressor on the embeddings of ``n`` training cells (their validation
accuracies as targets) for every training-set size ``n`` of ``sizes`` and reports, on the held-out cells,
the RMSE (in the targets' units) and Kendall's τ (τ-b, :func:`scipy.stats.kendalltau`) of its predictions.

* Training subsets are **nested**: one permutation of the training cells, drawn from the stream
  ``(seed, "nasbench101-prediction")`` (:mod:`scgbench.seeding`), and size ``n`` uses its first ``n``
  cells — so the curve compares sizes, not draws. Sizes are capped at the cells available (and repeated
  caps dropped): with 800 training cells, ``(100, 1000, 10000)`` becomes ``(100, 800)``.
* Inputs are standardised with the mean and standard deviation of the training subset (a constant column
  is left at 0), targets likewise; predictions are mapped back to the targets' units.
* The default regressor, ``"sgp"``, is a sparse Gaussian process as in the embedding-based performance
  prediction of D-VAE (Zhang et al. 2019), which the VS-GAE paper (Friede et al. 2019) follows: an RBF
  kernel with one length scale per embedding dimension (ARD) times a signal variance, plus white noise,
  its hyperparameters fitted by maximising the exact GP marginal likelihood on ``inducing`` (500) of the
  training cells — the first ones of the nested subset — and the predictive mean of the subset-of-regressors
  approximation on all ``n`` cells with those cells as inducing points,
  ``k_*m (σ² K_mm + K_mn K_nm)⁻¹ K_mn y`` (Quiñonero-Candela & Rasmussen 2005). Up to ``inducing``
  training cells this is the exact GP posterior mean. Any scikit-learn style regressor (``fit``/``predict``;
  cloned for every size) can be passed instead.

:func:`curve_scalars` flattens a curve into record scalars (``test/pred_curve_rmse_1000``, …).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..seeding import numpy_rng

#: stream of the nested training subsets, keyed by the run seed
PREDICTION_STREAM = "nasbench101-prediction"
DEFAULT_SIZES = (100, 1000, 10000)


def _standardise(train: np.ndarray, *others: np.ndarray):
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std, *[(o - mean) / std for o in others]), (mean, std)


def rbf(a: np.ndarray, b: np.ndarray, length_scale: np.ndarray, signal: float) -> np.ndarray:
    """ARD RBF kernel ``signal · exp(-½ Σ_d ((a_d - b_d) / ℓ_d)²)`` between the rows of ``a`` and ``b``."""
    a, b = a / length_scale, b / length_scale
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return signal * np.exp(-0.5 * np.maximum(sq, 0.0))


def gp_nll(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood (without the constant) of an ARD RBF + white-noise GP and its gradient
    in ``theta`` = (log ℓ_1..d, log signal, log noise): ``½ yᵀα + Σ log diag L`` and ``-½ tr((ααᵀ - K⁻¹) ∂K)``."""
    from scipy.linalg import cho_factor, cho_solve

    n, d = x.shape
    ls, sf2, sn2 = np.exp(theta[:d]), np.exp(theta[d]), np.exp(theta[d + 1])
    a = x / ls
    kf = rbf(x, x, ls, sf2)
    k = kf + (sn2 + 1e-8) * np.eye(n)
    try:
        c = cho_factor(k, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = cho_solve(c, y, check_finite=False)
    nll = 0.5 * float(y @ alpha) + float(np.log(np.diag(c[0])).sum())
    w = np.outer(alpha, alpha) - cho_solve(c, np.eye(n), check_finite=False)
    m = w * kf
    r = m.sum(1)
    g_ls = -(r @ (a * a)) + (a * (m @ a)).sum(0)   # -½ Σ_ij M_ij (a_id - a_jd)²
    return nll, np.r_[g_ls, -0.5 * m.sum(), -0.5 * sn2 * np.trace(w)]


def fit_hyperparameters(x: np.ndarray, y: np.ndarray, max_iter: int = 200) -> tuple[np.ndarray, float, float]:
    """(length scales [d], signal variance, noise variance) of an ARD RBF + white-noise GP maximising the exact
    log marginal likelihood of (``x``, ``y``) (:func:`gp_nll`): L-BFGS-B on the log parameters within bounds,
    started from ℓ = √d, signal 1, noise 0.1 (for standardised inputs and targets); deterministic."""
    from scipy.optimize import minimize

    d = x.shape[1]
    theta0 = np.r_[np.full(d, 0.5 * np.log(d)), 0.0, np.log(0.1)]
    bounds = [(np.log(1e-2), np.log(1e4))] * d + [(np.log(1e-3), np.log(1e3)), (np.log(1e-6), np.log(10.0))]
    res = minimize(gp_nll, theta0, args=(x, y), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter})
    theta = res.x if np.isfinite(res.fun) and res.fun < 1e24 else theta0
    return np.exp(theta[:d]), float(np.exp(theta[d])), float(np.exp(theta[d + 1]))


class SparseGP:
    """Subset-of-regressors sparse GP mean (see the module docstring): hyperparameters from the exact GP on
    the first ``inducing`` rows given to :meth:`fit` (the caller orders them), prediction with those rows as
    inducing points; with no more rows than ``inducing``, the exact GP mean. Inputs and targets are expected
    standardised."""

    def __init__(self, inducing: int = 500, chunk: int = 8192) -> None:
        if inducing < 2:
            raise ValueError(f"inducing must be >= 2, got {inducing}")
        self.inducing, self.chunk = inducing, chunk

    def _k(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([rbf(a[i:i + self.chunk], b, self.length_scale_, self.signal_)
                               for i in range(0, len(a), self.chunk)]) if len(a) else np.zeros((0, len(b)))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "SparseGP":
        m = min(self.inducing, len(x))
        z = x[:m]
        self.length_scale_, self.signal_, self.noise_ = fit_hyperparameters(z, y[:m])
        kmm = self._k(z, z)
        if m == len(x):  # the exact GP: α = (K + σ²I)⁻¹ y
            kmm[np.diag_indices_from(kmm)] += self.noise_ + 1e-8
            self.chol_ = None
            self.alpha_ = np.linalg.solve(kmm, y)
        else:  # SoR: α = L⁻ᵀ (σ²I + V Vᵀ)⁻¹ V y with K_mm = L Lᵀ, V = L⁻¹ K_mn
            kmm[np.diag_indices_from(kmm)] += 1e-6 * self.signal_
            chol = np.linalg.cholesky(kmm)
            v = np.linalg.solve(chol, self._k(x, z).T)
            b = self.noise_ * np.eye(m) + v @ v.T
            self.alpha_ = np.linalg.solve(chol.T, np.linalg.solve(b, v @ y))
        self.z_ = z
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._k(x, self.z_) @ self.alpha_

    def describe(self) -> str:
        return (f"sparse GP (subset of regressors on {self.inducing} inducing cells, exact GP below that; "
                "ARD RBF + white noise, hyperparameters by marginal likelihood on the inducing cells)")


def _make(regressor: Any):
    if regressor == "sgp":
        return SparseGP()
    if isinstance(regressor, str):
        raise ValueError(f"unknown regressor {regressor!r}; use 'sgp' or a scikit-learn style regressor")
    if not (hasattr(regressor, "fit") and hasattr(regressor, "predict")):
        raise TypeError(f"regressor must be 'sgp' or have fit/predict, got {type(regressor).__name__}")
    from sklearn.base import clone

    return clone(regressor)


def _describe(model) -> str:
    return model.describe() if hasattr(model, "describe") else repr(model)


def _as_data(emb, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(emb, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if emb.ndim != 2 or len(emb) != len(y):
        raise ValueError(f"{what}: embeddings must be [N, d] with N = len(targets), got {emb.shape} and {y.shape}")
    bad = ~(np.isfinite(y) & np.isfinite(emb).all(axis=1))
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} of {len(y)} cells have a non-finite target or embedding "
                         f"(the first is row {int(np.flatnonzero(bad)[0])}); pass only cells with targets")
    return emb, y


def capped_sizes(sizes: Sequence[int], available: int) -> list[int]:
    """``sizes`` ascending, each capped at ``available``, repeats dropped."""
    if not sizes or any(int(s) < 2 for s in sizes):
        raise ValueError(f"training-set sizes must be >= 2, got {list(sizes)}")
    return sorted({min(int(s), available) for s in sizes})


def prediction_curve(train_emb, train_y, test_emb, test_y, sizes: Sequence[int] = DEFAULT_SIZES, seed: int = 0,
                     regressor: Any = "sgp") -> dict:
    """RMSE and Kendall τ on the held-out cells of a regressor fitted on nested training subsets of each size.

    Args:
        train_emb, train_y: embeddings [N, d] and targets [N] of the training cells (all finite).
        test_emb, test_y: the same for the held-out cells (at least 2).
        sizes: training-set sizes, capped at N (:func:`capped_sizes`).
        seed: seeds the nested subsets (stream ``"nasbench101-prediction"``); the default regressor is
            deterministic given its data.
        regressor: ``"sgp"`` (default), ``"gp"`` or a scikit-learn style regressor (module docstring).

    Returns a dict with ``sizes``, ``rmse`` and ``kendall_tau`` (lists, one entry per size), ``n_train``
    (cells available), ``n_test``, ``regressor`` (what was fitted) and ``seed``.
    """
    from scipy.stats import kendalltau

    x, y = _as_data(train_emb, train_y, "training cells")
    xt, yt = _as_data(test_emb, test_y, "held-out cells")
    if x.shape[1] != xt.shape[1]:
        raise ValueError(f"training embeddings have {x.shape[1]} dimensions, held-out ones {xt.shape[1]}")
    if len(x) < 2 or len(xt) < 2:
        raise ValueError(f"need at least 2 training and 2 held-out cells, got {len(x)} and {len(xt)}")
    grid = capped_sizes(sizes, len(x))
    order = numpy_rng(seed, PREDICTION_STREAM).permutation(len(x))
    rmse, tau, what = [], [], ""
    for n in grid:
        sub = order[:n]
        (xs, xts), _ = _standardise(x[sub], xt)
        ys = y[sub]
        y_mean, y_std = ys.mean(), ys.std() or 1.0
        model = _make(regressor)
        model.fit(xs, (ys - y_mean) / y_std)
        pred = np.asarray(model.predict(xts), dtype=np.float64).reshape(-1) * y_std + y_mean
        rmse.append(float(np.sqrt(np.mean((pred - yt) ** 2))))
        t = kendalltau(pred, yt).statistic
        tau.append(float(t) if np.isfinite(t) else 0.0)  # constant predictions rank nothing
        what = _describe(model)
    return {"sizes": grid, "rmse": rmse, "kendall_tau": tau, "n_train": int(len(x)), "n_test": int(len(xt)),
            "regressor": what, "seed": int(seed)}


def curve_scalars(curve: dict, prefix: str = "test/pred_curve_") -> dict[str, float]:
    """``{prefix}rmse_{n}`` and ``{prefix}kendall_tau_{n}`` for every size ``n`` of ``curve``."""
    out: dict[str, float] = {}
    for n, r, t in zip(curve["sizes"], curve["rmse"], curve["kendall_tau"]):
        out[f"{prefix}rmse_{n}"] = float(r)
        out[f"{prefix}kendall_tau_{n}"] = float(t)
    return out


__all__ = ["prediction_curve", "curve_scalars", "capped_sizes", "SparseGP", "fit_hyperparameters", "gp_nll", "rbf",
           "DEFAULT_SIZES", "PREDICTION_STREAM"]
