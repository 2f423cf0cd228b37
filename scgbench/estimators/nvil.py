"""NVIL: the score-function estimator with learned baselines and variance normalisation (Mnih & Gregor, ICML 2014,
"Neural variational inference and learning in belief networks", §3 and Algorithm 1; SPEC §1.2).

With the learning signal f(z) (here the task's cost, to be minimised) and a baseline that does not depend on z,

    ĝ = ((f(z) − c − C_ψ(θ̄)) / max(1, √v)) · ∇_θ log q(z),

where

* c is a global baseline: an exponential moving average (decay ``decay``, the paper's α = 0.8) of the batch mean of
  f − C_ψ (a buffer: checkpointed and resumed);
* C_ψ is the input-dependent baseline network. **Stated choice:** estimators know nothing of a task's input x, so
  C_ψ takes the detached node parameters θ̄ = sg(θ(x)) of the call in place of x. θ̄ is a function of x only, never
  of the sample, so the baseline stays z-independent and the estimate unbiased. Its architecture is size-agnostic
  (every task's node shapes differ, ListOps' from batch to batch): each node's distribution is summarised by its
  ``features`` largest probabilities (sorted, zero-padded) and its entropy, a one-hidden-layer tanh network
  (``hidden`` units, the paper's 100-unit baseline MLP) maps each node's summary to ``hidden`` numbers, these are
  summed over the nodes of the call and a linear layer gives C_ψ (a Deep Sets network);
  several calls of one estimator add their C_ψ, as their log q add;
* v is an exponential moving average of the batch variance of f − C_ψ, and the centred signal is divided by
  max(1, √v) when ``normalise`` (the paper's variance normalisation: it only ever shrinks the signal).
  **Stated choice: off by default.** In the paper the learning signal is the whole objective log p(x, h) − log q(h|x),
  so normalising it rescales every gradient term alike; the suite's tasks add their KL analytically, outside the
  signal, and dividing only the score term by √v (~30 nats on a VAE) shrinks the reconstruction gradient against the
  KL's: on the discrete VAE's quick profile the posterior collapsed (KL 0.003 nats, −ELBO 205.9 on three seeds, where
  REINFORCE reaches 150). ``normalise=True`` gives the paper's update.

**Baseline input (option ``baseline_input``).** ``"params"`` is the closer reading of the paper's C_ψ(x), an MLP on
the input: a one-hidden-layer tanh network (``hidden`` units) on the call's detached probabilities in node order (one
number per binary node, its P(z = 1); K per categorical node), built for the node group by ``check_node_group`` (as
RELAX's r_ρ), so it serves only tasks whose node layout is fixed (the discrete VAE; not ListOps). Why it exists: on
the binary DisARM protocol (200b-linear, disarm-1e5, seed 0's trained NVIL model; 2,000 training images × 32 samples
each, misses scored on the held-out 1,000) the summary baseline misses 4,614 nats² of the cost's 5,473 nats²
between-image variance (it removes 16 %; the within-image variance, which no baseline removes, is 134), while a
least-squares baseline linear in the 200 ordered probabilities misses 391 and this network, trained alone for 10⁴
steps on the frozen model, 138 (``python -m scgbench.bench.score_baseline --checkpoint RUN/checkpoints/last.ckpt``): a
summary pooled over nodes cannot tell which node has which probability. **Default ``"summary"``**: it serves every
task, and the published NVIL rows were trained with it (a changed default would pool unlike runs in one row).

**Order of updates (stated choice).** Algorithm 1 updates c and v with the current batch before using them, which
lets a sample's own cost leak into its baseline (a bias of order (1 − α)/B). Here each step uses the statistics of
the previous steps and updates them afterwards, so every step but the first is exactly unbiased for the normalised
gradient ∇E[f]/max(1, √v); the first step initialises c and v from its own batch (as REINFORCE's ``ema`` does).

ψ is trained in the same backward pass as the task's loss (DDP-safe): the surrogate carries the value-0 term
½·mean((f − c − C_ψ)²)/max(1, √v) − its detached value, whose ψ-gradient is the paper's Δψ = l̃·∇_ψ C_ψ with the
normalised signal l̃; C_ψ's input is detached, so the encoder's surrogate does not reach ψ and ψ's loss does not
reach the encoder. ψ has its own optimizer group (``baseline_lr``).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SCORE_FUNCTION, Estimator, check_positive, gumbel_noise

#: what C_ψ sees of the detached node parameters (module docstring)
BASELINE_INPUTS = ("summary", "params")


def _params_width(num_nodes: int, num_categories: int) -> int:
    """Input width of the ``params`` baseline: P(z = 1) per binary node, K probabilities per categorical node."""
    return num_nodes * (1 if num_categories == 2 else num_categories)


def ordered_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The ``params`` baseline's input [B, D] from detached logits [B, N, K]: the node probabilities in node order,
    P(z = 1) of a binary node, K per categorical node."""
    q = torch.softmax(logits.detach(), dim=-1)
    return (q[..., 1] if logits.shape[-1] == 2 else q).reshape(logits.shape[0], -1)


class NVIL(Estimator):
    name = "nvil"
    family = SCORE_FUNCTION
    uses_temperature = False
    uses_gumbel_scale = False

    def __init__(self, hidden: int = 100, features: int = 8, decay: float = 0.8, normalise: bool = False,
                 baseline_lr: float = 1e-3, baseline_input: str = "summary", tau: float = 1.0, beta: float = 1.0,
                 eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if int(hidden) != hidden or int(hidden) < 1:
            raise ValueError(f"nvil's hidden must be an integer >= 1, got {hidden} (set --estimator-arg hidden=100)")
        if int(features) != features or int(features) < 1:
            raise ValueError(f"nvil's features must be an integer >= 1, got {features} "
                             "(set --estimator-arg features=8)")
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"nvil's decay must be in [0, 1], got {decay} (set --estimator-arg decay=0.8)")
        self.hidden, self.features = int(hidden), int(features)
        self.decay, self.normalise = float(decay), bool(normalise)
        self.baseline_lr = check_positive("baseline_lr", baseline_lr, "--estimator-arg baseline_lr")
        if baseline_input not in BASELINE_INPUTS:
            raise ValueError(f"nvil's baseline_input must be one of {', '.join(BASELINE_INPUTS)}, got "
                             f"{baseline_input!r} (set --estimator-arg baseline_input=summary)")
        self.baseline_input = baseline_input
        if baseline_input == "summary":
            self.node_net = nn.Sequential(nn.Linear(self.features + 1, self.hidden), nn.Tanh())
            self.readout = nn.Linear(self.hidden, 1)
        else:  # built for the node group (check_node_group): its input width is the group's
            self.params_net: nn.Sequential | None = None
            self.needs_node_count = ("its baseline_input=params network is built for the task's node group, and this "
                                     "task does not fix its number of nodes; use --estimator-arg "
                                     "baseline_input=summary")
        # the global baseline c and the signal's variance v (EMAs), and whether the first batch set them
        self.register_buffer("c", torch.zeros(()))
        self.register_buffer("v", torch.zeros(()))
        self.register_buffer("stats_initialised", torch.zeros((), dtype=torch.bool))

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        super().check_node_group(num_nodes, num_categories)
        if self.baseline_input == "params":
            width = _params_width(int(num_nodes), int(num_categories))
            if self.params_net is None or self.params_net[0].in_features != width:
                self.params_net = nn.Sequential(nn.Linear(width, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))

    def parameter_groups(self) -> list[dict]:
        if self.baseline_input == "params":
            if self.params_net is None:
                raise RuntimeError("nvil with baseline_input=params builds its baseline network for the node group: "
                                   "call check_node_group(num_nodes, num_categories) when configuring the task module")
            return [{"params": list(self.params_net.parameters()), "lr": self.baseline_lr}]
        return [{"params": list(self.node_net.parameters()) + list(self.readout.parameters()),
                 "lr": self.baseline_lr}]

    # -- the input-dependent baseline ---------------------------------------------------------------------------
    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """Per-node summary [..., features + 1] of detached logits x [..., K]: the largest ``features``
        probabilities (sorted, zero-padded) and the entropy (masked categories have probability 0)."""
        x = x.detach()
        logq = torch.log_softmax(x, dim=-1)
        q = logq.exp()
        entropy = -(q * logq.masked_fill(q == 0, 0.0)).sum(-1, keepdim=True)
        f = min(self.features, x.shape[-1])
        top = q.topk(f, dim=-1).values
        if f < self.features:
            top = torch.cat([top, top.new_zeros(*top.shape[:-1], self.features - f)], dim=-1)
        return torch.cat([top, entropy], dim=-1)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """C_ψ(θ̄) [S·B] of a call's logits x [S·B, ..., K] (module docstring). A padding row (all categories
        masked) reaches :meth:`sample` as zero logits (``masked_logits``) and adds a constant: the baseline stays
        independent of the sample. ``baseline_input="params"``: the network on the call's ordered probabilities."""
        if self.baseline_input == "params":
            return self.params_baseline(x)
        h = self.node_net(self.summary(x))
        pooled = h.reshape(h.shape[0], -1, self.hidden).sum(1) if h.dim() > 2 else h
        return self.readout(pooled).squeeze(-1)

    def params_baseline(self, x: torch.Tensor) -> torch.Tensor:
        """C_ψ(θ̄) [S·B] of ``baseline_input="params"``: the MLP on the detached probabilities of logits x
        [S·B, N, K] in node order (P(z = 1) of a binary node). A call whose layout is not the checked group's is
        refused: the network's input width is the group's."""
        flat = ordered_probabilities(x)
        net = self.params_net
        if net is None or flat.shape[1] != net[0].in_features:
            group = "no node group" if net is None else f"a network for {net[0].in_features} inputs"
            raise ValueError(f"nvil's baseline_input=params needs every call to have the node group it was built for "
                             f"({group}; this call has {flat.shape[1]} inputs, shape {tuple(x.shape)}): use it on a "
                             "task with a fixed node layout, or --estimator-arg baseline_input=summary")
        return net(flat).squeeze(-1)

    # -- node call and surrogate ---------------------------------------------------------------------------------
    def sample(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            idx = (x + gumbel_noise(x.shape, x.device)).argmax(dim=-1, keepdim=True)  # exact sample from softmax(θ)
            z = torch.zeros_like(x).scatter_(-1, idx, 1.0)
        log_p = torch.log_softmax(x, dim=-1).gather(-1, idx).squeeze(-1)
        log_p = log_p.reshape(log_p.shape[0], -1).sum(dim=1) if log_p.dim() > 1 else log_p
        self.record(log_p, baseline=self.baseline(x))
        return z

    def scale(self, v: torch.Tensor | None = None) -> torch.Tensor:
        """The variance normalisation's divisor max(1, √v) (1 when ``normalise`` is off): never below 1. ``v``: the
        running variance (default: the buffer's)."""
        v = self.v if v is None else v
        if not self.normalise:
            return torch.ones_like(v)
        return v.clamp_min(0).sqrt().clamp_min(1.0)

    def surrogate_loss(self, cost: torch.Tensor, log_prob: torch.Tensor,
                       baseline: torch.Tensor | None = None) -> torch.Tensor:
        if log_prob.shape[0] != cost.shape[0]:
            raise ValueError(f"cost has batch size {cost.shape[0]} but the node was sampled with "
                             f"{log_prob.shape[0]}: pass one cost per sample")
        f = cost.detach().float().reshape(cost.shape[0])
        if baseline is None:  # a tape entry recorded without the baseline (not by this class's sample)
            baseline = f.new_zeros(f.shape)
        residual = f - baseline.detach().float()  # f − C_ψ
        mean = residual.mean()
        var = residual.var(unbiased=False) if residual.numel() > 1 else torch.zeros_like(mean)
        # the statistics of the previous steps; the first step's own batch (torch.where: no host sync)
        first = ~self.stats_initialised
        c, v = torch.where(first, mean, self.c), torch.where(first, var, self.v)
        scale = self.scale(v)
        signal = (residual - c) / scale  # the normalised learning signal l̃
        if self.training:  # after use: this step's baseline does not depend on this step's samples
            a = self.decay
            self.c.copy_(a * c + (1 - a) * mean)
            self.v.copy_(a * v + (1 - a) * var)
            self.stats_initialised.fill_(True)
        score = (signal * (log_prob - log_prob.detach())).mean()
        fit = 0.5 * (f - c - baseline.float()).pow(2).mean() / scale  # ψ's loss; value-0 term below
        return score + (fit - fit.detach())

    def extra_repr(self) -> str:
        return (f"baseline_input={self.baseline_input}, hidden={self.hidden}, features={self.features}, "
                f"decay={self.decay:g}, normalise={self.normalise}, "
                f"baseline_lr={self.baseline_lr:g}, eval_mode={self.eval_mode}")
