"""The estimator interface: turn parameters of a node's distribution into a sample whose gradient reaches the
parameters (SPEC §1.2). The contract an estimator and a task agree on is :mod:`scgbench.estimators.contract`.

An :class:`Estimator` is a small ``nn.Module`` in the spirit of ``torch.distributions``: it holds the temperature
``tau`` and Gumbel scale ``beta`` (buffers, so they are checkpointed and resumed) and its own state (baselines,
control-variate parameters), and knows how to sample in training and how to decode at evaluation. Its input is the
last dimension of ``params``; the first dimension is the (sample-expanded) batch. It declares:

* ``family`` — the gradient rule's family: ``"pathwise"`` (the sample is differentiable in the parameters) or
  ``"score-function"`` (hard sample; the gradient comes from :meth:`Estimator.surrogate_loss` given the cost);
* ``node_kinds`` — :data:`~scgbench.estimators.contract.CATEGORICAL` and/or ``BINARY`` nodes;
* ``requires`` — the task capabilities it needs (:data:`scgbench.estimators.contract.CAPABILITIES`);
* ``distribution`` — its posterior family (:mod:`scgbench.estimators.distributions`), which sets
  :meth:`Estimator.param_size`, the KL and the posterior samples of an importance-weighted bound;
* :meth:`Estimator.evaluations` — cost evaluations per example and training step for a node group;
* :meth:`Estimator.check_node_group` — refuses a group of N nodes × K categories its options cannot serve;
* :meth:`Estimator.parameter_groups` — its own parameters with their optimizer settings (none for most);
* ``uses_temperature`` / ``uses_gumbel_scale`` — whether TempMatch/TauAnn schedules act on its τ / β.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .contract import BINARY, CATEGORICAL, Estimate, Objective, current_tape, score_tape
from .distributions import Categorical

PATHWISE = "pathwise"
SCORE_FUNCTION = "score-function"
EVAL_MODES = ("map", "sample")


def check_positive(name: str, value: float, flag: str | None = None) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}" + (f" (set {flag} to a positive value)" if flag else ""))
    return value


def exponential_noise(shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
    """E = −log U ~ Exp(1), float32, finite and > 0.

    U is drawn with ``torch.rand`` — in float64 on the CPU (53-bit uniforms: E is resolved down to 2⁻⁵³, so the
    Gumbel noise −log E is exact in its upper tail to ≈ 36) and in float32 elsewhere, as ``exponential_`` does on
    CUDA — and clamped away from 0. On the CPU this is 2–4× faster than ``Tensor.exponential_`` (which
    ``torch.nn.functional.gumbel_softmax`` uses), the largest part of a Gumbel-softmax step there.
    """
    if getattr(device, "type", device) == "cpu":
        u = torch.rand(shape, device=device, dtype=torch.float64)
        return u.clamp_min_(torch.finfo(torch.float64).tiny).log_().neg_().float()
    u = torch.rand(shape, device=device, dtype=torch.float32)
    return u.clamp_min_(torch.finfo(torch.float32).tiny).log_().neg_()


def log_exponential(shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``log E`` (float32), E ~ Exp(1) (:func:`exponential_noise`): the negated standard Gumbel noise, G = −log E."""
    return exponential_noise(shape, device).log_()


def gumbel_noise(shape: torch.Size, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """G ~ Gumbel(0, 1) = −log E with E ~ Exp(1) (= −log(−log U)), finite (:func:`log_exponential`)."""
    g = log_exponential(shape, device).neg_()
    return g if dtype == torch.float32 else g.to(dtype)


def masked_logits(params: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits with masked entries at −inf, plus a ``[..., 1]`` flag of rows with any finite entry.

    Rows that are entirely −inf (padding) are replaced by zeros so no NaN is produced; callers multiply
    their output by the flag so such rows come out as all-zero vectors with zero gradient.
    """
    x = params.float()
    if mask is not None:
        x = x.masked_fill(~mask.bool(), float("-inf"))
    valid = (x > float("-inf")).any(dim=-1, keepdim=True)
    x = torch.where(valid, x, torch.zeros_like(x))
    return x, valid


def one_hot_argmax(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x).scatter_(-1, x.argmax(dim=-1, keepdim=True), 1.0)


def one_hot_max(y: torch.Tensor) -> torch.Tensor:
    """``one_hot(argmax y)`` where a row has a finite entry, the zero vector where it is entirely −inf (one pass:
    ``max`` gives the index and tells the rows apart)."""
    m, idx = y.max(dim=-1, keepdim=True)
    return torch.zeros_like(y).scatter_(-1, idx, (m > float("-inf")).to(y.dtype))


class Estimator(nn.Module):
    """Base class. Subclasses implement :meth:`sample` (training) and declare ``name``, ``family``, ``node_kinds``
    and ``requires`` (module docstring; :mod:`scgbench.estimators.contract`)."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = PATHWISE
    #: the nodes it serves: CATEGORICAL (any K >= 2; K = 2 included) and/or BINARY (K = 2 only)
    node_kinds: ClassVar[frozenset] = frozenset({CATEGORICAL, BINARY})
    #: the task capabilities it needs (contract.CAPABILITIES); a task provides a superset or is refused
    requires: ClassVar[frozenset] = frozenset()
    #: its posterior family (stateless for every estimator but IGR, whose family holds its fitted prior)
    distribution = Categorical()
    uses_temperature: ClassVar[bool] = True
    #: whether the training sample depends on the Gumbel scale β (TempMatch and the cosine scale schedule anneal it
    #: only for these; β still sets the scale of "sample" decoding at evaluation)
    uses_gumbel_scale: ClassVar[bool] = True
    #: why, as configured, it needs the task to fix its number of nodes (parameters built for one node group:
    #: NVIL's ``baseline_input=params``), or None; a task that does not fix it is refused (contract.compatibility)
    needs_node_count: str | None = None

    def __init__(self, tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__()
        check_positive("tau", tau, "--model.tau")
        if not float(beta) >= 0:
            raise ValueError(f"beta (Gumbel scale) must be >= 0, got {beta} (set --model.beta >= 0)")
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.register_buffer("beta", torch.tensor(float(beta)))
        self._sync_scalars()
        self.eval_mode = eval_mode
        # evaluation noise of the current batch (a KeyedStream), set by scgbench.estimators.keyed_noise
        self.eval_noise = None
        self._group: tuple[int, int] | None = None  # the node group (N, K) the task configured, if any

    @property
    def eval_mode(self) -> str:
        return self._eval_mode

    @eval_mode.setter
    def eval_mode(self, mode: str) -> None:
        if mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {mode!r}")
        self._eval_mode = mode

    def set_tau(self, tau: float) -> None:
        self.tau.fill_(check_positive("tau", tau))
        self._tau_f = float(tau)

    def set_beta(self, beta: float) -> None:
        if not float(beta) >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta.fill_(float(beta))
        self._beta_f = float(beta)

    # τ and β live in buffers (checkpointed, resumed, moved with the module) and, for the forward pass, in the
    # Python floats ``_tau_f`` / ``_beta_f``: reading a buffer's value there (``float(self.beta)``) would be a
    # host sync per call on a GPU and a graph break under torch.compile. The floats follow every write that goes
    # through :meth:`set_tau`, :meth:`set_beta` or ``load_state_dict`` (the schedules and checkpoint restores do).
    def _sync_scalars(self) -> None:
        self._tau_f, self._beta_f = float(self.tau), float(self.beta)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._sync_scalars()

    # -- what it needs and costs ----------------------------------------------------------------------------------
    def param_size(self, num_categories: int) -> int:
        """Number of network outputs needed for ``num_categories`` categories (its distribution's)."""
        return self.distribution.param_size(num_categories)

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        """Raise ``ValueError`` (naming the limit and the fix) if the estimator, as configured, cannot serve
        ``num_nodes`` independent nodes of ``num_categories`` categories; record the group for
        :attr:`evaluations_per_step`. Subclasses with limits check them and call ``super()``."""
        n, k = int(num_nodes), int(num_categories)
        if n < 1 or k < 2:
            raise ValueError(f"{self.name} needs at least 1 node of at least 2 categories, got {n}x{k}")
        if k != 2 and CATEGORICAL not in self.node_kinds:
            raise ValueError(f"{self.name} serves binary nodes only (K = 2), got K = {k}; use a binary latent, e.g. "
                             f"--model.latent 200x2")
        self._group = (n, k)

    def node_group(self, params: torch.Tensor) -> tuple[int, int, int]:
        """``(B, N, K)`` of a node group's parameters [B, N, K], the group checked and recorded on its first use (or
        when it changes): the preamble of an :meth:`estimate` that works on the whole group."""
        if params.dim() != 3:
            raise ValueError(f"{self.name} expects params [B, N, K], got shape {tuple(params.shape)}")
        b, n, k = params.shape
        if self._group != (n, k):
            self.check_node_group(n, k)
        return b, n, k

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """Cost (decoder, executor, scorer) evaluations per training example and step for a group of N × K nodes:
        1 for a pathwise estimator, S for a score-function estimator that draws S samples per example (the task
        repeats the batch S times: :func:`scgbench.estimators.expand_for_samples`)."""
        return self.num_samples

    @classmethod
    def options_for_evaluations(cls, evaluations: int, num_nodes: int, num_categories: int) -> dict | None:
        """The options that make this estimator spend ``evaluations`` cost evaluations per example and step on a group
        of N × K nodes (its sample count, e.g. ``{"num_samples": 8}``), or the largest count below it where that
        one cannot be met — gradcheck's ``--match-evaluations``. ``None`` (the default) when no option sets its
        evaluations (a pathwise estimator's 1, Direct's N·K + 1, exact's K^N) or none reaches down to
        ``evaluations``."""
        return None

    @property
    def evaluations_per_step(self) -> int:
        """:meth:`evaluations` for the configured node group. An estimator whose count depends on the group
        (Direct: N·K + 1) needs :meth:`check_node_group` first; asking earlier is an error."""
        if self._group is not None:
            return self.evaluations(*self._group)
        if type(self).evaluations is not Estimator.evaluations:
            raise RuntimeError(f"{self.name}'s evaluations per step depend on the node group: call "
                               "check_node_group(num_nodes, num_categories) when configuring the task module")
        return self.num_samples

    @property
    def num_samples(self) -> int:
        """Samples per example a node call expects (the task repeats its batch this many times)."""
        return 1

    def parameter_groups(self) -> list[dict]:
        """The estimator's own trainable parameters as optimizer parameter groups (``{"params": [...], "lr": ...}``);
        the task's optimizer adds them beside its own. Empty for estimators without parameters."""
        own = [p for p in self.parameters() if p.requires_grad]
        return [{"params": own}] if own else []

    # -- the two ways a task calls it -------------------------------------------------------------------------------
    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """A node call: sample in training; in evaluation decode with MAP (argmax θ) or a Gumbel-max sample at
        scale β. Score-function estimators record log q of the sample on the active score tape."""
        x, valid = masked_logits(params, mask)
        if self.training:
            z = self.sample(x)
        elif self.eval_mode == "map":
            z = one_hot_argmax(x)
        else:
            z = one_hot_argmax(self.perturb_eval(x))
        return (z * valid).to(params.dtype)

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        """A node group with the task's objective (:class:`~scgbench.estimators.contract.Objective`): params
        [B, N, P]. This default draws ``num_samples`` samples per example through the node call and returns their
        costs with the score tape's surrogate; estimators that need the task's cost oracle override it."""
        s = self.num_samples if self.family != PATHWISE else 1
        ps = params if s == 1 else params.repeat(s, *([1] * (params.dim() - 1)))
        with score_tape() as tape:
            cost = objective.sample_cost(self(ps))
            surrogate = tape.surrogate(cost)
        return Estimate(cost, surrogate, self.evaluations(params.shape[-2], params.shape[-1])
                        if params.dim() >= 2 else s)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """θ + β·G: Gumbel-max of this samples from softmax(θ/β) (thesis Eq. 5.15)."""
        if self._beta_f == 0:
            return x
        return log_exponential(x.shape, x.device).mul_(-self._beta_f).add_(x)

    def perturb_eval(self, x: torch.Tensor) -> torch.Tensor:
        """θ + β·G for sampled decoding (Eq. 5.15). Inside :func:`scgbench.estimators.keyed_noise` G is the keyed
        noise of each example (the same in any batch, on any rank); outside it, G comes from the global RNG."""
        if self.eval_noise is None:
            return self.perturb(x)
        if self._beta_f == 0:
            return x
        return x + self._beta_f * self.eval_noise.gumbel(x)

    def sample(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def record(self, log_prob: torch.Tensor, **extras: torch.Tensor) -> None:
        """Put this call's log q(z) [S·B] on the active score tape (:func:`~scgbench.estimators.contract.score_tape`),
        with any per-call ``extras`` [S·B] its :meth:`surrogate_loss` takes as keyword arguments (summed over the
        estimator's calls of the step, like log q). Outside a tape (a node call in a tool that differentiates the
        sample only) nothing is kept."""
        tape = current_tape()
        if tape is not None:
            tape.record(self, log_prob, **extras)

    def surrogate_loss(self, cost: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
        """The score-function term for per-sample ``cost`` and the summed log q of this estimator's calls (0 for a
        pathwise estimator)."""
        return cost.new_zeros(())

    def extra_repr(self) -> str:
        return f"tau={float(self.tau):g}, beta={float(self.beta):g}, eval_mode={self.eval_mode}"
