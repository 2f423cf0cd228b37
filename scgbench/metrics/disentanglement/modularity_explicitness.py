"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With the
F-Statistic Loss", §3), as in disentanglement_lib ``evaluation/metrics/modularity_explicitness.py``
(study settings: 10,000 training / 5,000 test points, 20-bin histogram discretisation).

* modularity: with m_if = I(z_i; v_f) (discretised codes) and θ_i = max_f m_if,
  δ_i = Σ_{f≠argmax} m_if² / (θ_i² (K − 1)); modularity = mean_i (1 − δ_i), a code with θ_i = 0
  (e.g. a constant code) scores 0 — the reference's convention.
* explicitness: per factor, ``LogisticRegression()`` on standardised codes, macro ROC-AUC of the one-vs-rest
  class probabilities on train and test; averaged over factors.

Deviations, both only where the reference crashes: a constant code is standardised to 0 instead of 0/0
(NaN), and the test ROC-AUC uses the classifier's classes, ignoring classes absent from the test sample
(the reference's MultiLabelBinarizer would produce a column mismatch). Numbers are otherwise identical.
Note that sklearn < 0.22 defaulted ``LogisticRegression`` to liblinear one-vs-rest; today's default
(lbfgs, multinomial) is what the reference computes when run with a current sklearn.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .utils import (RepresentationFn, check_codes, check_factors, discrete_mutual_info, generate_batch_factor_code,
                    histogram_discretize, normalize_data)
from ...specs.disentanglement import as_random_state


def modularity(mutual_information: np.ndarray) -> float:
    """Modularity from a mutual-information matrix [num_codes, num_factors]."""
    mutual_information = np.asarray(mutual_information, dtype=np.float64)
    if mutual_information.ndim != 2 or mutual_information.shape[1] < 2:
        raise ValueError(f"modularity needs a [num_codes, num_factors >= 2] matrix, got {mutual_information.shape}")
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = numerator / denominator
    modularity_score = 1. - delta
    index = (max_squared_mi == 0.)
    modularity_score[index] = 0.
    return float(np.mean(modularity_score))


def _one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (y[:, None] == classes[None, :]).astype(np.int64)


def explicitness_per_factor(mus_train, y_train, mus_test, y_test) -> tuple[float, float]:
    """ROC-AUC (train, test) of a logistic regression predicting one factor from all codes."""
    x_train = np.transpose(mus_train)
    x_test = np.transpose(mus_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression().fit(x_train, y_train)
    y_pred_train = clf.predict_proba(x_train)
    y_pred_test = clf.predict_proba(x_test)
    roc_train = roc_auc_score(_one_hot(y_train, clf.classes_), y_pred_train)
    present = np.isin(clf.classes_, y_test)
    roc_test = roc_auc_score(_one_hot(y_test, clf.classes_[present]), y_pred_test[:, present])
    return float(roc_train), float(roc_test)


def _modularity_explicitness(mus_train, ys_train, mus_test, ys_test, num_bins) -> dict[str, float]:
    for j in range(ys_train.shape[0]):
        if np.unique(ys_train[j]).size < 2:
            raise ValueError(f"explicitness: factor {j} takes a single value in the training sample; a classifier "
                             f"cannot be fitted — use more points")
    scores = {}
    discretized_mus = histogram_discretize(mus_train, num_bins)
    mutual_information = discrete_mutual_info(discretized_mus, ys_train)
    scores["modularity_score"] = modularity(mutual_information)
    explicitness_score_train = np.zeros([ys_train.shape[0], 1])
    explicitness_score_test = np.zeros([ys_test.shape[0], 1])
    mus_train_norm, mean_mus, stddev_mus = normalize_data(mus_train)
    mus_test_norm, _, _ = normalize_data(mus_test, mean_mus, stddev_mus)
    for i in range(ys_train.shape[0]):
        explicitness_score_train[i], explicitness_score_test[i] = explicitness_per_factor(
            mus_train_norm, ys_train[i, :], mus_test_norm, ys_test[i, :])
    scores["explicitness_score_train"] = float(np.mean(explicitness_score_train))
    scores["explicitness_score_test"] = float(np.mean(explicitness_score_test))
    return scores


def modularity_explicitness_from_codes(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any,
                                       num_bins: int = 20) -> dict[str, float]:
    """Modularity and explicitness of given codes ``[n, num_codes]`` and integer factors ``[n, num_factors]``."""
    ctr = check_codes(codes_train, "modularity: codes_train")
    cte = check_codes(codes_test, "modularity: codes_test")
    ftr = check_factors(factors_train, ctr.shape[0], "modularity: factors_train")
    fte = check_factors(factors_test, cte.shape[0], "modularity: factors_test")
    if cte.shape[1] != ctr.shape[1] or fte.shape[1] != ftr.shape[1]:
        raise ValueError("modularity: train and test arrays have different numbers of codes or factors")
    return _modularity_explicitness(ctr.T, ftr.T, cte.T, fte.T, num_bins)


def compute_modularity_explicitness(ground_truth_data, representation_function: RepresentationFn, random_state,
                                    num_train: int = 10000, num_test: int = 5000, batch_size: int = 16,
                                    num_bins: int = 20) -> dict[str, float]:
    rng = as_random_state(random_state)
    mus_train, ys_train = generate_batch_factor_code(ground_truth_data, representation_function, num_train, rng,
                                                     batch_size)
    mus_test, ys_test = generate_batch_factor_code(ground_truth_data, representation_function, num_test, rng,
                                                   batch_size)
    return _modularity_explicitness(mus_train, ys_train, mus_test, ys_test, num_bins)
