"""Downstream classification and sample efficiency, as in disentanglement_lib
``evaluation/metrics/downstream_task.py`` (study configs ``downstream_task_{logistic_regression,
boosted_trees}.gin``: ``num_train = [10, 100, 1000, 10000]``, ``num_test = 5000``).

For each training size a fresh training set and a fresh test set are drawn (in that order, sizes in the
given order), one classifier per factor is fitted on the codes, and train/test accuracies are reported
under the reference's keys (``"100:mean_test_accuracy"`` …). Predictors: ``"logistic_regression"`` =
``LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))``, ``"gradient_boosting"`` =
``GradientBoostingClassifier()`` (``random_state=seed`` here; unset in the reference), fitted by
:class:`~.gbt.QuantisedGBT` — sklearn's trees from histograms on quantised codes, sklearn itself otherwise
(see ``gbt.py``).

Statistical sample efficiency (Locatello et al. 2019 §5; thesis §6.2): ``sample_efficiency`` =
mean test accuracy with 100 training points / mean test accuracy with 10,000 (computed when both sizes
are among ``num_train``). The default sizes here are ``(100, 10000)``, which is what the efficiency needs;
pass ``num_train=(10, 100, 1000, 10000)`` to reproduce the study's full sweep (the draws then follow
its order).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold

from .gbt import QuantisedGBT
from .utils import RepresentationFn, check_codes, check_factors, generate_batch_factor_code
from ...specs.disentanglement import as_random_state

PREDICTORS = ("logistic_regression", "gradient_boosting")


def make_predictor(name: str, seed: int = 0):
    if name == "logistic_regression":
        return LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))
    if name == "gradient_boosting":
        return QuantisedGBT(random_state=seed)
    raise ValueError(f"predictor must be one of {PREDICTORS}, got {name!r}")


def compute_loss(x_train, y_train, x_test, y_test, predictor: str, seed: int = 0):
    """Per-factor train and test accuracy (x: [n, num_codes]; y: [num_factors, n])."""
    train_loss, test_loss = [], []
    for i in range(y_train.shape[0]):
        model = make_predictor(predictor, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)  # sklearn's LogisticRegressionCV API transition notices
            warnings.simplefilter("ignore", UserWarning)  # folds missing a class at tiny sizes
            model.fit(x_train, y_train[i, :])
        train_loss.append(np.mean(model.predict(x_train) == y_train[i, :]))
        test_loss.append(np.mean(model.predict(x_test) == y_test[i, :]))
    return train_loss, test_loss


def _scores_for_size(scores: dict, size: int, train_err, test_err) -> None:
    s = str(size)
    scores[s + ":mean_train_accuracy"] = float(np.mean(train_err))
    scores[s + ":mean_test_accuracy"] = float(np.mean(test_err))
    scores[s + ":min_train_accuracy"] = float(np.min(train_err))
    scores[s + ":min_test_accuracy"] = float(np.min(test_err))
    for i in range(len(train_err)):
        scores[s + ":train_accuracy_factor_{}".format(i)] = float(train_err[i])
        scores[s + ":test_accuracy_factor_{}".format(i)] = float(test_err[i])


def _add_efficiency(scores: dict, sizes: Sequence[int]) -> None:
    if 100 in sizes and 10000 in sizes:
        scores["sample_efficiency"] = scores["100:mean_test_accuracy"] / scores["10000:mean_test_accuracy"]


def downstream_from_codes(codes_by_size: dict[int, tuple[Any, Any]], codes_test: Any, factors_test: Any,
                          predictor: str = "logistic_regression", seed: int = 0) -> dict[str, float]:
    """Downstream accuracies from given codes: ``codes_by_size[size] = (codes [size, d], factors [size, F])``."""
    cte = check_codes(codes_test, "downstream: codes_test")
    fte = check_factors(factors_test, cte.shape[0], "downstream: factors_test")
    scores: dict[str, float] = {}
    for size, (c, f) in codes_by_size.items():
        ctr = check_codes(c, f"downstream: codes ({size})")
        ftr = check_factors(f, ctr.shape[0], f"downstream: factors ({size})")
        train_err, test_err = compute_loss(ctr, ftr.T, cte, fte.T, predictor, seed)
        _scores_for_size(scores, size, train_err, test_err)
    _add_efficiency(scores, list(codes_by_size))
    return scores


def compute_downstream_task(ground_truth_data, representation_function: RepresentationFn, random_state,
                            num_train: Sequence[int] = (100, 10000), num_test: int = 5000, batch_size: int = 16,
                            predictor: str = "logistic_regression", seed: int = 0) -> dict[str, float]:
    make_predictor(predictor)  # fail fast on a bad name
    rng = as_random_state(random_state)
    scores: dict[str, float] = {}
    for train_size in num_train:
        mus_train, ys_train = generate_batch_factor_code(ground_truth_data, representation_function, train_size, rng,
                                                         batch_size)
        mus_test, ys_test = generate_batch_factor_code(ground_truth_data, representation_function, num_test, rng,
                                                       batch_size)
        train_err, test_err = compute_loss(np.transpose(mus_train), ys_train, np.transpose(mus_test), ys_test,
                                           predictor, seed)
        _scores_for_size(scores, train_size, train_err, test_err)
    _add_efficiency(scores, list(num_train))
    return scores
