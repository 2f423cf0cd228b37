"""Gradient estimators for categorical nodes, chosen by name (SPEC §1.2).

>>> est = get_estimator("gumbel", tau=8.0, beta=1.0)
>>> list_estimators()  # doctest: +SKIP
['direct', 'exact', 'gumbel', 'gumbel-rao', 'igr', 'reinforce', 'reinmax', 'spike-exp', 'st-gumbel']

Estimators that need the task's cost of alternative configurations (``direct``, ``exact``) are used through
``Estimator.expected_cost`` and serve only task modules that declare ``provides_cost_oracle``. Further families
register themselves with :func:`register_estimator`; task modules only ever call :func:`get_estimator`,
:func:`score_function_loss` and :func:`expand_for_samples`, so adding an estimator changes no benchmark.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .base import (EVAL_MODES, PATHWISE, SCORE_FUNCTION, Estimator, check_positive, cost_oracle_refusal, gumbel_noise,
                   param_size_refusal)
from .direct import Direct
from .exact import Exact
from .gumbel import GumbelSoftmax, StraightThroughGumbel
from .gumbel_rao import GumbelRao, conditional_gumbel
from .igr import IGR
from .noise import KeyedStream, eval_noise_key, keyed_gumbel, keyed_normal, keyed_uniform, sub_key
from .reinforce import Reinforce
from .reinmax import ReinMax, reinmax_sample
from .spike_exp import SpikeExp, spike_exp_sample

ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    ESTIMATORS[cls.name] = cls
    return cls


for _cls in (GumbelSoftmax, StraightThroughGumbel, Reinforce, ReinMax, GumbelRao, IGR, Direct, Exact, SpikeExp):
    register_estimator(_cls)


def serves(cls: type[Estimator], num_categories: int, num_nodes: int = 1) -> bool:
    """Whether an estimator (with its default options) serves ``num_nodes`` nodes of ``num_categories``
    categories (:meth:`Estimator.check_node_group`; spike-exp: binary nodes only)."""
    try:
        cls().check_node_group(num_nodes, num_categories)
    except ValueError:
        return False
    return True


def list_estimators(logits_only: bool = False, sampling: bool = False, num_categories: int | None = None) -> list[str]:
    """Registered names; ``logits_only``: only those whose parameters are the K logits (``takes_logits``);
    ``sampling``: only those that sample through ``forward`` (not the cost-oracle estimators, Direct and exact);
    ``num_categories``: only those that serve nodes of that many categories (:func:`serves`)."""
    return sorted(n for n, cls in ESTIMATORS.items()
                  if (cls.takes_logits or not logits_only) and not (sampling and cls.needs_cost_oracle)
                  and (num_categories is None or serves(cls, num_categories)))


def get_estimator_class(name: str) -> type[Estimator]:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; choose one of: {', '.join(list_estimators())}") from None


def get_estimator(name: str, **kwargs) -> Estimator:
    """Instantiate estimator ``name``; keyword arguments it does not accept are an error."""
    cls = get_estimator_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(kwargs) - accepted
    if unknown:
        raise ValueError(f"estimator {name!r} does not take {sorted(unknown)}; it accepts {sorted(accepted)}")
    return cls(**kwargs)


def estimators_of(module: nn.Module) -> list[Estimator]:
    return [m for m in module.modules() if isinstance(m, Estimator)]


def num_samples(module: nn.Module, estimators: list[Estimator] | None = None) -> int:
    """How many times a training batch must be repeated for the module's score-function estimators
    (``estimators``: the module's, when the caller has them at hand; found by a module walk otherwise)."""
    if not module.training:
        return 1
    ests = estimators_of(module) if estimators is None else estimators
    return max([e.num_samples for e in ests if e.family == SCORE_FUNCTION], default=1)


def expand_for_samples(module: nn.Module, *tensors: torch.Tensor, estimators: list[Estimator] | None = None):
    """Repeat each tensor S times along dim 0 (sample-major), S = :func:`num_samples` of ``module``."""
    s = num_samples(module, estimators)
    out = tuple(t if s == 1 else t.repeat(s, *([1] * (t.dim() - 1))) for t in tensors)
    return out if len(out) != 1 else out[0]


def score_function_loss(module: nn.Module, cost: torch.Tensor,
                        estimators: list[Estimator] | None = None) -> torch.Tensor:
    """Sum of the surrogate losses of the module's estimators for per-sample ``cost`` (0 if all pathwise)."""
    total = cost.new_zeros(())
    for est in estimators_of(module) if estimators is None else estimators:
        if est.family != PATHWISE:
            total = total + est.surrogate_loss(cost)
    return total


def reset_estimators(module: nn.Module, estimators: list[Estimator] | None = None) -> None:
    for est in estimators_of(module) if estimators is None else estimators:
        est.reset()


@contextmanager
def decoding(module: nn.Module, mode: str) -> Iterator[None]:
    """Temporarily switch every estimator's evaluation decoding to ``mode`` ('map' or 'sample')."""
    ests = estimators_of(module)
    before = [e.eval_mode for e in ests]
    try:
        for e in ests:
            e.eval_mode = mode
        yield
    finally:
        for e, m in zip(ests, before):
            e.eval_mode = m


@contextmanager
def keyed_noise(module: nn.Module, ids: torch.Tensor, key: int) -> Iterator[None]:
    """Key the sampled-decoding noise of every estimator of ``module`` by example for one evaluation batch.

    ``ids`` [B] identifies the batch's examples (stable across batchings and ranks), ``key`` the run and the
    evaluation set (:func:`scgbench.estimators.noise.eval_noise_key`). Estimator ``i`` (in module order) draws
    from ``sub_key(key, i)``, call ``c`` of it from ``sub_key(key, i, c)``: noise is then a function of (run
    seed, set, example, node, call, element) only (:mod:`scgbench.estimators.noise`).
    """
    ests = estimators_of(module)
    try:
        for i, e in enumerate(ests):
            e.eval_noise = KeyedStream(sub_key(key, i), ids)
        yield
    finally:
        for e in ests:
            e.eval_noise = None


__all__ = [
    "ESTIMATORS", "EVAL_MODES", "check_positive", "PATHWISE", "SCORE_FUNCTION", "Estimator", "GumbelSoftmax",
    "StraightThroughGumbel", "Reinforce", "ReinMax", "GumbelRao", "IGR", "Direct", "Exact", "SpikeExp",
    "spike_exp_sample", "conditional_gumbel", "reinmax_sample", "decoding", "estimators_of", "expand_for_samples",
    "get_estimator",
    "get_estimator_class", "gumbel_noise", "keyed_gumbel", "keyed_noise", "keyed_normal", "keyed_uniform",
    "list_estimators", "serves", "cost_oracle_refusal", "param_size_refusal", "eval_noise_key", "KeyedStream", "sub_key", "num_samples", "register_estimator",
    "reset_estimators", "score_function_loss",
]
