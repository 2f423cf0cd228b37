"""Invertible Gaussian Reparameterization, IGR-I (Potapczynski, Loaiza-Ganem, Cunningham, NeurIPS 2020; seed 003
§4; SPEC §1.2).

Parameters: per node 2(K−1) numbers ``(μ, log σ)`` (:meth:`IGR.param_size`), μ, σ ∈ R^{K−1}. Sample (Eqs. 16, 17,
21 of the seed):

    y = μ + diag(σ) ε,  ε ~ N(0, I_{K−1})                                          (16)
    z̃ = g(y, τ),  g(y, τ)_k = exp(y_k/τ) / (Σ_{j<K} exp(y_j/τ) + δ)  for k < K,  z̃_K = 1 − Σ_{k<K} z̃_k   (17, 21)

softmax₊₊ with δ > 0 (default 0.1; the seed's code warns that a too small δ all but removes the K-th category).
Written as a softmax, ``z̃ = softmax([y/τ, log δ])``: the K-th category is the one with the fixed logit log δ, so
z̃ lies on the simplex (K entries, sum 1) and is invertible, ``y_k = τ·(log z̃_k − log z̃_K + log δ)``; as τ → 0
it tends to the vertex of argmax [y, 0] (Gaussian noise, lighter tails than Gumbel).

KL (Eq. 19): the map ε → z̃ is invertible, so the KL of the relaxed posterior to the relaxed prior (the same map
applied to N(μ₀, σ₀²)) is the closed-form Gaussian KL of its family
(:class:`scgbench.estimators.distributions.GaussianPreimage`), summed over the K−1 coordinates:

    KL(N(μ, σ²) ‖ N(μ₀, σ₀²)) = Σ_k log(σ₀/σ) + (σ² + (μ − μ₀)²) / (2σ₀²) − ½

Prior (Eq. 20): (μ₀, σ₀) are fitted once so that the relaxed prior matches a discrete prior p₀ (default uniform),
:meth:`IGR.fit_prior`. Eq. 20 as printed, ``argmin E‖z̃ − p₀‖²``, is minimised by σ₀ → 0 (a point mass at p₀,
whose KL is infinite) whenever p₀ is inside the simplex, so what is matched is the first moment, as the seed
calls it ("a very simple moment matching problem") and as its code's prior fit does: the mean of the relaxed
prior sample at the run's τ and δ, ``E[g(μ₀ + σ₀ε, τ)]``, is matched to the probabilities p₀ (squared error over
a fixed set of ε draws), with σ₀ held at ``prior_sigma`` (or fitted from it with ``fit_sigma=True``).

Evaluation: MAP decodes argmax g(μ, τ) (ε = 0); "sample" decodes argmax g(μ + σε, τ) with keyed Gaussian noise
(:func:`scgbench.estimators.keyed_noise`). β is not used (``uses_gumbel_scale = False``).
"""

from __future__ import annotations

import math

import torch

from .base import PATHWISE, Estimator, check_positive, masked_logits, one_hot_argmax
from .contract import OWN_PARAMETERISATION
from .distributions import GaussianPreimage


class IGR(Estimator):
    """IGR-I: ``z̃ = softmax₊₊((μ + σ ε)/τ)`` with δ, from 2(K−1) parameters ``(μ, log σ)`` per node (module
    docstring; seed 003 Eqs. 16, 17, 19–21)."""

    name = "igr"
    family = PATHWISE
    uses_gumbel_scale = False
    requires = frozenset({OWN_PARAMETERISATION})

    def __init__(self, delta: float = 0.1, prior_mu: float = 0.0, prior_sigma: float = 1.0, tau: float = 1.0,
                 beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if not float(delta) > 0:
            raise ValueError(f"igr needs delta > 0 (softmax++'s extra term, which makes it invertible onto the "
                             f"simplex), got {delta} (set --estimator-arg delta=0.1)")
        check_positive("prior_sigma", prior_sigma, "--estimator-arg prior_sigma")
        self.delta = float(delta)
        self._log_delta = math.log(self.delta)
        # the prior's (μ₀, log σ₀): scalars (the same for every coordinate) until fit_prior sets one per coordinate
        self.register_buffer("prior_mu", torch.tensor(float(prior_mu)))
        self.register_buffer("prior_log_sigma", torch.tensor(math.log(float(prior_sigma))))

    # -- parameters ------------------------------------------------------------------------------------------------
    @property
    def distribution(self) -> GaussianPreimage:
        """Its posterior family at the current τ, δ and fitted prior (built per use: τ is annealed)."""
        return GaussianPreimage(self._tau_f, self.delta, self.prior_mu, self.prior_log_sigma)

    split = staticmethod(GaussianPreimage.split)

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """``[y/τ, log δ]``: softmax of these is softmax₊₊(y/τ) with its K-th coordinate (Eq. 21)."""
        return torch.cat([y / self._tau_f, y.new_full((*y.shape[:-1], 1), self._log_delta)], dim=-1)

    # -- sampling ------------------------------------------------------------------------------------------------
    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mu, log_sigma = self.split(params)
        if self.training:
            y = mu + log_sigma.exp() * torch.randn_like(mu)
        elif self.eval_mode == "map":
            y = mu
        else:
            eps = torch.randn_like(mu) if self.eval_noise is None else self.eval_noise.normal(mu)
            y = mu + log_sigma.exp() * eps
        x = self.logits(y)
        if mask is None:
            return (torch.softmax(x, dim=-1) if self.training else one_hot_argmax(x)).to(params.dtype)
        x, valid = masked_logits(x, mask)
        z = torch.softmax(x, dim=-1) if self.training else one_hot_argmax(x)
        return (z * valid).to(params.dtype)

    # -- prior ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def prior_mean(self, num_categories: int, samples: int = 20_000, seed: int = 0) -> torch.Tensor:
        """Monte-Carlo mean of the relaxed prior sample ``E[g(μ₀ + σ₀ε, τ)]`` (K entries), fixed noise."""
        eps = torch.randn(samples, num_categories - 1, generator=torch.Generator().manual_seed(seed))
        mu0, sigma0 = self._prior_vectors(num_categories)
        return torch.softmax(self.logits(mu0 + sigma0 * eps), dim=-1).mean(0)

    def _prior_vectors(self, num_categories: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (num_categories - 1,)
        return (self.prior_mu.detach().float().cpu().expand(shape).clone(),
                self.prior_log_sigma.detach().float().cpu().exp().expand(shape).clone())

    def fit_prior(self, num_categories: int, p0: torch.Tensor | None = None, samples: int = 4096, steps: int = 300,
                  lr: float = 0.05, fit_sigma: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Fit (μ₀, σ₀) once, by moment matching (Eq. 20; module docstring): minimise
        ``‖(1/S) Σ_s g(μ₀ + σ₀ε_s, τ) − p₀‖²`` over μ₀ (and log σ₀ with ``fit_sigma``) for S fixed draws ε_s, with
        Adam from the point-mass solution ``g(μ₀, τ) = p₀``. p₀: the discrete prior (K probabilities; default
        uniform). Sets the buffers ``prior_mu`` and ``prior_log_sigma`` (one entry per coordinate) and returns
        ``(μ₀, σ₀)``."""
        k = int(num_categories)
        self.param_size(k)
        p0 = torch.full((k,), 1.0 / k) if p0 is None else torch.as_tensor(p0, dtype=torch.float32).cpu()
        if p0.shape != (k,) or not torch.all(p0 > 0) or abs(float(p0.sum()) - 1) > 1e-5:
            raise ValueError(f"p0 must be {k} positive probabilities summing to 1, got {p0.tolist()}")
        eps = torch.randn(samples, k - 1, generator=torch.Generator().manual_seed(seed))
        _, sigma0 = self._prior_vectors(k)
        with torch.enable_grad():
            # g(μ, τ) = p₀  ⇔  μ_k = τ·(log p₀_k − log p₀_K + log δ): the σ₀ → 0 solution, a good start
            mu = (self._tau_f * (p0[:-1].log() - p0[-1].log() + self._log_delta)).requires_grad_(True)
            log_sigma = sigma0.log().requires_grad_(fit_sigma)
            opt = torch.optim.Adam([mu, log_sigma] if fit_sigma else [mu], lr=lr)
            for _ in range(int(steps)):
                opt.zero_grad()
                mean = torch.softmax(self.logits(mu + log_sigma.exp() * eps), dim=-1).mean(0)
                loss = (mean - p0).pow(2).sum()
                loss.backward()
                opt.step()
        device = self.prior_mu.device
        self.prior_mu = mu.detach().to(device)
        self.prior_log_sigma = log_sigma.detach().to(device)
        return self.prior_mu.clone(), self.prior_log_sigma.exp()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a checkpoint written after fit_prior holds one prior entry per coordinate: take its shape
        for name in ("prior_mu", "prior_log_sigma"):
            value = state_dict.get(prefix + name)
            if value is not None and value.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(value, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def describe(self) -> dict:
        mu0, log_sigma0 = self.prior_mu, self.prior_log_sigma
        return {"delta": self.delta, "tau": float(self.tau), "eval_mode": self.eval_mode,
                "prior_mu": mu0.tolist(), "prior_sigma": log_sigma0.exp().tolist()}

    def extra_repr(self) -> str:
        return f"delta={self.delta:g}, tau={float(self.tau):g}, eval_mode={self.eval_mode}"
