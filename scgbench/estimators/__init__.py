"""Gradient estimators for discrete nodes, chosen by name or by import path (SPEC §1.2).

>>> est = get_estimator("gumbel", tau=8.0, beta=1.0)
>>> get_estimator_class("scgbench.estimators.gumbel:GumbelSoftmax") is get_estimator_class("gumbel")
True

The contract between an estimator and a task is :mod:`scgbench.estimators.contract`; :func:`compatibility` there is
the one place anything asks whether an estimator serves a task's nodes. Estimators come from three places:

* the suite's own (registered below);
* installed packages, through the entry-point group ``scgbench.estimators`` (``name = "package.module:Class"``),
  loaded the first time the registry is read;
* an import path given where a name is expected: ``package.module:ClassName`` (or ``package.module.ClassName``).
"""

from __future__ import annotations

import importlib
import inspect
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .arm import ARM, DisARM
from .base import EVAL_MODES, PATHWISE, SCORE_FUNCTION, Estimator, check_positive, gumbel_noise
from .contract import (BINARY, CAPABILITIES, CATEGORICAL, COST_ORACLE, LOG_WEIGHTS, OWN_PARAMETERISATION,
                       RELAXED_COST, Estimate, Objective, ScoreTape, compatibility, current_tape, score_tape)
from .direct import Direct
from .distributions import Categorical, GaussianPreimage
from .exact import Exact
from .gumbel import GumbelSoftmax, StraightThroughGumbel
from .gumbel_rao import GumbelRao, conditional_gumbel
from .igr import IGR
from .indecater import IndeCateR
from .noise import KeyedStream, eval_noise_key, keyed_gumbel, keyed_normal, keyed_uniform, sub_key
from .muprop import MuProp
from .nvil import NVIL
from .rebar_relax import REBAR, RELAX
from .reinforce import Reinforce
from .reinmax import ReinMax, reinmax_sample
from .spike_exp import SpikeExp, spike_exp_sample
from .straight_through import DecoupledStraightThrough, GappedStraightThrough, StraightThrough
from .unordered_set import UnorderedSet
from .vimco import VIMCO

ENTRY_POINT_GROUP = "scgbench.estimators"
ESTIMATORS: dict[str, type[Estimator]] = {}
_entry_points_loaded = False


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Add an estimator class to the registry under its ``name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"{cls!r} is not a subclass of scgbench.estimators.Estimator")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    ESTIMATORS[cls.name] = cls
    return cls


for _cls in (GumbelSoftmax, StraightThroughGumbel, Reinforce, ReinMax, GumbelRao, IGR, Direct, Exact, SpikeExp,
             StraightThrough, GappedStraightThrough, DecoupledStraightThrough, ARM, DisARM, UnorderedSet, IndeCateR,
             NVIL, MuProp, VIMCO, REBAR, RELAX):
    register_estimator(_cls)


def _load_entry_points() -> None:
    """Register the estimators that installed packages declare in the ``scgbench.estimators`` entry-point group.
    A broken plug-in is reported with its name and left out; it does not break the suite's own estimators."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Estimator)):
                raise TypeError("not a subclass of scgbench.estimators.Estimator")
            if not cls.name:
                cls.name = ep.name
            ESTIMATORS.setdefault(ep.name, cls)
        except Exception as e:  # noqa: BLE001 - one broken plug-in must not hide the others
            import warnings

            warnings.warn(f"estimator plug-in {ep.name!r} ({ep.value}) could not be loaded: {e}", stacklevel=2)


def registry() -> dict[str, type[Estimator]]:
    """Every registered estimator by name: the suite's and the installed plug-ins'."""
    _load_entry_points()
    return ESTIMATORS


def is_import_path(spec: str) -> bool:
    return ":" in spec or ("." in spec and spec not in registry())


def _import_class(spec: str) -> type[Estimator]:
    module, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module or not attr:
        raise ValueError(f"estimator {spec!r}: write an import path as package.module:ClassName")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"estimator {spec!r}: cannot import module {module!r} ({e}); install the package that "
                         f"provides it or fix the path (package.module:ClassName)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"estimator {spec!r}: module {module!r} has no attribute {attr!r}") from None
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Estimator)):
        raise ValueError(f"estimator {spec!r} is not an estimator: {obj!r} must be a subclass of "
                         f"scgbench.estimators.Estimator")
    return obj


def get_estimator_class(spec: str) -> type[Estimator]:
    """The class named ``spec``: a registered name or an import path ``package.module:ClassName``."""
    reg = registry()
    if spec in reg:
        return reg[spec]
    if isinstance(spec, str) and is_import_path(spec):
        return _import_class(spec)
    raise ValueError(f"unknown estimator {spec!r}; choose one of: {', '.join(sorted(reg))}, or give your own class "
                     f"as package.module:ClassName")


def estimator_spec(cls: type[Estimator]) -> str:
    """How a run names ``cls``: its registered name, or its import path for a class from outside the registry."""
    if registry().get(cls.name) is cls:
        return cls.name
    return f"{cls.__module__}:{cls.__qualname__}"


def estimator_origin(cls: type[Estimator]) -> dict:
    """Where an estimator class comes from, for the record: its import path and its distribution's version."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = cls.__module__.split(".", 1)[0]
    dists = packages_distributions().get(top, [])
    ver = None
    for d in dists:
        try:
            ver = version(d)
            break
        except PackageNotFoundError:
            continue
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "package": dists[0] if dists else top, "version": ver}


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def check_options(cls: type[Estimator], kwargs: dict, spec: str | None = None) -> None:
    """Refuse options the constructor does not take, and values of the wrong type for its annotated ``int``,
    ``float``, ``bool`` and ``str`` parameters (the constructor checks ranges itself)."""
    spec = spec or cls.name
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = set(kwargs) - set(params)
        if unknown:
            raise ValueError(f"estimator {spec!r} does not take {sorted(unknown)}; it accepts {sorted(params)}")
    for key, value in kwargs.items():
        p = params.get(key)
        want = _TYPES.get(p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", ""))\
            if p is not None else None
        if want is None or value is None:
            continue
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ValueError(f"estimator {spec!r}: option {key!r} must be {want.__name__}, got {value!r} "
                             f"(--model.estimator_kwargs.{key})")


def get_estimator(spec: str, **kwargs) -> Estimator:
    """Instantiate estimator ``spec`` (name or import path); options it does not take are an error."""
    cls = get_estimator_class(spec)
    check_options(cls, kwargs, spec)
    return cls(**kwargs)


def list_estimators(num_categories: int | None = None, provides=None, num_nodes: int | None = None) -> list[str]:
    """Registered names, optionally only those that serve nodes of ``num_categories`` categories of a task that
    provides ``provides`` (:func:`~scgbench.estimators.contract.compatibility`; ``None``: any task)."""
    every = frozenset(CAPABILITIES) if provides is None else provides
    return sorted(n for n, cls in registry().items()
                  if compatibility(cls, provides=every, num_nodes=num_nodes, num_categories=num_categories) is None)


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
    "ARM", "DecoupledStraightThrough", "DisARM", "GappedStraightThrough", "StraightThrough",
    "BINARY", "CAPABILITIES", "CATEGORICAL", "COST_ORACLE", "ENTRY_POINT_GROUP", "ESTIMATORS", "EVAL_MODES",
    "LOG_WEIGHTS", "OWN_PARAMETERISATION", "PATHWISE", "RELAXED_COST", "SCORE_FUNCTION", "Categorical", "Direct",
    "Estimate", "Estimator", "Exact", "GaussianPreimage", "GumbelRao", "GumbelSoftmax", "IGR", "IndeCateR",
    "KeyedStream", "Objective", "ReinMax", "Reinforce", "ScoreTape", "SpikeExp", "StraightThroughGumbel",
    "UnorderedSet", "check_options",
    "check_positive", "compatibility", "conditional_gumbel", "current_tape", "decoding", "estimator_origin",
    "estimator_spec", "estimators_of", "eval_noise_key", "expand_for_samples", "get_estimator", "get_estimator_class",
    "gumbel_noise", "keyed_gumbel", "keyed_noise", "keyed_normal", "keyed_uniform", "list_estimators", "num_samples",
    "register_estimator", "registry", "reinmax_sample", "score_tape", "spike_exp_sample", "sub_key",
    "MuProp", "NVIL", "REBAR", "RELAX", "VIMCO",
]
