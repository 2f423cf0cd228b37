"""ListOps unsupervised parsing (SPEC §2.2; thesis §6.1.1, Tables 6.1–6.2, Fig. 5.5; Appendix A.1.1).

Variants (``variant=``):

* ``lstm`` — 1-layer LSTM over token embeddings; hidden state of the last token → Lin dim→dim, ReLU,
  Lin dim→10.
* ``arb`` — parser + continuous GNN: two independent unidirectional 1-layer LSTMs q, k over
  E1(tokens); edge logits A′ = q kᵀ; every non-root token except the final ``]`` picks one parent among
  the other real tokens (not the final ``]``) with the estimator ("simplified arborescence prior", one
  parent per node). ``parent_candidates='preceding'`` restricts the candidates to the earlier tokens (in
  prefix notation every gold parent precedes its child, so this prior never excludes the gold tree; the
  SPEC/thesis default ``'all'`` also offers later tokens, and from scratch the parser then puts about half
  of its choices on later tokens and never recovers — see results/listops/README.md). A GNN (second
  embedding E2) runs ``rounds`` message passes:
  ``p = ReLU(Lin₂(Dropout₀.₁(ReLU(Lin₁([x_recv; x_send])))))``, ``m_i = Σ_j A_ji p_ij``, ``x_i ← x_i + m_i``
  with ``x_recv`` the receiver's current state (A.1.1, baseline).
* ``ours`` — as ``arb`` but the pre-message uses the receiver's token embedding ``[x_e; x_j]`` and after
  each of the first ``rounds − 1`` passes every node state is discretised by one discrete-continuous
  component (thesis Eq. 4.2): θ = Pred(x′) = Lin dim→10(ReLU(Lin dim→dim(x′))), z = estimator(θ),
  v = zᵀE2([0..9]), DropRes ``x = v`` w.p. α else ``x′ + v``. The stochastic depth of the component is
  the round index (Fig. 5.5). ``discretise='operators'`` discretises only the operator nodes (the
  intermediate results); digits and ``]`` keep their token embedding (they receive no messages on a tree).
  ``'values'`` discretises the nodes that carry a value (digits and operators) but not ``]``. With
  ``'all'`` (SPEC §2.2 read literally, and this class's default) each ``]`` becomes one fixed digit after
  round 1 and enters its operator as a fake argument in the later rounds; the benchmark's ``ours`` variants
  use ``'values'`` (see results/listops/README.md).
* ``arb-gt`` / ``ours-gt`` — the GNN runs on the gold tree instead of the sampled graph.

Intermediate accuracy (argmax Pred(state) at operator tokens vs the sub-expression's value) is also reported
per operator (``inter_acc_min`` / ``_max`` / ``_med``).

The class logits are Pred(root state) (``ours``: the same Pred as the discretisation). For depth-d
extrapolation sets the GNN runs d rounds (discretising after the first d − 1).

Efficiency and padding: messages are computed only on (sender, receiver) pairs inside one example
(packed index lists, never on padded positions), so padding cannot leak into messages, parents or
metrics. When the sampled graph is hard and carries no pathwise gradient (evaluation, REINFORCE) only the
chosen edge per node is evaluated. ``edge_topk=k`` optionally keeps, per child, the k candidate parents
with the largest relaxed weight (exact when k ≥ length; the dropped weights carry at most their own
probability mass, and by Theorem 1 their gradient is bounded by (√2/τ)·z_j); ``None`` is exact. Each round's
messages on the E edges run as one autograd Function with a hand-written backward (:class:`_EdgeMessages`),
compiled by ``torch.compile`` on one CPU thread or a GPU; ``edge_chain = "reference"`` keeps the op-by-op graph it
replaced (``python -m scgbench.bench.listops_step`` times the two; the same loss, gradients and random draws).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from ..specs.listops import CLOSE_ID, MAX_ID, MED_ID, MIN_ID, NUM_TOKENS
from ..nn import DiscreteContinuous
from .base import SCGModule
from .evaluation import TEST, VAL, eval_noise, log_reduced

VARIANTS = ("lstm", "arb", "ours", "arb-gt", "ours-gt")
#: ``ListOpsModule.edge_chain``: :class:`_EdgeMessages` through torch.compile (default) or eagerly, or today's
#: op-by-op autograd graph (the reference that ``python -m scgbench.bench.listops_step`` times it against)
EDGE_CHAINS = ("compiled", "eager", "reference")
DISCRETISE = ("all", "values", "operators")  # which node states are discretised (see the module docstring)
NUM_VALUES = 10
OPERATOR_NAMES = {MIN_ID: "min", MAX_ID: "max", MED_ID: "med"}


class DigitEmbedding(nn.Module):
    """h(z) = zᵀ E2([0..9]): the GNN's token embedding rows of the ten digits (A.1.1)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = [embedding]  # not registered twice

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.embedding[0].weight[:NUM_VALUES].to(z.dtype)


class Accuracy(MeanMetric):
    """Mean of 0/1 outcomes (a torchmetrics mean: exact under DDP reduction)."""


def _is_operator(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens >= MIN_ID) & (tokens <= MED_ID)


def _masks(tokens: torch.Tensor, mask: torch.Tensor):
    """(child_ok [B,L], parent_ok [B,L]): which tokens choose a parent / may be chosen.

    The root (position 0) and the final ``]`` choose no parent; the final ``]`` is no candidate parent
    (thesis §6.1.1: its edge cannot be learned from the task objective). Padding is neither.
    """
    B, L = tokens.shape
    pos = torch.arange(L, device=tokens.device)[None, :]
    last = mask.sum(1, keepdim=True) - 1
    not_last = pos != last
    child_ok = mask & not_last & (pos != 0)
    parent_ok = mask & not_last
    return child_ok, parent_ok


def _edge_forward(a, c, w, w2, b2, recv, send, bits, cut: int, scale: float):
    """The message chain of one round on E packed edges (see :class:`_EdgeMessages`): ``(m, h, y)``.

    Written for :func:`torch.compile` (which fuses the gathers, the add, ReLU and the dropout mask into one loop,
    and bias, ReLU, the edge weight and the scatter into another, around one matmul) and correct eagerly too (the
    fallback)."""
    h = torch.relu(a.index_select(0, recv) + c.index_select(0, send))
    if bits is not None:
        if bits.dtype == torch.bfloat16:  # the int16 bits in disguise (_cpu_bits): widened, they read bits·2¹⁶
            drop = bits.float().view(torch.int32) < cut * 65536
        else:
            drop = bits < cut
        h = h.masked_fill(drop, 0.0) * scale                           # the reference's relu(pre)·keep·scale
    # relu(u + b) bit for bit (u ≤ −b ⇒ fl(u + b) ≤ 0): not the addmm pattern, whose CPU kernel first copies the
    # bias into its output and then reads it back; here the bias is added in the loop that reads u anyway
    y = torch.maximum(h @ w2.t(), -b2) + b2
    m = torch.zeros_like(a).index_add_(0, recv, y * w[:, None])
    return m, h, y


def _edge_backward(gm, w, w2, recv, send, h, y, scale: float):
    """Gradients of :func:`_edge_forward`'s ``m`` w.r.t. (a, c, w, w2, b2), given ``gm`` = ∂L/∂m."""
    g0 = gm.index_select(0, recv)
    gw = (g0 * y).sum(-1)
    relu_backward = torch.ops.aten.threshold_backward  # (grad, x, 0): grad where x > 0, else 0
    g = relu_backward(g0 * w[:, None], y, 0.0)                        # through w·ReLU
    gh = relu_backward((g @ w2) * scale, h, 0.0)                      # through dropout·ReLU (h > 0 iff both pass)
    ga = torch.zeros_like(gm).index_add_(0, recv, gh)
    gc = torch.zeros_like(gm).index_add_(0, send, gh)
    return ga, gc, gw, g.t() @ h, g.sum(0)


def _cpu_bits(bits: torch.Tensor) -> torch.Tensor:
    """The int16 dropout bits viewed as bfloat16 (no copy), for the compiled CPU kernel: torch.compile's C++ code
    does not vectorize int16 loads, and the gather + dropout loop then ran scalar (1.4× slower). bfloat16 → float32
    appends 16 zero bits, so ``bits.view(bfloat16).float().view(int32)`` is exactly ``int32(bits) · 2¹⁶`` for every
    pattern, NaN payloads included (a test checks all 65,536), and compares with ``cut · 2¹⁶`` as bits with cut."""
    return bits.view(torch.bfloat16)


#: the compiled kernels per (device type, direction); None after a failed compile (then the eager functions run)
_COMPILED: dict = {}


def _run(fn, compiled: bool, device: torch.device, *args):
    """``fn(*args)``, through :func:`torch.compile` (one compiled kernel per device type; the sizes that change
    between calls, E and N, become symbolic at the second call and the width stays static, so the loops over it
    vectorize) unless ``compiled`` is False, or compiling failed once in this process (no C++ compiler, say:
    warned, and the same function runs eagerly from then on), or on a CPU with more than one intra-op thread:
    there the compiled scatter adds from several threads in a varying order, and a run would no longer repeat
    bit for bit from its seed (eager ``index_add_`` on the CPU is serial)."""
    key = (device.type, fn.__name__)
    if not compiled or _COMPILED.get(key, 0) is None or (device.type == "cpu" and torch.get_num_threads() > 1):
        return fn(*args)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn)
    if device.type == "cpu" and fn is _edge_forward and args[7] is not None:
        args = (*args[:7], _cpu_bits(args[7]), *args[8:])
    try:
        return _COMPILED[key](*args)
    except Exception as e:  # the compiler is missing or failed: the same function eagerly, from now on
        import warnings

        warnings.warn(f"ListOps edge chain: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); running "
                      f"it eagerly (same results, slower)")
        _COMPILED[key] = None
        return fn(*args)


class _EdgeMessages(torch.autograd.Function):
    """``m = index_add(recv, w ⊙ ReLU(Lin₂(Dropout(ReLU(a[recv] + c[send])))))``: one round's messages, summed
    per receiving node, with a hand-written backward. Autograd's version keeps about ten edge-sized tensors per
    round and reads each several times (the step is bound by that memory traffic); this one keeps two (h and
    y, which Lin₂'s backward needs anyway) and runs each direction as two fused loops around the matmuls.

    ``a`` [N, d] = W_r x_recv, ``c`` [N, d] = W_s x_send + b per node; ``bits`` the int16 dropout bits of
    :meth:`ListOpsModule._dropout_bits` (``None``: no dropout), entries below ``cut`` dropped and the rest
    scaled by ``scale``."""

    @staticmethod
    def forward(ctx, a, c, w, w2, b2, recv, send, bits, cut, scale, compiled):
        m, h, y = _run(_edge_forward, compiled, a.device, a, c, w, w2, b2, recv, send, bits, cut, scale)
        ctx.save_for_backward(w, w2, recv, send, h, y)
        ctx.scale, ctx.compiled = scale, compiled
        return m

    @staticmethod
    def backward(ctx, gm):
        w, w2, recv, send, h, y = ctx.saved_tensors
        grads = _run(_edge_backward, ctx.compiled, gm.device, gm.contiguous(), w, w2, recv, send, h, y, ctx.scale)
        return (*grads, None, None, None, None, None, None)


class ListOpsModule(SCGModule):
    def __init__(self, variant: str = "ours", estimator: str = "gumbel", tau: float = 1.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, node_estimator: str | None = None,
                 node_estimator_kwargs: dict | None = None, dim: int = 60, rounds: int = 5,
                 dropout: float = 0.1, dropres: bool = True, dropres_mode: str = "batch", lr: float = 5e-4,
                 edge_topk: int | None = None, extrap_depths: tuple[int, ...] = (8, 10),
                 lr_decay: str = "none", parent_candidates: str = "all", discretise: str = "all") -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        if variant not in VARIANTS:
            raise ValueError(f"unknown ListOps variant {variant!r}; choose one of {VARIANTS}")
        if rounds < 1 or dim < 1:
            raise ValueError(f"need rounds >= 1 and dim >= 1, got rounds={rounds}, dim={dim}")
        if lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay must be 'none' or 'cosine', got {lr_decay!r}")
        if parent_candidates not in ("all", "preceding"):
            raise ValueError(f"parent_candidates must be 'all' or 'preceding', got {parent_candidates!r}")
        if discretise not in DISCRETISE:
            raise ValueError(f"discretise must be one of {DISCRETISE}, got {discretise!r}")
        if edge_topk is not None and edge_topk < 1:
            raise ValueError(f"edge_topk must be >= 1 or None (exact), got {edge_topk}")
        self.save_hyperparameters()
        self.variant, self.dim, self.rounds, self.edge_topk = variant, dim, rounds, edge_topk
        #: how the GNN computes its edge messages (:data:`EDGE_CHAINS`; not a hyperparameter: the same numbers)
        self.edge_chain = "compiled"
        self.extrap_depths = tuple(int(d) for d in extrap_depths)
        self.discrete = variant.startswith("ours")
        self.gold = variant.endswith("-gt")
        self.parsed = variant in ("arb", "ours")
        if variant == "lstm":
            self.embed = nn.Embedding(NUM_TOKENS, dim)
            self.lstm = nn.LSTM(dim, dim, batch_first=True)
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, NUM_VALUES))
        else:
            if self.parsed:
                self.parse_embed = nn.Embedding(NUM_TOKENS, dim)            # E1
                self.lstm_q = nn.LSTM(dim, dim, batch_first=True)
                self.lstm_k = nn.LSTM(dim, dim, batch_first=True)
                self.edge_estimator = self.make_estimator()
            self.embed = nn.Embedding(NUM_TOKENS, dim)                      # E2
            self.msg1 = nn.Linear(2 * dim, dim)
            self.msg2 = nn.Linear(dim, dim)
            self.msg_dropout = nn.Dropout(dropout)
            self.pred = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, NUM_VALUES))
            if self.discrete:
                if node_estimator is None:
                    node_est = self.make_estimator()
                else:
                    from ..estimators import get_estimator
                    node_est = get_estimator(node_estimator, tau=tau, beta=beta, **(node_estimator_kwargs or {}))
                # one component, applied after rounds 1..R−1 with depth = round (shared weights, A.1.1)
                self.node = DiscreteContinuous(node_est, self.pred, DigitEmbedding(self.embed), depth=1,
                                               dropres=dropres, dropres_mode=dropres_mode)
        self.val_acc = Accuracy()
        self.val_loss = MeanMetric()  # not `sync_dist=True`: see MNISTAdditionModule.val_loss
        self.metrics = nn.ModuleDict()  # test metrics, created on first use (names depend on the test sets)

    def on_train_start(self) -> None:
        # Lightning recomputes estimated_stepping_batches at each access; the plan is fixed for the fit.
        self._planned_steps = max(1, int(self.trainer.estimated_stepping_batches))

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """``lr_decay='cosine'``: lr_t = lr·½(1 + cos(π·step/total)) over the planned optimizer steps (quick
        profile: a short run ends converged rather than mid-noise). Set here rather than through an LR
        scheduler so ``configure_optimizers`` stays a plain Adam (A.1.1) and resumes exactly (pure function
        of the global step)."""
        super().on_train_batch_start(batch, batch_idx)
        if self.hparams.lr_decay != "cosine" or self._trainer is None:
            return
        total = self._planned_steps
        lr = self.lr * 0.5 * (1 + math.cos(math.pi * min(self.trainer.global_step, total) / total))
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    # -- metrics -----------------------------------------------------------------------------------------
    def _metric(self, name: str) -> Accuracy:
        key = name.replace("/", "__")
        if key not in self.metrics:
            self.metrics[key] = Accuracy().to(self.device)
        return self.metrics[key]

    # -- model ---------------------------------------------------------------------------------------------
    def edge_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.parse_embed(tokens)
        q, _ = self.lstm_q(x)   # unidirectional: padding after a sequence never changes its states
        k, _ = self.lstm_k(x)
        return q @ k.transpose(1, 2)  # [B, child, parent]

    def _edges(self, tokens, mask, parents):
        """Packed edge list (batch, child, parent, weight) plus the dense choice z (None for gold)."""
        child_ok, parent_ok = _masks(tokens, mask)
        L = tokens.shape[1]
        if self.gold:
            b, c = child_ok.nonzero(as_tuple=True)
            p = parents[b, c]
            return b, c, p, torch.ones(len(b), device=tokens.device), None, None
        logits = self.edge_logits(tokens)
        eye = torch.eye(L, dtype=torch.bool, device=tokens.device)
        cand = child_ok[:, :, None] & parent_ok[:, None, :] & ~eye
        if self.hparams.parent_candidates == "preceding":
            cand &= torch.ones_like(eye).tril(-1)   # parent position < child position (prefix notation)
        # Non-candidates get a finite, hugely negative logit (probability exactly 0 after softmax) and whole
        # rows that choose nothing are masked through the estimator (z = 0). A −inf inside a valid row would
        # make REINFORCE's log p(z) = Σ z·log_softmax(θ) evaluate 0·(−inf) = NaN.
        neg = torch.finfo(logits.dtype).min / 4
        z = self.edge_estimator(logits.masked_fill(~cand, neg), child_ok[:, :, None])
        if not z.requires_grad:
            b, c, p = (z > 0).nonzero(as_tuple=True)      # hard choice, no pathwise gradient: L edges
        elif self.edge_topk is not None and self.edge_topk < L:
            # rank by the (possibly straight-through) value, ties by the parser's probabilities
            key = z.detach().float() * 2 + torch.softmax(logits.detach().float().masked_fill(~cand, -1e9), -1)
            key = key.masked_fill(~cand, -1.0)
            top = key.topk(self.edge_topk, dim=-1).indices                  # [B, L, k]
            sel = torch.zeros_like(cand).scatter_(-1, top, True) & cand
            b, c, p = sel.nonzero(as_tuple=True)
        else:
            b, c, p = cand.nonzero(as_tuple=True)
        return b, c, p, z[b, c, p], z, logits

    def _dropout_bits(self, shape, device) -> tuple[torch.Tensor | None, int]:
        """(bits, cut) of message dropout on a tensor of ``shape``: uniform int16 ``bits`` of that shape, an entry
        is dropped where ``bits < −32768 + cut``; ``(None, 0)`` at evaluation or p = 0.

        The bits are 16-bit slices of 64-bit random words: the same law as ``nn.Dropout`` up to p being rounded
        to a multiple of 2⁻¹⁶, with 4× fewer random numbers drawn (the RNG was the most expensive kernel of a
        CPU training step: the message MLP runs on every candidate edge). Both edge chains draw them here, so
        they consume the same random stream and drop the same entries.
        """
        p = self.msg_dropout.p
        if not self.training or p == 0:
            return None, 0
        cut = round(p * 65536)
        n = math.prod(shape)
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, 2 ** 63 - 1)
        return bits.view(torch.int16)[:n].view(shape), cut

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Inverted dropout with the bits of :meth:`_dropout_bits` (the reference edge chain's)."""
        bits, cut = self._dropout_bits(h.shape, h.device)
        if bits is None:
            return h
        keep = bits >= (-32768 + cut)
        return h * keep.to(h.dtype) * (65536.0 / (65536 - cut))

    def gnn(self, tokens, mask, edges, rounds: int):
        """Run ``rounds`` message passes; returns the final node states [B, L, dim]."""
        b, c, p, w = edges
        B, L = tokens.shape
        xe = self.embed(tokens) * mask[..., None]
        recv = b * L + p
        send = b * L + c
        w = w[:, None].to(xe.dtype)
        node_mask = {"all": mask, "operators": mask & _is_operator(tokens),
                     "values": mask & (tokens != CLOSE_ID)}[self.hparams.discretise][..., None]
        W_r, W_s = self.msg1.weight[:, :self.dim], self.msg1.weight[:, self.dim:]
        fused = self.edge_chain != "reference" and not torch.is_autocast_enabled(xe.device.type)
        # `ours` receives on the token embedding in every round: its receiver term is the same in each
        a_fixed = xe.reshape(B * L, -1) @ W_r.T if fused and self.discrete else None
        x = xe
        for r in range(1, rounds + 1):
            flat = x.reshape(B * L, -1)
            recv_state = xe.reshape(B * L, -1) if self.discrete or r == 1 else flat
            if fused:
                # Lin₁([x_recv; x_send]) = W_r x_recv + W_s x_send + b: per node, gathered per edge in the chain
                a_recv = a_fixed if a_fixed is not None else recv_state @ W_r.T
                bits, cut = self._dropout_bits((len(recv), self.dim), flat.device)
                m = _EdgeMessages.apply(a_recv, flat @ W_s.T + self.msg1.bias, w[:, 0], self.msg2.weight,
                                        self.msg2.bias, recv, send, bits, -32768 + cut, 65536.0 / (65536 - cut),
                                        self.edge_chain == "compiled")
            else:  # the reference (today's autograd graph, op by op), and under autocast (mixed precision)
                pre = (recv_state @ W_r.T)[recv] + (flat @ W_s.T + self.msg1.bias)[send]
                msg = F.relu(self.msg2(self._dropout(F.relu(pre))))
                m = torch.zeros_like(flat).index_add_(0, recv, w * msg)
            x = x + m.view(B, L, -1)
            if self.discrete and r < rounds:
                # rows outside node_mask get z = 0 (no log-probability) and keep their state (0 in padding)
                x = torch.where(node_mask, self.node(x, node_mask, depth=r), x)
        return x

    def forward(self, batch: dict, rounds: int | None = None) -> dict:
        tokens, mask = batch["tokens"], batch["mask"]
        if self.variant == "lstm":
            h, _ = self.lstm(self.embed(tokens))
            last = h[torch.arange(len(tokens), device=tokens.device), batch["lengths"] - 1]
            return {"logits": self.head(last)}
        b, c, p, w, z, edge_logits = self._edges(tokens, mask, batch.get("parents"))
        x = self.gnn(tokens, mask, (b, c, p, w), rounds or self.rounds)
        out = {"logits": self.pred(x[:, 0]), "states": x}
        if z is not None:
            out["z"] = z
        return out

    # -- metrics ---------------------------------------------------------------------------------------------
    def _parse_metrics(self, batch, out, nodes: bool = True) -> dict[str, torch.Tensor]:
        """Outcome vectors (0/1 per counted token) for edge precision and (``nodes``) intermediate accuracy."""
        tokens, mask, gold = batch["tokens"], batch["mask"], batch["parents"]
        res = {}
        child_ok, _ = _masks(tokens, mask)
        if "z" in out:
            pred = out["z"].argmax(-1)
            hit = pred == gold
            not_close = tokens != CLOSE_ID
            res["edge_prec"] = hit[child_ok & not_close].float()   # SPEC: non-root, non-`]` tokens
            res["edge_prec_all"] = hit[child_ok].float()           # every predicted edge
        if nodes and self.discrete:
            hit = self.pred(out["states"]).argmax(-1) == batch["values"]
            res["inter_acc"] = hit[mask & _is_operator(tokens)].float()
            for op, name in OPERATOR_NAMES.items():  # per operator: MED is the hard one (results/listops)
                res[f"inter_acc_{name}"] = hit[mask & (tokens == op)].float()
        return res

    # -- steps -----------------------------------------------------------------------------------------------
    def training_loss(self, batch):
        # score-function estimators need S samples per example: repeat the batch (no-op for pathwise)
        keys = ["tokens", "mask", "lengths", "parents", "values", "label"]
        batch = dict(zip(keys, self.expand(*[batch[k] for k in keys])))
        out = self(batch)
        cost = F.cross_entropy(out["logits"], batch["label"], reduction="none")
        loss = cost.mean() + self.surrogate(cost)
        logs = {"acc": (out["logits"].argmax(-1) == batch["label"]).float().mean()}
        if "z" in out:
            with torch.no_grad():
                # training logs edge precision only: no Pred pass over every node state per step
                logs["edge_prec"] = self._parse_metrics(batch, out, nodes=False)["edge_prec"].mean()
        return loss, logs

    def validation_step(self, batch, batch_idx):
        with eval_noise(self, batch["index"], VAL):  # keyed, should an estimator decode by sampling
            out = self(batch)
        acc = self.val_acc
        acc.update((out["logits"].argmax(-1) == batch["label"]).float())
        self.log("val/acc", acc, on_epoch=True, prog_bar=True, batch_size=len(batch["label"]))
        self.val_loss.update(F.cross_entropy(out["logits"], batch["label"], reduction="none"))
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=len(batch["label"]))

    def test_rounds(self, dataloader_idx: int) -> tuple[str, int]:
        """(metric suffix, GNN rounds) of test loader ``dataloader_idx``: [test, d=8, d=10, ...]."""
        if dataloader_idx == 0:
            return "", self.rounds
        dm = getattr(getattr(self, "_trainer", None), "datamodule", None)
        names = getattr(dm, "test_names", None)
        d = int(names[dataloader_idx][len("test_d"):]) if names else self.extrap_depths[dataloader_idx - 1]
        return f"_d{d}", d

    def _test_kinds(self) -> list[str]:
        """The outcome vectors :meth:`_parse_metrics` returns for this variant, plus task accuracy."""
        kinds = ["acc"]
        if self.parsed:
            kinds += ["edge_prec", "edge_prec_all"]
        if self.discrete:
            kinds += ["inter_acc"] + [f"inter_acc_{name}" for name in OPERATOR_NAMES.values()]
        return kinds

    def on_test_epoch_start(self) -> None:
        # Every rank holds every test metric, whatever its share of the data contains: torchmetrics reduces
        # each metric with collectives, which must be issued for the same metrics on every rank.
        for idx in range(len(self.trainer.num_test_batches)):
            suffix, _ = self.test_rounds(idx)
            for tag in ("", "_sampled"):
                for kind in self._test_kinds():
                    self._metric(f"test/{kind}{suffix}{tag}")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        suffix, rounds = self.test_rounds(dataloader_idx)
        for mode, tag in (("map", ""), ("sample", "_sampled")):
            with self.decoding(mode), eval_noise(self, batch["index"], TEST, dataloader_idx):
                out = self(batch, rounds=rounds)
            self._metric(f"test/acc{suffix}{tag}").update((out["logits"].argmax(-1) == batch["label"]).float())
            for k, v in self._parse_metrics(batch, out).items():
                self._metric(f"test/{k}{suffix}{tag}").update(v)  # also when empty: see on_test_epoch_start

    def on_test_epoch_end(self) -> None:
        values = {}
        for key in sorted(self.metrics):  # the same order on every rank (each compute() is a collective)
            value = self.metrics[key].compute()
            self.metrics[key].reset()
            if torch.isfinite(value):  # NaN: no counted token on any rank (e.g. no MED operator in a set)
                values[key.replace("__", "/")] = value
        log_reduced(self, values, add_dataloader_idx=False)
