"""SAP score (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", §3), as in disentanglement_lib ``evaluation/metrics/sap_score.py`` (study settings:
10,000 training / 5,000 test points, discrete factors).

Score matrix S [codes × factors]:
* continuous mode: S_ij = Cov(z_i, v_j)² / (Var z_i · Var v_j) (squared Pearson correlation, ddof 1),
  S_ij = 0 when Var z_i ≤ 1e-12 (a constant code) — vectorised over all pairs;
* discrete mode: S_ij = test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` predicting v_j
  from z_i alone. The reference relied on sklearn's old defaults ``dual=True`` and an unset
  ``random_state``; we pin ``dual=True`` and ``random_state=seed`` (liblinear's coordinate descent
  shuffles), so the numbers are reproducible and equal the reference's up to that solver randomness.
SAP = mean over factors of the gap between the largest and second-largest S_ij over codes.
A factor constant in the sample makes the continuous score undefined → ``ValueError``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .utils import RepresentationFn, check_codes, check_factors, check_nonconstant_factors, generate_batch_factor_code
from ...specs.disentanglement import as_random_state


def _continuous_score_matrix(mus: np.ndarray, ys: np.ndarray) -> np.ndarray:
    n = mus.shape[1]
    mc = mus - mus.mean(axis=1, keepdims=True)
    yc = ys - ys.mean(axis=1, keepdims=True)
    cov = mc @ yc.T / (n - 1)
    var_mu = np.sum(mc * mc, axis=1) / (n - 1)
    var_y = np.sum(yc * yc, axis=1) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = cov ** 2 / (var_mu[:, None] * var_y[None, :])
    return np.where(var_mu[:, None] > 1e-12, score, 0.0)


def _discrete_score_matrix(mus, ys, mus_test, ys_test, seed):
    score_matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):  # one 1-D classifier per (code, factor) pair
        for j in range(ys.shape[0]):
            classifier = LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # as in the reference (max_iter 1000)
                classifier.fit(mus[i, :, np.newaxis], ys[j, :])
            pred = classifier.predict(mus_test[i, :, np.newaxis])
            score_matrix[i, j] = np.mean(pred == ys_test[j, :])
    return score_matrix


def compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors: bool, seed: int = 0) -> np.ndarray:
    """Score matrix [num_codes, num_factors] (reference layout: mus [num_codes, n], ys [num_factors, n])."""
    if continuous_factors:
        check_nonconstant_factors(ys, "SAP (continuous)")
        return _continuous_score_matrix(mus, ys)
    return _discrete_score_matrix(mus, ys, mus_test, ys_test, seed)


def compute_avg_diff_top_two(matrix: np.ndarray) -> float:
    if matrix.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 codes (gap between the two best), got {matrix.shape[0]}")
    sorted_matrix = np.sort(matrix, axis=0)
    return float(np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :]))


def sap_from_codes(codes_train: Any, factors_train: Any, codes_test: Any = None, factors_test: Any = None,
                   continuous_factors: bool = False, seed: int = 0) -> dict[str, float]:
    """SAP of given codes ``[n, num_codes]`` / integer factors ``[n, num_factors]``; the test arrays are only
    used (and required) in discrete mode."""
    ctr = check_codes(codes_train, "SAP: codes_train")
    ftr = check_factors(factors_train, ctr.shape[0], "SAP: factors_train")
    if continuous_factors:
        cte, fte = ctr, ftr
    else:
        if codes_test is None or factors_test is None:
            raise ValueError("SAP (discrete mode) needs codes_test and factors_test")
        cte = check_codes(codes_test, "SAP: codes_test")
        fte = check_factors(factors_test, cte.shape[0], "SAP: factors_test")
        if cte.shape[1] != ctr.shape[1] or fte.shape[1] != ftr.shape[1]:
            raise ValueError("SAP: train and test arrays have different numbers of codes or factors")
    matrix = compute_score_matrix(ctr.T, ftr.T, cte.T, fte.T, continuous_factors, seed)
    return {"SAP_score": compute_avg_diff_top_two(matrix)}


def compute_sap(ground_truth_data, representation_function: RepresentationFn, random_state, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16, continuous_factors: bool = False,
                seed: int = 0) -> dict[str, float]:
    """SAP of a representation function (train set drawn first, then the test set, as in the reference,
    which draws the test set in continuous mode too)."""
    rng = as_random_state(random_state)
    mus, ys = generate_batch_factor_code(ground_truth_data, representation_function, num_train, rng, batch_size)
    mus_test, ys_test = generate_batch_factor_code(ground_truth_data, representation_function, num_test, rng,
                                                   batch_size)
    matrix = compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors, seed)
    return {"SAP_score": compute_avg_diff_top_two(matrix)}
