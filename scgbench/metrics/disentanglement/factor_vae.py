"""FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising", §4), as in disentanglement_lib
``evaluation/metrics/factor_vae.py`` (study settings: batch 64, 10,000 training / 5,000 evaluation
points, 10,000 points for the global variances, ``prune_dims.threshold = 0.05``).

Global variances s_d² of each code are estimated on ``num_variance_estimate`` samples (ddof 1); codes with
s_d < threshold are pruned ("collapsed to the prior"). Each vote: a factor k is fixed across a batch of
``batch_size`` samples, and the active code with the smallest normalised variance Var_batch(z_d)/s_d² votes
for k. The majority-vote classifier code → factor is read off the training votes; the score is its
accuracy on the evaluation votes. If no code is active, all scores are 0 (reference convention).

Reference quirks reproduced on purpose (they change the numbers): the vote is stored at the *position
among the active codes* (``argmin`` of the pruned vector) in a [factors × all codes] table, and
``num_active_dims`` is ``len`` of the boolean mask, i.e. the total number of codes. The true number of
active codes is reported as ``num_active_dims_pruned``. The random stream is consumed in the reference
order; rendering and encoding are batched over up to ``chunk`` images.
"""

from __future__ import annotations

import numpy as np

from .utils import DEFAULT_CHUNK, RepresentationFn, concat_nuisance, represent
from ...specs.disentanglement import as_random_state


def prune_dims(variances: np.ndarray, threshold: float = 0.) -> np.ndarray:
    """Mask of codes whose standard deviation is at least ``threshold``."""
    scale_z = np.sqrt(variances)
    return scale_z >= threshold


def compute_variances(data, representation_function, batch_size: int, random_state,
                      chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Variance (ddof 1) of each code over ``batch_size`` samples; the factors of all samples are drawn in one
    ``sample_observations`` call like the reference."""
    rng = as_random_state(random_state)
    factors = data.sample_factors(batch_size, rng)
    nuisance = data.draw_nuisance(factors, rng)
    representations = represent(data, representation_function, factors, nuisance, chunk)
    return np.var(representations, axis=0, ddof=1)


def generate_votes(data, representation_function: RepresentationFn, batch_size: int, num_points: int, random_state,
                   global_variances: np.ndarray, active_dims: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Vote table [num_factors, num_codes] (reference ``_generate_training_batch``)."""
    rng = as_random_state(random_state)
    votes = np.zeros((data.num_factors, global_variances.shape[0]), dtype=np.int64)
    per_chunk = max(1, chunk // batch_size)
    for start in range(0, num_points, per_chunk):
        stop = min(num_points, start + per_chunk)
        f_all, n_all, idx = [], [], []
        for _ in range(start, stop):
            factor_index = rng.randint(data.num_factors)
            factors = data.sample_factors(batch_size, rng)
            factors[:, factor_index] = factors[0, factor_index]
            f_all.append(factors)
            n_all.append(data.draw_nuisance(factors, rng))
            idx.append(factor_index)
        reps = represent(data, representation_function, np.concatenate(f_all), concat_nuisance(n_all), chunk=1 << 30)
        reps = reps.reshape(stop - start, batch_size, -1)
        local_variances = np.var(reps, axis=1, ddof=1)
        argmin = np.argmin(local_variances[:, active_dims] / global_variances[active_dims][None, :], axis=1)
        np.add.at(votes, (np.asarray(idx), argmin), 1)
    return votes


def compute_factor_vae(ground_truth_data, representation_function: RepresentationFn, random_state,
                       batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                       num_variance_estimate: int = 10000, prune_threshold: float = 0.05,
                       chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    rng = as_random_state(random_state)
    global_variances = compute_variances(ground_truth_data, representation_function, num_variance_estimate, rng, chunk)
    active_dims = prune_dims(global_variances, prune_threshold)
    if not active_dims.any():
        return {"train_accuracy": 0., "eval_accuracy": 0., "num_active_dims": 0, "num_active_dims_pruned": 0}
    training_votes = generate_votes(ground_truth_data, representation_function, batch_size, num_train, rng,
                                    global_variances, active_dims, chunk)
    classifier = np.argmax(training_votes, axis=0)
    other_index = np.arange(training_votes.shape[1])
    train_accuracy = np.sum(training_votes[classifier, other_index]) * 1. / np.sum(training_votes)
    eval_votes = generate_votes(ground_truth_data, representation_function, batch_size, num_eval, rng,
                                global_variances, active_dims, chunk)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) * 1. / np.sum(eval_votes)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy),
            "num_active_dims": len(active_dims), "num_active_dims_pruned": int(active_dims.sum())}
