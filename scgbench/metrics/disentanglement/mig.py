"""Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", Eq. 8).

MIG = 1/K Σ_k (I(z_{j(k)}; v_k) − I(z_{j'(k)}; v_k)) / H(v_k), where j(k), j'(k) are the codes with the
largest and second-largest mutual information with factor v_k. Codes are discretised by a 20-bin
histogram and 10,000 points are used (disentanglement_lib ``evaluation/metrics/mig.py`` with
``unsupervised_study_v1/metric_configs/mig.gin``).

Edge cases: a constant code has zero mutual information with every factor (it simply never wins); a
factor that is constant in the sample has zero entropy and makes the score undefined → ``ValueError``;
fewer than two codes → ``ValueError`` (there is no gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .utils import (RepresentationFn, check_nonconstant_factors, codes_to_reference_layout, discrete_entropy,
                    discrete_mutual_info, generate_batch_factor_code, histogram_discretize)


def _mig(mus: np.ndarray, ys: np.ndarray, num_bins: int) -> dict[str, float]:
    if mus.shape[0] < 2:
        raise ValueError(f"MIG needs at least 2 codes (the gap between the best and second-best), got {mus.shape[0]}")
    check_nonconstant_factors(ys, "MIG")
    discretized = histogram_discretize(mus, num_bins)
    m = discrete_mutual_info(discretized, ys)  # [num_codes, num_factors]
    entropy = discrete_entropy(ys)
    sorted_m = np.sort(m, axis=0)[::-1]
    return {"discrete_mig": float(np.mean(np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:])))}


def mig_from_codes(codes: Any, factors: Any, num_bins: int = 20) -> dict[str, float]:
    """MIG of given codes ``[n, num_codes]`` and integer factors ``[n, num_factors]``."""
    mus, ys = codes_to_reference_layout(codes, factors, "MIG")
    return _mig(mus, ys, num_bins)


def compute_mig(ground_truth_data, representation_function: RepresentationFn, random_state, num_train: int = 10000,
                batch_size: int = 16, num_bins: int = 20) -> dict[str, float]:
    """MIG of a representation function on ``num_train`` samples of ``ground_truth_data``."""
    mus_train, ys_train = generate_batch_factor_code(ground_truth_data, representation_function, num_train,
                                                     random_state, batch_size)
    return _mig(mus_train, ys_train, num_bins)
