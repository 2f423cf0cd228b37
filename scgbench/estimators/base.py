"""The estimator interface: turn parameters of a categorical distribution into a sample whose gradient
reaches the parameters (SPEC §1.2).

An :class:`Estimator` is a small ``nn.Module`` in the spirit of ``torch.distributions``: it holds only the
temperature ``tau`` and Gumbel scale ``beta`` (buffers, so they are checkpointed and resumed) and knows how
to sample in training and how to decode at evaluation. Its input is the last dimension of ``params``; the
first dimension is the (sample-expanded) batch. Extension points for later families:

* ``param_size(K)`` — how many inputs the network must produce for K categories (IGR needs 2(K−1));
* ``family`` — ``"pathwise"`` (the sample is differentiable in the parameters) or ``"score-function"``
  (hard sample; the gradient comes from :meth:`surrogate_loss` given the downstream cost);
* ``uses_temperature`` — whether TempMatch/TauAnn schedules apply to it; ``uses_gumbel_scale`` — whether its
  training sample depends on β (ReinMax and IGR draw no Gumbel noise of scale β);
* ``takes_logits`` — False for an estimator whose parameters are not the K logits (IGR); benchmarks declare
  whether their networks honour ``param_size`` (:class:`scgbench.benchmarks.registry.Benchmark`);
* ``needs_cost_oracle`` — True for an estimator that needs the task's cost of *alternative* configurations of a
  node group (Direct's coordinate-wise loss table, exact enumeration). It is used through :meth:`expected_cost`
  instead of ``forward`` and serves only task modules that declare ``provides_cost_oracle``;
* :meth:`check_node_group` — refuses, at config time, a group of N nodes × K categories it cannot serve
  (spike-and-exponential: K = 2 only; exact enumeration: K^N above its cap).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

PATHWISE = "pathwise"
SCORE_FUNCTION = "score-function"
EVAL_MODES = ("map", "sample")


def check_positive(name: str, value: float, flag: str | None = None) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}" + (f" (set {flag} to a positive value)" if flag else ""))
    return value


def param_size_refusal(task: str, estimator: str) -> str:
    """Why a task whose networks give each node K logits cannot serve an estimator with its own parameters."""
    return (f"{task} cannot use estimator {estimator!r}: it needs param_size(K) != K parameters per node (IGR: "
            f"2(K-1) Gaussian parameters), and this task's network gives every node its K logits (tied to the "
            f"task's category embeddings or scores); choose an estimator that takes logits")


def cost_oracle_refusal(task: str, estimator: str) -> str:
    """Why a task that cannot evaluate its loss at alternative latent configurations cannot serve an estimator that
    needs them (Direct, exact enumeration)."""
    return (f"{task} cannot use estimator {estimator!r}: it needs the task's loss at alternative configurations of "
            f"the discrete nodes (Direct's loss table, exact enumeration), which only tasks that can evaluate them "
            f"provide (discrete-vae); choose a pathwise or score-function estimator")


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
    """Base class. Subclasses implement :meth:`sample` (training) and declare ``name`` and ``family``."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = PATHWISE
    uses_temperature: ClassVar[bool] = True
    #: whether the training sample depends on the Gumbel scale β (TempMatch and the cosine scale schedule anneal it
    #: only for these; β still sets the scale of "sample" decoding at evaluation)
    uses_gumbel_scale: ClassVar[bool] = True
    #: whether the parameters are the K logits of the categories (``param_size(K) == K``); an estimator with its own
    #: parameterisation (IGR: 2(K−1) numbers) serves only benchmarks whose networks honour :meth:`param_size`
    takes_logits: ClassVar[bool] = True
    #: whether the estimator needs the task's cost of alternative configurations (:meth:`expected_cost`)
    needs_cost_oracle: ClassVar[bool] = False

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

    def param_size(self, num_categories: int) -> int:
        """Number of network outputs needed for ``num_categories`` categories."""
        return num_categories

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        """Raise ``ValueError`` (naming the limit and the fix) if the estimator cannot serve ``num_nodes``
        independent nodes of ``num_categories`` categories; task modules call it when they are configured."""

    def expected_cost(self, params: torch.Tensor, cost_fn) -> torch.Tensor:
        """For an estimator with ``needs_cost_oracle``: a per-example estimate of E_q[f(z)], q = Π_n Cat(softmax
        params[:, n]), whose gradient w.r.t. ``params`` is the estimator's gradient and w.r.t. the task's own
        parameters that of f at the configuration(s) used.

        ``params`` [B, N, K] are the logits of N independent nodes; ``cost_fn(z)`` maps one-hot configurations
        z [B, M, N, K] (M per example) to their costs [B, M] (differentiable in the task's parameters). Returns [B].
        """
        raise NotImplementedError(f"estimator {self.name!r} samples through forward(); it needs no cost oracle")

    def prior_kl(self, params: torch.Tensor) -> torch.Tensor:
        """KL of the posterior these parameters define to the uniform prior, per node (shape ``params.shape[:-1]``).

        The categorical KL ``Σ_k q_k log q_k + log K`` with q = softmax(θ) (a factorial Bernoulli(½) prior when
        K = 2); an estimator with its own posterior family overrides it (IGR: the closed-form Gaussian KL)."""
        logq = torch.log_softmax(params.float(), dim=-1)
        return (logq.exp() * logq).sum(-1) + math.log(params.shape[-1])

    def posterior_sample(self, params: torch.Tensor, key: int, ids: torch.Tensor,
                         samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` draws per example of the posterior the parameters define, for importance weighting:
        ``(z [B, S, N, K], log p(z) − log q(z) [B, S])`` with p the uniform prior.

        Here the discrete posterior q = Π_n Cat(softmax θ_n) by Gumbel-max (hard one-hot z, also for estimators
        trained with a relaxation; SPEC §2.6), with noise keyed by (``key``, example id, sample, node, category)
        (:func:`scgbench.estimators.noise.keyed_gumbel`), so the bound does not depend on batching or rank."""
        from .noise import keyed_gumbel

        b, n, k = params.shape
        logq = torch.log_softmax(params.float(), dim=-1)[:, None].expand(b, samples, n, k)
        idx = (logq + keyed_gumbel(key, ids, (b, samples, n, k))).argmax(-1, keepdim=True)
        z = torch.zeros_like(logq).scatter_(-1, idx, 1.0)
        return z, -n * math.log(k) - logq.gather(-1, idx).squeeze(-1).sum(-1)

    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sample in training; in evaluation decode with MAP (argmax θ) or a Gumbel-max sample at scale β."""
        x, valid = masked_logits(params, mask)
        if self.training:
            z = self.sample(x)
        elif self.eval_mode == "map":
            z = one_hot_argmax(x)
        else:
            z = one_hot_argmax(self.perturb_eval(x))
        return (z * valid).to(params.dtype)

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

    def surrogate_loss(self, cost: torch.Tensor) -> torch.Tensor:
        """Extra loss whose gradient is the estimator's gradient contribution (0 for pathwise)."""
        return cost.new_zeros(())

    def reset(self) -> None:
        """Forget per-step state (score-function estimators record log-probabilities)."""

    @property
    def num_samples(self) -> int:
        return 1

    @property
    def evaluations_per_step(self) -> int:
        """How many times the downstream computation (decoder, executor, scorer) runs per training example and
        step because of this estimator: 1 for a pathwise one, S for a score-function estimator that draws S
        samples per example (the task module repeats the batch S times: :func:`scgbench.estimators.num_samples`)."""
        return self.num_samples

    def extra_repr(self) -> str:
        return f"tau={float(self.tau):g}, beta={float(self.beta):g}, eval_mode={self.eval_mode}"
