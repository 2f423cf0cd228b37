"""Unsupervised scores of disentanglement_lib ``evaluation/metrics/unsupervised_metrics.py`` (study
settings: 10,000 points, 20-bin histogram discretisation):

* ``gaussian_total_correlation`` = KL(N(0, Σ) ‖ N(0, diag Σ)) = ½ (Σ_i log Σ_ii − log det Σ), Σ the code
  covariance (``np.cov``, ddof 1);
* ``gaussian_wasserstein_correlation`` = 2 tr Σ − 2 tr (Σ · diag(Σ))^{1/2} (squared W2 distance between the
  Gaussian and the product of its marginals), and its value divided by tr Σ (``…_norm``);
* ``mutual_info_score`` = mean pairwise mutual information between distinct discretised codes.

Constant codes: in the reference log 0 makes the total correlation NaN. A constant code is independent of
everything and contributes nothing to any of the three quantities, so it is dropped before computing them
(documented value: the limit of a vanishing-variance code). All codes constant → all scores 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from .utils import RepresentationFn, check_codes, discrete_mutual_info, generate_batch_factor_code, histogram_discretize
from ...specs.disentanglement import as_random_state


def gaussian_total_correlation(cov: np.ndarray) -> float:
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return float(np.real(2 * np.trace(cov) - 2 * np.trace(sqrtm)))


def _unsupervised(mus_train: np.ndarray, num_bins: int) -> dict[str, float]:
    num_codes_all = mus_train.shape[0]
    keep = np.ptp(mus_train, axis=1) > 0
    mus_train = mus_train[keep]
    num_codes = mus_train.shape[0]
    if num_codes == 0:
        return {"gaussian_total_correlation": 0.0, "gaussian_wasserstein_correlation": 0.0,
                "gaussian_wasserstein_correlation_norm": 0.0, "mutual_info_score": 0.0}
    scores = {}
    cov_mus = np.atleast_2d(np.cov(mus_train))
    scores["gaussian_total_correlation"] = gaussian_total_correlation(cov_mus)
    scores["gaussian_wasserstein_correlation"] = gaussian_wasserstein_correlation(cov_mus)
    scores["gaussian_wasserstein_correlation_norm"] = scores["gaussian_wasserstein_correlation"] / float(
        np.sum(np.diag(cov_mus)))
    mus_discrete = histogram_discretize(mus_train, num_bins)
    mutual_info_matrix = discrete_mutual_info(mus_discrete, mus_discrete)
    np.fill_diagonal(mutual_info_matrix, 0)
    # the reference divides by num_codes² − num_codes of ALL codes; dropped constant codes have MI 0
    denom = num_codes_all ** 2 - num_codes_all
    scores["mutual_info_score"] = float(np.sum(mutual_info_matrix) / denom) if denom else 0.0
    return scores


def unsupervised_from_codes(codes: Any, num_bins: int = 20) -> dict[str, float]:
    """Unsupervised scores of given codes ``[n, num_codes]``."""
    return _unsupervised(check_codes(codes, "unsupervised: codes").T, num_bins)


def compute_unsupervised_metrics(ground_truth_data, representation_function: RepresentationFn, random_state,
                                 num_train: int = 10000, batch_size: int = 16, num_bins: int = 20) -> dict[str, float]:
    mus_train, _ = generate_batch_factor_code(ground_truth_data, representation_function, num_train,
                                              as_random_state(random_state), batch_size)
    return _unsupervised(mus_train, num_bins)
