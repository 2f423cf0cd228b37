"""The unordered set estimator: k samples without replacement and their built-in baseline (Kool, van Hoof, Welling,
"Estimating gradients for discrete random variables by sampling without replacement", ICLR 2020, arXiv
2002.06043; SPEC §1.2; references/estimators-more.md §10).

Domain. The node group's N nodes × K categories form ONE categorical variable over the K^N joint configurations
s = (c_1, …, c_N), p(s) = Π_n softmax(θ_n)[c_n] — the paper's VAE treats its latent the same way (a sequence, sampled
with stochastic beam search; ``wouterkool/estimating-gradients-without-replacement``, ``vae/vae.py``). An exact
sample without replacement of k configurations is drawn by **ancestral Gumbel-top-k** (stochastic beam search,
Kool, van Hoof, Welling, ICML 2019): node by node, each partial configuration's children get Gumbel perturbations
conditioned on their maximum being the parent's perturbed value, and the k largest are kept; at the last node the k
kept configurations are the Gumbel-top-k of the joint distribution. Cost: N steps over k·K candidates — never K^N.
Where k·max_s p(s) ≤ 1/2 (every row of the DisARM protocol's 200 binary latents, whose max p(s) is below 10⁻⁸ at a
trained model), the same distribution comes from a few vectorised rounds instead: the first k distinct
configurations of i.i.d. draws (:func:`distinct_draws`; the beam's 200 sequential steps took about 10 times the
rest of that training step). The choice is per row and depends on the parameters only, so both are exact.
The alternative the paper leaves open, a set per node with the other nodes fixed, would not give the joint
estimator's Rao-Blackwellisation over the whole domain; we do not implement it.

Estimator (paper Eq. 9 and its built-in baseline, Eq. 15). For the unordered set S (|S| = k) and f the task's cost,

    ĝ = Σ_{s∈S} ∇p(s) · R(S, s) · (f(s) − B_s),        E_S[Σ_{s∈S} p(s) R(S, s) f(s)] = E_p[f],
    R(S, s) = p^{D∖s}(S∖s) / p(S),
    B_s = Σ_{s'∈S} p(s') R^{D∖s}(S, s') f(s'),        R^{D∖s}(S, s') = p^{D∖{s,s'}}(S∖{s,s'}) / p^{D∖s}(S∖s),
    R^{D∖s}(S, s) = 1,

where p^{D'}(T) is the probability that sampling without replacement from the domain D' (probabilities
renormalised to D') draws the set T first. The diagonal R^{D∖s}(S, s) = 1 makes B_s = p(s) f(s) + (1 − p(s))·(the
unordered-set estimate of E[f | x ≠ s] from the other k − 1 elements) — whose expectation given s is E_p[f] for every
s, hence unbiased; without the diagonal it is not (the control in the tests). With k = 1 there is no other element:
the baseline is off and ĝ is single-sample REINFORCE, ∇log p(s)·f(s). With k = K^N, S is the whole domain, R = 1 and
B_s = E_p[f]: the exact gradient, zero variance. ``baseline=False`` gives Eq. 9 without the baseline.

Set probabilities (where the authors integrate numerically, we enumerate exactly). Every quantity above is Q(T) for
a subset T ⊆ S: the probability of drawing the elements of T first from the domain T ∪ (D∖S) — renormalising to
D∖s or D∖{s,s'} leaves the ratios p(x)/p(D∖S) unchanged, and Q depends on nothing else. Summing the Plackett-Luce
probability over the orderings of T, with the remaining set R drawn next from a mass p(D∖S) + p(R),

    Q(∅) = 1,    Q(R) = Σ_{j∈R} p(j) · Q(R∖j) / (p(D∖S) + p(R)),

one dynamic programme over the 2^k subsets of S (k·2^k terms, not k!·k² orderings) in log space in float64, every
term positive: no cancellation except p(D∖S) = 1 − Σ_{s∈S} p(s) itself, taken once with log1mexp (the authors'
``compute_log_R_O_nfac`` enumerates orderings; their ``compute_log_R`` integrates Q(T) = ∫₀¹ Π_{t∈T}(1 −
u^{p(t)/p(D∖S)}) du with the trapezoid rule, which carries a small integration bias; the recursion has none). k is
capped at :attr:`UnorderedSet.MAX_K` = 16 (2^16 subsets per example).

The value returned to the task is the unbiased estimate Σ_s sg(p(s) R(S, s))·f(s) of E_p[f] (its gradient reaches
the decoder); the surrogate carries ĝ. Decoder evaluations per example and step: k.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .base import SCORE_FUNCTION, Estimator, gumbel_noise
from .contract import COST_ORACLE, Estimate, Objective


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x ≤ 0, accurate at both ends (Mächler, "Accurately computing log(1 − exp(−|a|))")."""
    x = x.clamp_max(0)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def gumbel_top_k_product(log_q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral Gumbel-top-k over the product space of N categorical nodes (stochastic beam search, Kool et al.
    2019): ``log_q`` [B, N, K] per-node log-probabilities → ``(codes [B, k', N] long, log_p [B, k'])``,
    k' = min(k, K^N), the k' configurations with the largest perturbed log-probability, in decreasing order — an
    exact sample without replacement from p(c) = Π_n q_n(c_n). No gradient."""
    b, n, kk = log_q.shape
    with torch.no_grad():
        log_q = log_q.double()
        phi = log_q.new_zeros(b, 1)                                      # log p of the partial configurations
        g = gumbel_noise((b, 1), log_q.device).double()                  # the root's perturbed value ~ Gumbel(0)
        codes = torch.zeros(b, 1, 0, dtype=torch.long, device=log_q.device)
        for node in range(n):
            w = phi.shape[1]
            phi_c = phi[:, :, None] + log_q[:, None, node, :]           # [B, w, K]
            g_c = phi_c + gumbel_noise(phi_c.shape, log_q.device).double()
            # children's Gumbels conditioned on their maximum being the parent's value T:
            # G̃ = −log(exp(−T) − exp(−Z) + exp(−G)), written stably (T − relu(u) − softplus(−|u|))
            top = g[:, :, None]
            u = top - g_c + log1mexp(g_c - g_c.max(-1, keepdim=True).values)
            g_c = top - torch.relu(u) - torch.nn.functional.softplus(-u.abs())
            # a configuration of probability 0 (a masked category, log q = −inf) stays at −inf, and so do its
            # descendants (−inf − (−inf) would be NaN, which topk ranks first)
            g_c = g_c.masked_fill(phi_c == float("-inf"), float("-inf"))
            keep = min(k, w * kk)
            g, pos = g_c.reshape(b, w * kk).topk(keep, dim=-1)
            phi = phi_c.reshape(b, w * kk).gather(1, pos)
            parent, cat = pos // kk, pos % kk
            codes = torch.cat([codes.gather(1, parent[:, :, None].expand(-1, -1, node)), cat[:, :, None]], -1)
    return codes, phi


#: rounds of i.i.d. draws :func:`distinct_draws` allows before it gives up: with k·max p(s) ≤ 1/2 each draw is new
#: with probability ≥ 1/2, so needing more rounds than this has probability below 2^−10⁴
MAX_ROUNDS = 10_000


def configuration_keys(codes: torch.Tensor, num_categories: int) -> torch.Tensor:
    """Configurations ``codes`` [..., N] (categories < K) → exact integer keys [..., W]: the nodes in base K, as many
    per int64 word as K^m < 2^62 allows (W = 4 words for 200 binary nodes). Equal keys ⇔ equal configurations."""
    per = max(1, int(62 // math.log2(num_categories)))
    n = codes.shape[-1]
    c = torch.nn.functional.pad(codes, (0, (-n) % per)).unflatten(-1, (-1, per))
    return (c * num_categories ** torch.arange(per, device=codes.device)).sum(-1)


def all_distinct(keys: torch.Tensor) -> torch.Tensor:
    """Configuration keys [B, k, W] (:func:`configuration_keys`) → [B]: whether a row's k configurations are distinct
    (each equals only itself)."""
    return (keys[:, :, None] == keys[:, None]).all(-1).sum((-1, -2)) == keys.shape[1]


def distinct_draws(log_q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An exact sample without replacement of k configurations from p(c) = Π_n q_n(c_n), as the first k distinct
    configurations of a stream of i.i.d. draws (given the distinct set T found so far, the next new draw is distributed
    as p renormalised to D∖T: sequential sampling without replacement). ``log_q`` [B, N, K] → ``(codes [B, k, N],
    log_p [B, k])`` in drawing order. A few vectorised rounds where k·max p(s) ≤ 1/2 (:func:`sample_without_replacement`
    sends only such rows here), against the ancestral beam's N sequential steps. No gradient."""
    b, n, kk = log_q.shape
    dev = log_q.device
    with torch.no_grad():
        # inverse CDF, one uniform per node: c = #{j < K−1 : F_j ≤ u}; normalised by the total so that F_{K−2} is
        # exactly 1 when the last category has probability 0 (it can never be drawn)
        q = log_q.double().exp()
        cdf = (q.cumsum(-1) / q.sum(-1, keepdim=True))[..., :-1]        # [B, N, K − 1]
        codes = torch.zeros(b, k, n, dtype=torch.long, device=dev)
        count = torch.zeros(b, dtype=torch.long, device=dev)
        slots = torch.arange(k, device=dev)
        rows = torch.arange(b, device=dev)
        for round_ in range(MAX_ROUNDS):
            u = torch.rand(len(rows), k, n, 1, dtype=torch.float64, device=dev)
            draws = (u >= cdf[rows, None]).sum(-1)                      # [r, k, N]
            drawn = configuration_keys(draws, kk)                        # [r, k, W]
            if round_ == 0:
                keys = drawn.new_zeros(b, k, drawn.shape[-1])
                if bool(all_distinct(drawn).all()):
                    codes = draws                                       # every row's k draws are distinct
                    break
            for j in range(k):  # in stream order: each draw joins its row's set unless it is there already
                c = count[rows]
                seen = ((keys[rows] == drawn[:, j, None]).all(-1) & (slots < c[:, None])).any(-1)
                new = ~seen & (c < k)
                at, slot = rows[new], c[new]
                codes[at, slot], keys[at, slot] = draws[new, j], drawn[new, j]
                count[at] += 1
            rows = rows[count[rows] < k]
            if len(rows) == 0:
                break
        else:
            raise RuntimeError(f"distinct_draws: {len(rows)} rows still lack {k} distinct configurations after "
                               f"{MAX_ROUNDS} rounds; their probability mass is too concentrated for this sampler")
        log_p = log_q.double().gather(2, codes.transpose(1, 2)).sum(1)
    return codes, log_p


def sample_without_replacement(log_q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k configurations without replacement from p(c) = Π_n q_n(c_n) per row of ``log_q`` [B, N, K] → ``(codes
    [B, k', N], log_p [B, k'])``, k' = min(k, K^N). A row whose most probable configuration has k·max p(s) ≤ 1/2 gets
    :func:`distinct_draws` (a few vectorised rounds); any other row the ancestral beam :func:`gumbel_top_k_product`
    (N sequential steps, exact at any concentration). The choice depends on the parameters only, never on the
    draws, so every row is an exact sample either way. On the DisARM protocol's 200 binary latents max p(s) is
    below 10⁻⁸ at a trained model, and the beam's 200 steps cost about ten times the rest of a training step."""
    b, n, kk = log_q.shape
    with torch.no_grad():
        log_max = log_q.double().max(-1).values.sum(-1)                 # log max_s p(s)
        cheap = log_max + math.log(k) <= -math.log(2)
        if bool(cheap.all()):
            return distinct_draws(log_q, k)
        if not bool(cheap.any()):
            return gumbel_top_k_product(log_q, k)
        codes_b, log_p_b = gumbel_top_k_product(log_q[~cheap], k)       # k' = k here: some row has K^N ≥ 2k
        codes_s, log_p_s = distinct_draws(log_q[cheap], k)
        codes = torch.empty(b, k, n, dtype=torch.long, device=log_q.device)
        log_p = torch.empty(b, k, dtype=torch.float64, device=log_q.device)
        codes[~cheap], log_p[~cheap] = codes_b, log_p_b
        codes[cheap], log_p[cheap] = codes_s, log_p_s
    return codes, log_p


#: the log-probability floor of the set recursion (:func:`subset_log_probabilities`)
LOG_P_FLOOR = -1e5


@lru_cache(maxsize=None)
def _subset_layers(k: int, device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
    """For each size c = 1..k: the bitmasks of the c-subsets of {0..k−1} [n_c], their members [n_c, c] and each
    member's predecessor (the mask without it) [n_c, c], on ``device`` (built once per k and device)."""
    layers = []
    for c in range(1, k + 1):
        masks = [m for m in range(1, 1 << k) if bin(m).count("1") == c]
        members = [[j for j in range(k) if m >> j & 1] for m in masks]
        preds = [[m ^ (1 << j) for j in mem] for m, mem in zip(masks, members)]
        layers.append(tuple(torch.tensor(t, device=device) for t in (masks, members, preds)))
    return tuple(layers)


def subset_log_probabilities(log_p: torch.Tensor) -> torch.Tensor:
    """log Q(T) [B, 2^k] for every subset T ⊆ S (bitmask index) of the sampled set S with element log-probabilities
    ``log_p`` [B, k] (module docstring): Q(T) is the probability that sampling without replacement from T ∪ (D∖S)
    draws T first; Q(S) = p(S), Q(S∖s) = p^{D∖s}(S∖s), Q(S∖{s,s'}) = p^{D∖{s,s'}}(S∖{s,s'})."""
    # masses below e^(−10⁵) are 0 in double precision: −inf (a masked category drawn because fewer than k
    # configurations have positive probability) enters as −10⁵, a zero mass without −inf − (−inf) = NaN
    log_p = log_p.double().clamp_min(LOG_P_FLOOR)
    b, k = log_p.shape
    log_rest = log1mexp(torch.logsumexp(log_p, -1))                     # log p(D∖S), −inf when S is the domain
    log_q = log_p.new_zeros(b, 1 << k)
    for masks, members, preds in _subset_layers(k, log_p.device):
        lp = log_p[:, members]                                          # [B, n_c, c]
        num = torch.logsumexp(lp + log_q[:, preds], -1)
        den = torch.logsumexp(torch.cat([log_rest[:, None, None].expand(-1, lp.shape[1], 1), lp], -1), -1)
        log_q[:, masks] = num - den
    return log_q


def log_ratios(log_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log R(S, s) [B, k], log R^{D∖s}(S, s') [B, k, k])`` of the set with element log-probabilities ``log_p``
    [B, k]; the second has 0 on its diagonal (module docstring)."""
    k = log_p.shape[1]
    log_q = subset_log_probabilities(log_p)
    full = (1 << k) - 1
    bit = 1 << torch.arange(k, device=log_p.device)
    without = full ^ bit                                                # S∖s
    without2 = without[:, None] & ~bit[None, :]                         # S∖{s, s'} (S∖s on the diagonal)
    log_r1 = log_q[:, without] - log_q[:, full, None]
    log_r2 = log_q[:, without2.reshape(-1)].reshape(-1, k, k) - log_q[:, without, None]
    return log_r1, log_r2


class UnorderedSet(Estimator):
    """Kool et al. (2020)'s unordered set estimator with its built-in baseline (module docstring). Used through
    :meth:`estimate` (it needs the task's cost oracle); evaluation decoding comes from the base class."""

    name = "unordered-set"
    family = SCORE_FUNCTION
    uses_temperature = False
    uses_gumbel_scale = False
    requires = frozenset({COST_ORACLE})
    #: the largest k: the set probabilities are a recursion over the 2^k subsets of the sample
    MAX_K = 16

    def __init__(self, k: int = 4, baseline: bool = True, tau: float = 1.0, beta: float = 1.0,
                 eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= self.MAX_K:
            raise ValueError(f"unordered-set needs an integer sample size k in [1, {self.MAX_K}] (its set "
                             f"probabilities recurse over the 2^k subsets of the sample), got {k} "
                             "(set --estimator-arg k=4)")
        self.k = int(k)
        self.baseline = bool(baseline)

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        """Refuse k > K^N: a sample without replacement cannot have more elements than the domain."""
        n, k = int(num_nodes), int(num_categories)
        if n >= 1 and k >= 2 and k ** n < self.k:
            raise ValueError(f"unordered-set draws k = {self.k} configurations without replacement but a {n}x{k} "
                             f"group has only {k ** n}; set --estimator-arg k={k ** n} or smaller")
        super().check_node_group(n, k)

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """k decoder evaluations per example and step (one per element of the set)."""
        return self.k

    @classmethod
    def options_for_evaluations(cls, evaluations: int, num_nodes: int, num_categories: int) -> dict | None:
        """k = the evaluations, or the largest k below them that the domain (K^N) and :attr:`MAX_K` allow."""
        k = min(int(evaluations), cls.MAX_K, int(num_categories) ** int(num_nodes))
        return {"k": k} if k >= 1 else None

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        b, n, kk = self.node_group(params)
        cost_fn = objective.need(COST_ORACLE, self.name)
        log_q = torch.log_softmax(params.double(), dim=-1)              # [B, N, K], live
        codes, _ = sample_without_replacement(log_q.detach(), self.k)   # [B, k, N]
        log_p = log_q.gather(2, codes.transpose(1, 2)).sum(1)           # [B, k]: log p(s), live
        log_r1, log_r2 = log_ratios(log_p.detach())
        f = cost_fn(torch.nn.functional.one_hot(codes, kk).to(params.dtype))  # [B, k], live (decoder)
        fd = f.detach().double()
        weight = (log_p.detach() + log_r1).exp()                        # p(s) R(S, s): Σ_s weight·f estimates E[f]
        cost = (weight.to(f.dtype) * f).sum(-1)
        if self.baseline and self.k > 1:
            advantage = fd - ((log_p.detach()[:, None, :] + log_r2).exp() * fd[:, None, :]).sum(-1)
        else:
            advantage = fd
        score = ((log_p + log_r1).exp() * advantage).sum(-1).mean()     # gradient Σ_s ∇p(s) R(S, s)(f(s) − B_s)
        surrogate = (score - score.detach()).float()
        return Estimate(cost, surrogate, self.evaluations(n, kk))

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        # refused like Direct's: a hard sample alone carries no gradient, and the set needs the cost of all k
        raise RuntimeError("unordered-set has no single training sample: its gradient needs the task's cost of k "
                           "configurations drawn without replacement; call estimate(params, objective) with a task "
                           "objective that provides the cost oracle")

    def extra_repr(self) -> str:
        return f"k={self.k}, baseline={self.baseline}, eval_mode={self.eval_mode}"
