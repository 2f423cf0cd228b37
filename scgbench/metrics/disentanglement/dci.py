"""DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018, §2) with
gradient-boosted trees, as in disentanglement_lib ``evaluation/metrics/dci.py`` (study settings: 10,000
training and 5,000 test points, sklearn ``GradientBoostingClassifier()`` defaults per factor).

With R the [codes × factors] matrix of |feature importances|:
* disentanglement of code i: D_i = 1 − H_K(P_i·), P_ij = R_ij / Σ_k R_ik (entropy base K = #factors);
  D = Σ_i ρ_i D_i with ρ_i = Σ_j R_ij / Σ R (uniform weights when R = 0);
* completeness of factor j: C_j = 1 − H_D(P̃_·j), P̃_ij = R_ij / Σ_k R_kj (base D = #codes);
  C = Σ_j ρ̃_j C_j, ρ̃_j = Σ_i R_ij / Σ R;
* informativeness: mean train / test accuracy of the per-factor classifiers.
A 1e-11 is added before the entropies exactly as in the reference. The reference leaves the trees'
``random_state`` unset (global numpy state); here it is the explicit ``seed`` so scores are reproducible.
A constant code gets zero importance. Fewer than 2 factors or codes make the entropy base 1 → error.

The classifiers are :class:`~.gbt.QuantisedGBT`, an exact histogram re-implementation of sklearn's
``GradientBoostingClassifier()`` for codes with ≤ 256 distinct values per dimension (a D-VAE's quantised
codes; other codes fall back to sklearn's estimator itself): the same trees, importances and predictions
as sklearn up to float rounding (|Δ importance| ~1e-14) — except where candidate splits tie exactly (tiny
nodes where two codes isolate the same points, duplicated codes), which sklearn breaks by its random
feature order, i.e. by ``random_state``, and ``QuantisedGBT`` by a random order of its own. On the
10,000-point benchmark codes (``scgbench.bench.disentanglement``) the importance matrix then differs from sklearn's
(``random_state=0``) by ≤ 2.5e-3 and the DCI disentanglement by 1.3e-4, while sklearn with
``random_state=1`` instead of 0 moves them by 2.4e-3 and 1.3e-3; the CPU time drops ~10× (150 s → 13 s).
``gbt="sklearn"`` in :func:`compute_importance_gbt` uses sklearn's estimator. Parallel fits (``n_jobs``)
only pay off on idle cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier

from .gbt import QuantisedGBT
from .utils import RepresentationFn, check_codes, check_factors, generate_batch_factor_code
from ...specs.disentanglement import as_random_state


GBT_BACKENDS = ("quantised", "sklearn")


def _fit_one(x_train, y_train, x_test, y_test, seed, gbt="quantised"):
    if gbt == "sklearn":
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(x_train, y_train)
        train_pred = model.predict(x_train)
    else:  # same model; falls back to sklearn's estimator itself for codes with many distinct values
        model = QuantisedGBT(random_state=seed).fit(x_train, y_train)
        train_pred = model.train_predict()  # = model.predict(x_train), from the fit's raw predictions
    return (np.abs(model.feature_importances_), np.mean(train_pred == y_train),
            np.mean(model.predict(x_test) == y_test))


def compute_importance_gbt(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                           seed: int = 0, n_jobs: int = 1, gbt: str = "quantised"):
    """Importance matrix [num_codes, num_factors], mean train accuracy, mean test accuracy (reference
    layout: x [num_codes, n], y [num_factors, n]). ``n_jobs`` fits factors in parallel (same numbers);
    ``gbt="sklearn"`` uses sklearn's ``GradientBoostingClassifier`` instead of :class:`~.gbt.QuantisedGBT`."""
    if gbt not in GBT_BACKENDS:
        raise ValueError(f"gbt must be one of {GBT_BACKENDS}, got {gbt!r}")
    num_factors, num_codes = y_train.shape[0], x_train.shape[0]
    jobs = [(x_train.T, y_train[i, :], x_test.T, y_test[i, :], seed, gbt) for i in range(num_factors)]
    if n_jobs == 1:
        results = [_fit_one(*j) for j in jobs]
    else:  # largest factors first: their fits (one tree per class and stage) dominate
        from joblib import Parallel, delayed
        order = sorted(range(num_factors), key=lambda i: -np.unique(y_train[i, :]).size)
        done = Parallel(n_jobs=n_jobs)(delayed(_fit_one)(*jobs[i]) for i in order)
        results = [None] * num_factors
        for i, r in zip(order, done):
            results[i] = r
    importance_matrix = np.zeros(shape=[num_codes, num_factors], dtype=np.float64)
    for i, (imp, _, _) in enumerate(results):
        importance_matrix[:, i] = imp
    return importance_matrix, np.mean([r[1] for r in results]), np.mean([r[2] for r in results])


def _check_matrix(importance_matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(importance_matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 2:
        raise ValueError(f"DCI needs an importance matrix [num_codes >= 2, num_factors >= 2] (the entropies use "
                         f"these as log bases), got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("DCI importance matrix must be finite and non-negative")
    return m


def disentanglement_per_code(importance_matrix: np.ndarray) -> np.ndarray:
    return 1. - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])


def disentanglement(importance_matrix: np.ndarray) -> float:
    """DCI disentanglement of an importance matrix [num_codes, num_factors]."""
    importance_matrix = _check_matrix(importance_matrix)
    per_code = disentanglement_per_code(importance_matrix)
    if importance_matrix.sum() == 0.:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return float(np.sum(per_code * code_importance))


def completeness_per_code(importance_matrix: np.ndarray) -> np.ndarray:
    return 1. - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])


def completeness(importance_matrix: np.ndarray) -> float:
    """DCI completeness of an importance matrix [num_codes, num_factors]."""
    importance_matrix = _check_matrix(importance_matrix)
    per_factor = completeness_per_code(importance_matrix)
    if importance_matrix.sum() == 0.:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return float(np.sum(per_factor * factor_importance))


def _dci(mus_train, ys_train, mus_test, ys_test, seed, n_jobs) -> dict[str, float]:
    importance_matrix, train_acc, test_acc = compute_importance_gbt(mus_train, ys_train, mus_test, ys_test, seed,
                                                                    n_jobs)
    return {"informativeness_train": float(train_acc), "informativeness_test": float(test_acc),
            "disentanglement": disentanglement(importance_matrix), "completeness": completeness(importance_matrix)}


def dci_from_codes(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, seed: int = 0,
                   n_jobs: int = 1) -> dict[str, float]:
    """DCI of given train/test codes ``[n, num_codes]`` and integer factors ``[n, num_factors]``."""
    ctr = check_codes(codes_train, "DCI: codes_train")
    cte = check_codes(codes_test, "DCI: codes_test")
    if cte.shape[1] != ctr.shape[1]:
        raise ValueError(f"DCI: train codes have {ctr.shape[1]} dimensions, test codes {cte.shape[1]}")
    ftr = check_factors(factors_train, ctr.shape[0], "DCI: factors_train")
    fte = check_factors(factors_test, cte.shape[0], "DCI: factors_test")
    if fte.shape[1] != ftr.shape[1]:
        raise ValueError(f"DCI: train factors have {ftr.shape[1]} columns, test factors {fte.shape[1]}")
    return _dci(ctr.T, ftr.T, cte.T, fte.T, seed, n_jobs)


def compute_dci(ground_truth_data, representation_function: RepresentationFn, random_state, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16, seed: int = 0, n_jobs: int = 1) -> dict[str, float]:
    """DCI of a representation function (train set drawn first, then the test set)."""
    rng = as_random_state(random_state)  # one stream: the test set follows the training set
    mus_train, ys_train = generate_batch_factor_code(ground_truth_data, representation_function, num_train, rng,
                                                     batch_size)
    mus_test, ys_test = generate_batch_factor_code(ground_truth_data, representation_function, num_test, rng,
                                                   batch_size)
    return _dci(mus_train, ys_train, mus_test, ys_test, seed, n_jobs)
