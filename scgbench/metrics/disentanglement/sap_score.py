"""SAP score (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", §3), as in disentanglement_lib ``evaluation/metrics/sap_score.py`` (study settings:
10,000 training / 5,000 test points, discrete factors).

Score matrix S [codes × factors]:
* continuous mode: S_ij = Cov(z_i, v_j)² / (Var z_i · Var v_j) (squared Pearson correlation, ddof 1),
  S_ij = 0 when Var z_i ≤ 1e-12 (a constant code) — vectorised over all pairs;
* discrete mode: S_ij = test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` predicting v_j
  from z_i alone, each classifier solved exactly by :mod:`.linear_svc_1d` (a two-unknown problem; the
  reference's liblinear stops at its tolerance ``1e-4``, so a test point within that tolerance of a
  decision boundary may be classified differently — ``python -m scgbench.bench.disentanglement`` times
  both and reports the difference of the scores). A factor with one value in the training sample is an
  error, as in the reference.
SAP = mean over factors of the gap between the largest and second-largest S_ij over codes.
A factor constant in the sample makes the continuous score undefined → ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import linear_svc_1d
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


def _discrete_score_matrix(mus, ys, mus_test, ys_test):
    score_matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):  # one 1-D classifier per (code, factor) pair, a code's factors at once
        pred = linear_svc_1d.fit_predict(mus[i], ys.T, mus_test[i], C=0.01)
        score_matrix[i] = np.mean(pred == ys_test.T, axis=0)
    return score_matrix


def compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors: bool) -> np.ndarray:
    """Score matrix [num_codes, num_factors] (reference layout: mus [num_codes, n], ys [num_factors, n])."""
    if continuous_factors:
        check_nonconstant_factors(ys, "SAP (continuous)")
        return _continuous_score_matrix(mus, ys)
    return _discrete_score_matrix(mus, ys, mus_test, ys_test)


def compute_avg_diff_top_two(matrix: np.ndarray) -> float:
    if matrix.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 codes (gap between the two best), got {matrix.shape[0]}")
    sorted_matrix = np.sort(matrix, axis=0)
    return float(np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :]))


def sap_from_codes(codes_train: Any, factors_train: Any, codes_test: Any = None, factors_test: Any = None,
                   continuous_factors: bool = False) -> dict[str, float]:
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
    matrix = compute_score_matrix(ctr.T, ftr.T, cte.T, fte.T, continuous_factors)
    return {"SAP_score": compute_avg_diff_top_two(matrix)}


def compute_sap(ground_truth_data, representation_function: RepresentationFn, random_state, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16, continuous_factors: bool = False) -> dict[str, float]:
    """SAP of a representation function (train set drawn first, then the test set, as in the reference,
    which draws the test set in continuous mode too)."""
    rng = as_random_state(random_state)
    mus, ys = generate_batch_factor_code(ground_truth_data, representation_function, num_train, rng, batch_size)
    mus_test, ys_test = generate_batch_factor_code(ground_truth_data, representation_function, num_test, rng,
                                                   batch_size)
    matrix = compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors)
    return {"SAP_score": compute_avg_diff_top_two(matrix)}
