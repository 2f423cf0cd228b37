"""BetaVAE score (Higgins et al. 2017, "beta-VAE", §3 / Appendix A.4), as in disentanglement_lib
``evaluation/metrics/beta_vae.py`` (``compute_beta_vae_sklearn``; study settings: batch 64, 10,000
training and 5,000 evaluation points).

Each point: draw a factor index k ~ U{0..K−1} and two batches of ``batch_size`` factor vectors that agree
in factor k; the feature is the mean absolute difference of their representations, the label is k. A
``LogisticRegression(random_state=rng)`` is fitted on the training points; the score is its accuracy on
the evaluation points.

The random stream is consumed in exactly the reference order (per point: ``randint(K)``, factors of
batch 1, factors of batch 2, observation randomness of batch 1, then of batch 2; the evaluation set after
the fit), so on the same dataset, representation and seed the score is the reference's. Only the
rendering and encoding are batched: the draws of up to ``chunk`` images are collected first, then rendered
and encoded together.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import linear_model
from sklearn.exceptions import ConvergenceWarning

from .utils import DEFAULT_CHUNK, RepresentationFn, concat_nuisance, represent
from ...specs.disentanglement import as_random_state


def generate_training_batch(data, representation_function: RepresentationFn, batch_size: int, num_points: int,
                            random_state, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[num_points, num_codes]`` and labels ``[num_points]`` (reference ``_generate_training_batch``)."""
    rng = as_random_state(random_state)
    labels = np.zeros(num_points, dtype=np.int64)
    features = []
    per_chunk = max(1, chunk // (2 * batch_size))  # points whose 2·batch_size images are encoded together
    for start in range(0, num_points, per_chunk):
        stop = min(num_points, start + per_chunk)
        f_all, n_all = [], []
        for p in range(start, stop):
            index = rng.randint(data.num_factors)
            factors1 = data.sample_factors(batch_size, rng)
            factors2 = data.sample_factors(batch_size, rng)
            factors2[:, index] = factors1[:, index]
            nuis1 = data.draw_nuisance(factors1, rng)
            nuis2 = data.draw_nuisance(factors2, rng)
            labels[p] = index
            f_all += [factors1, factors2]
            n_all += [nuis1, nuis2]
        reps = represent(data, representation_function, np.concatenate(f_all), concat_nuisance(n_all), chunk=1 << 30)
        reps = reps.reshape(stop - start, 2, batch_size, -1)
        features.append(np.mean(np.abs(reps[:, 0] - reps[:, 1]), axis=1))
    return np.concatenate(features, axis=0), labels


def _fit_score(train_points, train_labels, rng):
    model = linear_model.LogisticRegression(random_state=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_points, train_labels)
    return model, float(np.mean(model.predict(train_points) == train_labels))


def beta_vae_from_features(train_points, train_labels, eval_points, eval_labels, random_state=0) -> dict[str, float]:
    """BetaVAE score from precomputed features/labels (the classifier step only)."""
    model, train_accuracy = _fit_score(np.asarray(train_points, np.float64), np.asarray(train_labels),
                                       as_random_state(random_state))
    return {"train_accuracy": train_accuracy,
            "eval_accuracy": float(model.score(np.asarray(eval_points, np.float64), np.asarray(eval_labels)))}


def compute_beta_vae_sklearn(ground_truth_data, representation_function: RepresentationFn, random_state,
                             batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                             chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    rng = as_random_state(random_state)
    train_points, train_labels = generate_training_batch(ground_truth_data, representation_function, batch_size,
                                                         num_train, rng, chunk)
    if np.unique(train_labels).size < 2:
        raise ValueError("BetaVAE score: the training points cover a single factor; use more points")
    model, train_accuracy = _fit_score(train_points, train_labels, rng)
    eval_points, eval_labels = generate_training_batch(ground_truth_data, representation_function, batch_size,
                                                       num_eval, rng, chunk)
    return {"train_accuracy": train_accuracy, "eval_accuracy": float(model.score(eval_points, eval_labels))}
