"""The estimator contract: what an estimator needs from a task, what a task provides, and the one question both
sides ask — :func:`compatibility` (SPEC §1.2).

An estimator (:class:`scgbench.estimators.base.Estimator`) declares

* ``node_kinds`` — the nodes it serves: :data:`CATEGORICAL` (any K ≥ 2) and/or :data:`BINARY` (K = 2, a Bernoulli
  node written as two logits ``[θ₀, θ₁]``, its Bernoulli logit α = θ₁ − θ₀);
* ``requires`` — the task capabilities it needs (:data:`CAPABILITIES`);
* ``distribution`` — the posterior family its parameters define (:mod:`scgbench.estimators.distributions`),
  apart from the gradient rule, as in ``torch.distributions``;
* :meth:`~scgbench.estimators.base.Estimator.evaluations` — how many cost evaluations per example one training step
  costs for a node group of N nodes × K categories;
* :meth:`~scgbench.estimators.base.Estimator.check_node_group` — a refusal of a node group its options cannot serve
  (exact enumeration above its cap).

A task module declares ``provides`` (a frozenset of capabilities). Tasks call estimators in one of two ways, by
what the task can offer, never by which estimator it is:

* **a node inside a forward pass** (every task): ``z = estimator(params, mask)``. Score-function estimators record
  ``log q(z)`` of each call on the active :class:`ScoreTape` (opened per training step by the task module), and the
  task turns the tape into a surrogate with the per-sample cost: ``tape.surrogate(cost)``, or a cost per node with
  ``tape.surrogate(cost, per_estimator={est: cost_of_that_node})``. Nothing is left on the estimator between steps.
* **a node group with an objective** (tasks that provide :data:`COST_ORACLE`): ``estimator.estimate(params,
  objective)`` → :class:`Estimate`. Every registered estimator answers it (the base class samples through the node
  call above); those that need more than samples (Direct, exact, VIMCO, ARM/DisARM, MuProp, REBAR/RELAX,
  unordered-set, IndeCateR) implement it with the :class:`Objective`'s callables.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .base import Estimator

# -- node kinds -------------------------------------------------------------------------------------------------------
CATEGORICAL = "categorical"
BINARY = "binary"
NODE_KINDS = (CATEGORICAL, BINARY)

# -- capabilities: what an estimator may need and a task may provide -----------------------------------------------------
#: f at any hard configuration of the node group: ``Objective.cost(z [B, M, N, K]) -> [B, M]`` (Direct's loss table,
#: exact enumeration, ARM/DisARM's antithetic pair, unordered-set and IndeCateR's configurations)
COST_ORACLE = "cost-oracle"
#: f at points of the simplex, not only at vertices (MuProp's mean-field point, REBAR/RELAX's relaxed control variate)
RELAXED_COST = "relaxed-cost"
#: the task's prior log p(z) and analytic KL, so that an estimator can form importance weights
#: log w = log p(x|z) + log p(z) − log q(z) (VIMCO's K-sample bound)
LOG_WEIGHTS = "log-weights"
#: the task's networks give each node ``estimator.param_size(K)`` numbers, not K logits tied to the task (IGR)
OWN_PARAMETERISATION = "own-parameterisation"

CAPABILITIES = {
    COST_ORACLE: "the task's loss at alternative configurations of the node group",
    RELAXED_COST: "the task's loss at relaxed (simplex) inputs",
    LOG_WEIGHTS: "the task's prior log p(z) for importance weights",
    OWN_PARAMETERISATION: "networks that give each node param_size(K) parameters (not K tied logits)",
}


def node_kind(num_categories: int) -> str:
    """The kind of a node of ``num_categories`` categories (K = 2 nodes are served as binary or categorical)."""
    return BINARY if int(num_categories) == 2 else CATEGORICAL


def compatibility(estimator: "type[Estimator] | Estimator", *, provides: frozenset | set | tuple = (),
                  num_nodes: int | None = None, num_categories: int | None = None, task: str = "this task",
                  options: dict | None = None) -> str | None:
    """Why ``estimator`` cannot serve a group of ``num_nodes`` nodes × ``num_categories`` categories of a task that
    provides ``provides`` — ``None`` when it can. The one place config checks, task modules, ``list``,
    ``gradcheck`` and ``profile`` ask; the reason names what is missing and the fix.

    ``estimator``: a class (checked with ``options`` or its defaults) or an instance (checked as configured).
    Unknown node sizes (None) skip the node checks, except that an estimator that needs the number of nodes
    (``Estimator.needs_node_count``) is refused.
    """
    cls = estimator if isinstance(estimator, type) else type(estimator)
    name = cls.name or cls.__name__
    missing = [c for c in sorted(cls.requires) if c not in set(provides)]
    if missing:
        what = "; ".join(f"{c} ({CAPABILITIES.get(c, c)})" for c in missing)
        return (f"{task} cannot use estimator {name!r}: it needs {what}, which {task} does not provide; choose an "
                f"estimator that does not need it (`scgbench list` shows each estimator's needs)")
    if num_categories is not None:
        k = int(num_categories)
        kind = node_kind(k)
        if kind not in cls.node_kinds and not (kind == BINARY and CATEGORICAL in cls.node_kinds):
            return (f"{task} cannot use estimator {name!r}: it serves {' and '.join(sorted(cls.node_kinds))} nodes "
                    f"only, and this task's nodes have K = {k} categories; use a binary latent (e.g. "
                    f"--model.latent 200x2) or an estimator for categorical nodes")
        try:
            inst = estimator if not isinstance(estimator, type) else cls(**(options or {}))
            inst.check_node_group(1 if num_nodes is None else int(num_nodes), k)
        except (TypeError, ValueError) as e:
            return f"{task} cannot use estimator {name!r}: {e}"
    if num_nodes is None:  # a class without options is checked as declared (no instance built)
        try:
            inst = cls(**options) if isinstance(estimator, type) and options else estimator
        except (TypeError, ValueError) as e:
            return f"{task} cannot use estimator {name!r}: {e}"
        if inst.needs_node_count:
            return f"{task} cannot use estimator {name!r} as configured: {inst.needs_node_count}"
    return None


# -- what a task hands an estimator for a node group ----------------------------------------------------------------
@dataclass
class Objective:
    """A task's objective for one node group of N nodes × K categories, for :meth:`Estimator.estimate`.

    ``sample_cost(z)`` — the per-sample cost of samples z [S·B, N, K] of the (sample-major repeated) batch, the
    same computation a task runs on a node call's output; ``cost(z)`` — cost at configurations z [B, M, N, K]
    (:data:`COST_ORACLE`; relaxed z too with :data:`RELAXED_COST`); ``log_prior(z)`` [B, M] and ``kl(params)``
    [B], the prior's log-probability and the analytic KL the task adds to the estimate (:data:`LOG_WEIGHTS`).
    ``provides`` says which of these the task filled in.
    """

    sample_cost: Callable[[torch.Tensor], torch.Tensor]
    cost: Callable[[torch.Tensor], torch.Tensor] | None = None
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None
    kl: Callable[[torch.Tensor], torch.Tensor] | None = None
    provides: frozenset = frozenset()

    def need(self, capability: str, estimator: str) -> Callable:
        fn = {COST_ORACLE: self.cost, RELAXED_COST: self.cost, LOG_WEIGHTS: self.log_prior}[capability]
        if capability not in self.provides or fn is None:
            raise RuntimeError(f"estimator {estimator!r} needs {capability} ({CAPABILITIES[capability]}), which "
                               f"this objective does not provide")
        return fn


@dataclass
class Estimate:
    """One training step's estimate for a node group.

    ``cost`` — per-sample cost, live (gradients reach the task's own parameters); the task averages it, and its
    value is the estimate of E_q[f] (for VIMCO: of the task's negative K-sample bound less the KL the task adds);
    ``surrogate`` — a scalar of value 0 in expectation whose gradient w.r.t. the node parameters carries the
    estimator's score-function / control-variate terms (zero tensor for a pathwise estimator); ``evaluations`` —
    cost evaluations per example this step.
    """

    cost: torch.Tensor
    surrogate: torch.Tensor
    evaluations: int

    @property
    def loss(self) -> torch.Tensor:
        return self.cost.mean() + self.surrogate


# -- score-function terms, collected per call -------------------------------------------------------------------------
@dataclass
class _Entry:
    estimator: "Estimator"
    log_prob: torch.Tensor  # [S·B]: log q of the call's sample, summed over the node's other dimensions
    #: per-call tensors [S·B] the estimator's surrogate needs besides log q (NVIL's baseline C_ψ(θ)); summed over
    #: the calls of one estimator like log q, and passed to ``surrogate_loss`` as keyword arguments
    extras: dict = field(default_factory=dict)


@dataclass
class ScoreTape:
    """The score-function terms of one training step, one entry per node call (no state on the estimators)."""

    entries: list[_Entry] = field(default_factory=list)

    def record(self, estimator: "Estimator", log_prob: torch.Tensor, **extras: torch.Tensor) -> None:
        self.entries.append(_Entry(estimator, log_prob, extras))

    def surrogate(self, cost: torch.Tensor, per_estimator: dict | None = None) -> torch.Tensor:
        """Σ over the tape's estimators of their surrogate for the summed log q of their calls: the cost of a
        node's execution path is ``per_estimator.get(estimator, cost)`` (a task whose nodes have different
        downstream costs passes them). Zero when nothing was recorded (every node pathwise)."""
        total = cost.new_zeros(())
        grouped: dict[int, tuple["Estimator", list[torch.Tensor], dict[str, list[torch.Tensor]]]] = {}
        for e in self.entries:
            _, logps, extras = grouped.setdefault(id(e.estimator), (e.estimator, [], {}))
            logps.append(e.log_prob)
            for key, value in e.extras.items():
                extras.setdefault(key, []).append(value)
        for est, logps, extras in grouped.values():
            c = cost if per_estimator is None else per_estimator.get(est, cost)
            log_p = logps[0] if len(logps) == 1 else torch.stack(logps).sum(0)
            if extras:  # only estimators that record extras take them (the older ones keep their signature)
                kw = {k: v[0] if len(v) == 1 else torch.stack(v).sum(0) for k, v in extras.items()}
                total = total + est.surrogate_loss(c, log_p, **kw)
            else:
                total = total + est.surrogate_loss(c, log_p)
        self.entries.clear()
        return total


_TAPE: contextvars.ContextVar[ScoreTape | None] = contextvars.ContextVar("scgbench_score_tape", default=None)


def current_tape() -> ScoreTape | None:
    return _TAPE.get()


@contextmanager
def score_tape() -> Iterator[ScoreTape]:
    """Open a tape that the node calls inside the block record their score-function terms on."""
    tape = ScoreTape()
    token = _TAPE.set(tape)
    try:
        yield tape
    finally:
        _TAPE.reset(token)
