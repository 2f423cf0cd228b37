"""VS-GAE: variational sequential graph autoencoder for NAS-Bench-101 cells (SPEC §2.4; thesis §5.1.3–5.1.4,
Eqs. 5.1–5.14; Appendix A.2; Table 6.7).

* Encoder (§5.1.3, A.2.1): node-type embedding (dn); T = 2 rounds of bidirectional message passing, round t
  with its own weights: ``m_in(v) = Σ_{u→v} Lin_{2dn→2dn}([h_v, h_u])``, ``m_out(v) = Σ_{v→u} Lin'([h_v, h_u])``
  (Eqs. 5.1–5.4), ``h_v ← GRUCell_{2dn,dn}(m_in + m_out, h_v)``; gated sum aggregation
  ``A(h) = Σ_v Lin_{dn→dg}(h_v) ⊙ σ(Lin_{dn→1}(h_v))`` for the mean and a copy Ã for the log-variance
  (Eqs. 5.5–5.6). Message passing is a torch-geometric ``MessagePassing`` with sum aggregation.
* Decoder (§5.1.4, A.2.2): starts from the input node ``h_0 = f_start([z, L[input]])``; then repeats
  GraphProp (a copy of the encoder's propagation + aggregation, own weights: Eq. 5.7) → AddNode
  (softmax over the 5 node types from [z, h_G], Eq. 5.8) → InitNode (``f_init([z, h_G, L[type]])``, Eqs.
  5.9–5.10) → AddEdges (``σ(f_edges([h_new, h_v, z, h_G]))`` for every earlier node v, Eqs. 5.11–5.12) and
  stops after the output node (or at 7 nodes). The f's are two-layer ReLU MLPs with the widths of A.2.2.
* Loss (Eqs. 5.13–5.14): teacher-forced node cross-entropy + edge binary cross-entropy, summed over the
  steps of a graph, + KL(q(z|G) ‖ N(0, I)); averaged over the batch.
* Optional performance predictor (SPEC §2.4 extension): an MLP on the posterior mean predicting the cell's
  validation accuracy, trained jointly (MSE on cells that have one) when the data carry accuracies. Without
  accuracies (the enumerated space) its parameters are frozen for the fit, so DDP does not wait for their
  gradients; with them every graph passes through it (cells without a target weigh 0), so a batch without
  targets on one rank still uses the head. At test, with accuracies, also the accuracy-prediction curve: a
  regressor on the posterior means of 100 / 1,000 / 10,000 training cells, scored on the held-out cells (RMSE,
  Kendall τ; :mod:`scgbench.metrics.prediction`).
* Options of the authors' code (github.com/jovitalukasik/vs_gae, where the thesis is silent): ``posterior_noise``
  scales the reparameterisation noise (z = μ + s·σ·ε; 0.01 there, 1 the textbook ELBO), ``edge_loss='mean'``
  averages a step's edge terms over its candidate nodes, and their KL weight β = 0.005 on a KL summed over the
  batch is ``kl_weight = 0.005 × batch size`` on the per-graph mean used here.

Decoding is batched over graphs *and* exact: each graph's random choices come from its own uniform noise
(``noise_type`` [B, 6], ``noise_edge`` [B, 6, 6]), so a batch decodes to the same graphs as decoding each
graph alone with its noise row. The test metrics draw that noise, and the z samples, from counter-based keys
(:mod:`scgbench.estimators.noise`): reconstruction noise is a function of (run seed, ``eval_seed``, cell,
z index, decode index), prior noise of (run seed, ``eval_seed``, prior sample, decode index), so the metrics
do not depend on batching, rank or world size.
"""

from __future__ import annotations


from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import KendallRankCorrCoef, MeanMetric, MeanSquaredError

from ..specs.nasbench101 import MAX_VERTICES, NODE_TYPES
from ..estimators.noise import eval_noise_key, keyed_normal, keyed_uniform, sub_key
from ..figures import prediction_curve_figure
from ..metrics.graphs import GenerationMetrics, ReconstructionAccuracy
from ..metrics.prediction import DEFAULT_SIZES, curve_scalars, prediction_curve
from .._lightning import attached_trainer
from .evaluation import TEST, log_reduced
from .base import adam

NUM_TYPES = len(NODE_TYPES)
INPUT_T, OUTPUT_T = 0, NUM_TYPES - 1
#: sub-streams of the evaluation noise (z samples, node-type and edge uniforms; reconstruction and prior)
RECON_Z, RECON_TYPE, RECON_EDGE, PRIOR_Z, PRIOR_TYPE, PRIOR_EDGE = range(6)


class DirectedMessage(nn.Module):
    """The message module ``Lin_{2dn→2dn}([h_v, h_u])`` of one direction (Eqs. 5.1–5.2; the receiver v first)."""

    def __init__(self, dn: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2 * dn, 2 * dn)


class BiRound(nn.Module):
    """One propagation round on dense blocks: forward and reverse messages summed into a GRU cell update
    (Eqs. 5.1–5.4, A.2.1).

    ``Lin`` is affine, so ``Σ_{u→v} Lin([h_v, h_u]) = indeg(v)·(W_r h_v + b) + Σ_{u→v} W_s h_u`` with
    ``W = [W_r | W_s]``: one matrix product of the node states and one product with the adjacency per direction
    replace a ``2dn × 2dn`` product per edge (the edge-list form is :mod:`scgbench.bench.vsgae_reference`).
    """

    def __init__(self, dn: int) -> None:
        super().__init__()
        self.fwd, self.bwd = DirectedMessage(dn), DirectedMessage(dn)
        self.gru = nn.GRUCell(2 * dn, dn)

    def stacked_weight(self) -> torch.Tensor:
        """Receiver and sender parts of both directions' weights, stacked for one product: [4 · 2dn, dn]."""
        wf, wb = self.fwd.lin.weight, self.bwd.lin.weight
        dn = wf.size(1) // 2
        return torch.cat([wf[:, :dn], wb[:, :dn], wf[:, dn:], wb[:, dn:]], dim=0)

    def forward(self, h: torch.Tensor, adj: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """h [A, n, dn] node states, adj [A, n, n] with ``adj[a, u, v] = 1`` for an edge u → v; ``w``: this
        round's :meth:`stacked_weight`, when the caller propagates several times with the same weights."""
        a, n, dn = h.shape
        w = self.stacked_weight() if w is None else w
        rf, rb, sf, sb = (h @ w.t()).chunk(4, dim=-1)
        indeg, outdeg = adj.sum(1).unsqueeze(-1), adj.sum(2).unsqueeze(-1)
        m = (indeg * (rf + self.fwd.lin.bias) + adj.transpose(1, 2) @ sf
             + outdeg * (rb + self.bwd.lin.bias) + adj @ sb)
        return self.gru(m.reshape(a * n, 2 * dn), h.reshape(a * n, dn)).reshape(a, n, dn)


class GatedSum(nn.Module):
    """``Σ_v Lin_{dn→dg}(h_v) ⊙ σ(Lin_{dn→1}(h_v))`` per graph over its nodes (A.2.1)."""

    def __init__(self, dn: int, dg: int) -> None:
        super().__init__()
        self.value, self.gate = nn.Linear(dn, dg), nn.Linear(dn, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """h [A, n, dn]; ``mask`` [A, n] marks the real nodes of padded graphs (None: all are real)."""
        g = self.value(h) * torch.sigmoid(self.gate(h))
        return (g if mask is None else g * mask.unsqueeze(-1)).sum(1)


class GraphNet(nn.Module):
    """``rounds`` bidirectional rounds (own weights each) + gated aggregation (+ a variance aggregator)."""

    def __init__(self, dn: int, dg: int, rounds: int = 2, variational: bool = False) -> None:
        super().__init__()
        self.rounds = nn.ModuleList([BiRound(dn) for _ in range(rounds)])
        self.agg = GatedSum(dn, dg)
        self.agg_var = GatedSum(dn, dg) if variational else None

    def stacked_weights(self) -> list[torch.Tensor]:
        """Each round's :meth:`BiRound.stacked_weight`: built once for the decoder's steps, not once per step."""
        return [r.stacked_weight() for r in self.rounds]

    def forward(self, h: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor | None = None,
                weights: list[torch.Tensor] | None = None):
        """h [A, n, dn], adj [A, n, n]; padded nodes (``mask`` False) have no edges, so they reach no real node,
        and the aggregations leave them out. ``weights``: :meth:`stacked_weights`, if the caller has them."""
        for i, r in enumerate(self.rounds):
            h = r(h, adj, None if weights is None else weights[i])
        hg = self.agg(h, mask)
        var = self.agg_var(h, mask) if self.agg_var is not None else None
        return h, hg, var


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class VSGAE(pl.LightningModule):
    """VS-GAE LightningModule. Batches are torch-geometric ``Batch`` objects from
    :class:`~scgbench.datamodules.nasbench101.NASBench101DataModule` (``node_type``, ``edge_index``, ``y``).

    Evaluation protocol (thesis §6.1.4): reconstruction = ``recon_z_samples`` z ~ q(z|G) × ``recon_decodes``
    decodes per held-out graph, exact match in node order; prior = ``prior_samples`` z ~ N(0, I) ×
    ``prior_decodes`` decodes, scored by :class:`~scgbench.metrics.graphs.GenerationMetrics`. ``eval_seed``
    selects another draw of that evaluation noise for the same run seed.
    """

    def __init__(self, dn: int = 250, dg: int = 56, rounds: int = 2, lr: float = 1e-4, kl_weight: float = 1.0,
                 plateau_patience: int = 10, plateau_factor: float = 0.1, decode: str = "sample",
                 recon_z_samples: int = 10, recon_decodes: int = 10, prior_samples: int = 1000,
                 prior_decodes: int = 10, predictor_weight: float = 1.0, eval_seed: int = 0,
                 posterior_noise: float = 1.0, edge_loss: str = "sum") -> None:
        super().__init__()
        if decode not in ("sample", "greedy"):
            raise ValueError(f"decode must be 'sample' or 'greedy', got {decode!r}")
        if edge_loss not in ("sum", "mean"):
            raise ValueError(f"edge_loss must be 'sum' or 'mean', got {edge_loss!r}")
        if not posterior_noise >= 0:
            raise ValueError(f"posterior_noise must be >= 0, got {posterior_noise}")
        if not lr > 0 or kl_weight < 0:
            raise ValueError(f"need lr > 0 and kl_weight >= 0, got lr={lr}, kl_weight={kl_weight}")
        self.save_hyperparameters()
        self.dn, self.dg = dn, dg
        # encoder q(z|G)
        self.enc_embed = nn.Embedding(NUM_TYPES, dn)
        self.encoder = GraphNet(dn, dg, rounds, variational=True)
        # decoder p(G|z); its look-up table L is separate from the encoder's and N(0, 1)-initialised (A.2.2)
        self.dec_embed = nn.Embedding(NUM_TYPES, dn)
        self.graph_prop = GraphNet(dn, dg, rounds, variational=False)
        self.add_node = mlp(2 * dg, dg, NUM_TYPES)
        self.init_node = mlp(2 * dg + dn, dg + dn, dn)
        self.start_node = mlp(dg + dn, dg + dn, dn)
        self.add_edges = mlp(2 * dn + 2 * dg, dg + dn, 1)
        self.predictor = mlp(dg, dg, 1)
        self.train_predictor = True  # set from the data at setup("fit")
        self.recon = ReconstructionAccuracy()
        # torchmetrics, not `sync_dist=True`: Lightning's synced mean divides an integer count of graphs by the
        # world size and truncates it when the ranks hold unequal shares (UnrepeatedDistributedSampler)
        self.val_loss, self.val_recon_greedy = MeanMetric(), MeanMetric()
        self.pred_rmse = MeanSquaredError(squared=False)
        self.pred_tau = KendallRankCorrCoef()
        self.generation: GenerationMetrics | None = None  # built in setup (needs the space's hashes)

    # -- data conversion ------------------------------------------------------------------------------
    @staticmethod
    def dense(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(types [B, 7] padded -1, adjacency [B, 7, 7], num_nodes [B]) in the batch's node order."""
        b = batch.num_graphs
        nv = torch.bincount(batch.batch, minlength=b)
        start = batch.ptr[:-1] if hasattr(batch, "ptr") and batch.ptr is not None else torch.cumsum(nv, 0) - nv
        pos = torch.arange(batch.num_nodes, device=nv.device) - start[batch.batch]
        types = torch.full((b, MAX_VERTICES), -1, dtype=torch.long, device=nv.device)
        types[batch.batch, pos] = batch.node_type
        adj = torch.zeros((b, MAX_VERTICES, MAX_VERTICES), dtype=torch.float, device=nv.device)
        s, d = batch.edge_index
        adj[batch.batch[s], pos[s], pos[d]] = 1.0
        return types, adj, nv

    # -- encoder --------------------------------------------------------------------------------------
    def encode_dense(self, types: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|G) from the dense view (types [B, 7] padded −1, adjacency [B, 7, 7])."""
        mask = types >= 0
        _, mu, logvar = self.encoder(self.enc_embed(types.clamp(min=0)), adj, mask)
        return mu, logvar

    def encode(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        types, adj, _ = self.dense(batch)
        return self.encode_dense(types, adj)

    # -- decoder pieces -------------------------------------------------------------------------------
    def _propagate(self, h: torch.Tensor, adj: torch.Tensor, weights: list[torch.Tensor] | None = None):
        """GraphProp (Eq. 5.7) on A partial graphs that all have n nodes: h [A, n, dn], adj [A, n, n]."""
        hp, hg, _ = self.graph_prop(h, adj, weights=weights)
        return hp, hg

    def _start(self, z: torch.Tensor) -> torch.Tensor:
        emb = self.dec_embed.weight[INPUT_T].expand(z.size(0), -1)
        return self.start_node(torch.cat([z, emb], dim=-1))[:, None, :]

    # f_edges([h_new, h_v, z, h_G]) (Eq. 5.11): its first layer is affine, so it splits into a part per new node
    # and step (h_new, z, h_G) and a part per earlier node (h_v), summed before the ReLU; the per-step part is
    # then computed once per step instead of once per candidate edge
    def _edge_context(self, h_new: torch.Tensor, z: torch.Tensor, hg: torch.Tensor) -> torch.Tensor:
        first, dn = self.add_edges[0], self.dn
        return (F.linear(h_new, first.weight[:, :dn])
                + F.linear(torch.cat([z, hg], dim=-1), first.weight[:, 2 * dn:], first.bias))

    def _edge_node(self, hp: torch.Tensor) -> torch.Tensor:
        return F.linear(hp, self.add_edges[0].weight[:, self.dn: 2 * self.dn])

    def _edge_head(self, pre: torch.Tensor) -> torch.Tensor:
        return self.add_edges[2](self.add_edges[1](pre)).squeeze(-1)

    def _edge_logits(self, h_new, hp, z, hg) -> torch.Tensor:
        """Scores s_v of an edge from each earlier node v (hp [A, n, dn]) to the new node (Eq. 5.11): [A, n]."""
        return self._edge_head(self._edge_context(h_new, z, hg)[:, None, :] + self._edge_node(hp))

    # -- teacher-forced likelihood --------------------------------------------------------------------
    def reconstruction_loss(self, z: torch.Tensor, types: torch.Tensor, adj: torch.Tensor, nv: torch.Tensor):
        """Σ_t CE(node type t+1) + Σ_t Σ_{v≤t} BCE(edge v→t+1), with the true graph fed back (teacher
        forcing, Eq. 5.14). Returns (node loss [B], edge loss [B]).

        Batched over graphs and steps: every graph of the batch goes through all steps (a step past a graph's
        output node computes on padding and is masked out of the loss), so the loop holds only what is
        sequential — GraphProp and InitNode, whose states feed the next step (Eq. 5.10) — and AddNode and
        AddEdges run once over all steps after it. Equal to the per-step form that drops finished graphs
        (:func:`scgbench.bench.vsgae_reference.reconstruction_loss`)."""
        b = z.size(0)
        steps = MAX_VERTICES - 1
        true_types = types.clamp(min=0)
        emb = self.dec_embed(true_types)                            # [B, 7, dn]
        h = self._start(z)                                          # [B, 1, dn]
        hgs, hps, news = [], [], []
        weights = self.graph_prop.stacked_weights()
        for t in range(steps):
            hp, hg = self._propagate(h, adj[:, : t + 1, : t + 1], weights)
            h_new = self.init_node(torch.cat([z, hg, emb[:, t + 1]], dim=-1))
            hgs.append(hg), hps.append(hp), news.append(h_new)
            h = torch.cat([hp, h_new[:, None, :]], dim=1)
        hg_all, new_all = torch.stack(hgs, dim=1), torch.stack(news, dim=1)        # [B, S, dg], [B, S, dn]
        z_all = z[:, None, :].expand(-1, steps, -1)
        live = torch.arange(1, steps + 1, device=z.device) < nv[:, None]           # step t adds node t + 1
        logits = self.add_node(torch.cat([z_all, hg_all], dim=-1))
        node_ce = F.cross_entropy(logits.reshape(b * steps, -1), true_types[:, 1:].reshape(-1),
                                  reduction="none").reshape(b, steps)
        # candidate edges (v → t + 1) for v ≤ t, step-major: the nodes of step t are hps[t]
        step, src = self._edge_pairs(steps, z.device)
        pre = self._edge_context(new_all, z_all, hg_all)[:, step] + self._edge_node(torch.cat(hps, dim=1))
        edge_bce = F.binary_cross_entropy_with_logits(self._edge_head(pre), adj[:, src, step + 1],
                                                      reduction="none")
        if self.hparams.edge_loss == "mean":  # the authors' code: a step's edge terms averaged over its nodes
            edge_bce = edge_bce / (step + 1)
        node_loss = torch.where(live, node_ce, 0.0).sum(-1)
        edge_loss = torch.where(live[:, step], edge_bce, 0.0).sum(-1)
        return node_loss, edge_loss

    @staticmethod
    def _edge_pairs(steps: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(step t, source v) of every candidate edge v → t + 1, v ≤ t, in step-major order."""
        step = torch.arange(steps, device=device).repeat_interleave(torch.arange(1, steps + 1, device=device))
        src = torch.cat([torch.arange(t + 1, device=device) for t in range(steps)])
        return step, src

    # -- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, z: torch.Tensor, noise_type: torch.Tensor | None = None,
               noise_edge: torch.Tensor | None = None, mode: str | None = None):
        """Generate one graph per row of ``z``. ``mode='sample'`` draws node types by inverse CDF with
        ``noise_type`` and edges as ``noise_edge < p``; ``'greedy'`` takes argmax types and p > 0.5 edges.
        Returns (types [B, 7] padded -1, adjacency [B, 7, 7] long, num_nodes [B])."""
        mode = mode or self.hparams.decode
        b, dev = z.size(0), z.device
        steps = MAX_VERTICES - 1
        if mode == "sample":
            if noise_type is None:
                noise_type = torch.rand(b, steps, device=dev)
            if noise_edge is None:
                noise_edge = torch.rand(b, steps, steps, device=dev)
        types = torch.full((b, MAX_VERTICES), -1, dtype=torch.long, device=dev)
        types[:, 0] = INPUT_T
        adj = torch.zeros((b, MAX_VERTICES, MAX_VERTICES), dtype=torch.long, device=dev)
        nv = torch.ones(b, dtype=torch.long, device=dev)
        h = self._start(z)
        idx = torch.arange(b, device=dev)
        weights = self.graph_prop.stacked_weights()
        for t in range(steps):
            if idx.numel() == 0:
                break
            zt = z[idx]
            hp, hg = self._propagate(h, adj[idx, : t + 1, : t + 1].float(), weights)
            probs = torch.softmax(self.add_node(torch.cat([zt, hg], dim=-1)), dim=-1)
            if mode == "sample":
                cdf = torch.cumsum(probs, dim=-1)
                new_type = (cdf < noise_type[idx, t: t + 1]).sum(-1).clamp(max=NUM_TYPES - 1)
            else:
                new_type = probs.argmax(-1)
            h_new = self.init_node(torch.cat([zt, hg, self.dec_embed(new_type)], dim=-1))
            p_edge = torch.sigmoid(self._edge_logits(h_new, hp, zt, hg))     # [A, t+1]
            edges = (noise_edge[idx, t, : t + 1] < p_edge) if mode == "sample" else (p_edge > 0.5)
            types[idx, t + 1] = new_type
            adj[idx, : t + 1, t + 1] = edges.long()
            nv[idx] = t + 2
            go_on = new_type != OUTPUT_T                          # stop after the output node
            idx = idx[go_on]
            h = torch.cat([hp, h_new[:, None, :]], dim=1)[go_on]
        return types, adj, nv

    # -- Lightning ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        dm = getattr(attached_trainer(self), "datamodule", None)
        if stage == "fit":
            # no accuracy anywhere in the data: the head gets no gradient, and DDP would wait for it
            self.train_predictor = bool(getattr(dm, "has_targets", True))
            self.predictor.requires_grad_(self.train_predictor)
        if stage in (None, "test", "fit") and self.generation is None and dm is not None and dm.table is not None:
            self.generation = GenerationMetrics(dm.space_hashes(), dm.train_hashes())

    def _loss(self, batch, sample: bool = True, eps: torch.Tensor | None = None):
        """The objective (Eqs. 5.13–5.14, + the accuracy head's MSE when it trains); ``eps``: the
        reparameterisation noise (drawn when None)."""
        types, adj, nv = self.dense(batch)
        mu, logvar = self.encode_dense(types, adj)
        if sample:
            eps = torch.randn_like(mu) if eps is None else eps
            z = mu + self.hparams.posterior_noise * eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        node_loss, edge_loss = self.reconstruction_loss(z, types, adj, nv)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        loss = (node_loss + edge_loss + self.hparams.kl_weight * kl).mean()
        logs = {"node_loss": node_loss.mean(), "edge_loss": edge_loss.mean(), "kl": kl.mean()}
        if self.train_predictor:
            # mean squared error over the cells with a target (0 for a batch without one); every cell passes
            # through the head (weight 0 without a target), so its parameters are used in every step's loss on
            # every rank, and DDP never waits for their gradients
            y = batch.y.reshape(-1)
            has = torch.isfinite(y)
            err = torch.where(has, self.predictor(mu).squeeze(-1) - y.nan_to_num(), 0.0)
            mse = err.pow(2).sum() / has.sum().clamp(min=1)
            loss = loss + self.hparams.predictor_weight * mse
            logs["pred_mse"] = mse
        return loss, logs, mu, (types, adj, nv)

    def training_step(self, batch, batch_idx):
        loss, logs, _, _ = self._loss(batch)
        bs = batch.num_graphs
        # epoch means over all ranks, synced once at the epoch end (exact: DistributedSampler gives every rank
        # the same batch sizes); ReduceLROnPlateau reads train/loss, so every rank must see the same value
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=bs,
                 sync_dist=True)
        for k, v in logs.items():
            self.log(f"train/{k}", v.detach(), on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logs, mu, (types, adj, nv) = self._loss(batch, sample=False)
        bs = batch.num_graphs
        self.val_loss.update(loss, weight=bs)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True, batch_size=bs)
        # cheap progress signal: greedy decode of the posterior mean, exact match in node order
        dt, da, dn_ = self.decode(mu, mode="greedy")
        self.val_recon_greedy.update(self._exact(dt, da, dn_, types, adj, nv).float())
        self.log("val/recon_greedy", self.val_recon_greedy, on_epoch=True, batch_size=bs)

    @staticmethod
    def _exact(dt, da, dnv, types, adj, nv) -> torch.Tensor:
        return (dnv == nv) & (dt == types).all(-1) & (da == adj.long()).all(-1).all(-1)

    def _eval_key(self, stream: int) -> int:
        """Key of evaluation-noise sub-stream ``stream``: (run seed, test, ``eval_seed``, stream)."""
        return sub_key(eval_noise_key(TEST, 0), int(self.hparams.eval_seed), stream)

    def decode_posterior(self, batch, mu: torch.Tensor, logvar: torch.Tensor):
        """``recon_z_samples`` z ~ q(z|G) × ``recon_decodes`` decodes per graph of ``batch`` (graph-major, then z,
        then decode), with z and the decoding noise keyed by (cell, z index, decode index): a cell decodes to the
        same graphs whichever batch or rank holds it."""
        b, zs, ds = mu.size(0), self.hparams.recon_z_samples, self.hparams.recon_decodes
        steps = MAX_VERTICES - 1
        cell = batch.cell_index.reshape(-1)
        eps = keyed_normal(self._eval_key(RECON_Z), cell, (b, zs, mu.size(1)), mu.dtype)
        z = (mu[:, None] + self.hparams.posterior_noise * eps * torch.exp(0.5 * logvar)[:, None]).repeat_interleave(ds, dim=1).reshape(b * zs * ds, -1)
        nt = keyed_uniform(self._eval_key(RECON_TYPE), cell, (b, zs, ds, steps), mu.dtype).reshape(-1, steps)
        ne = keyed_uniform(self._eval_key(RECON_EDGE), cell, (b, zs, ds, steps, steps), mu.dtype)
        return self.decode(z, nt, ne.reshape(-1, steps, steps))

    def test_step(self, batch, batch_idx):
        types, adj, nv = self.dense(batch)
        mu, logvar = self.encode_dense(types, adj)
        b, zs, ds = mu.size(0), self.hparams.recon_z_samples, self.hparams.recon_decodes
        dt, da, dnv = self.decode_posterior(batch, mu, logvar)
        rep = lambda x: x.repeat_interleave(zs * ds, dim=0)  # noqa: E731
        hit = self._exact(dt, da, dnv, rep(types), rep(adj), rep(nv)).float().reshape(b, zs * ds)
        self.recon.update(hit.mean(-1))
        y = batch.y.reshape(-1)
        has = torch.isfinite(y)
        if has.any():
            pred = self.predictor(mu[has]).squeeze(-1)
            self.pred_rmse.update(pred, y[has])
            self.pred_tau.update(pred, y[has])
            self._pred_seen = True

    def on_test_epoch_start(self) -> None:
        self._pred_seen = False

    def decode_prior(self, index: torch.Tensor):
        """Decodes of prior samples ``index`` (``prior_decodes`` each, sample-major): z_i ~ N(0, I) and the
        decoding noise keyed by (i, decode index), so sample i is the same whichever rank decodes it."""
        d, steps = self.hparams.prior_decodes, MAX_VERTICES - 1
        n = index.numel()
        z = keyed_normal(self._eval_key(PRIOR_Z), index, (n, self.dg)).repeat_interleave(d, dim=0)
        nt = keyed_uniform(self._eval_key(PRIOR_TYPE), index, (n, d, steps), torch.float32)
        ne = keyed_uniform(self._eval_key(PRIOR_EDGE), index, (n, d, steps, steps), torch.float32)
        return self.decode(z, nt.reshape(-1, steps), ne.reshape(-1, steps, steps))

    def on_test_epoch_end(self) -> None:
        r = self.recon.compute()
        log_reduced(self, {f"test/recon_{k}" if k != "acc" else "test/recon_acc": v.float() for k, v in r.items()})
        self.recon.reset()
        # prior: samples 0..prior_samples−1 whatever the world size; this rank decodes every world_size-th one
        world = self.trainer.world_size if attached_trainer(self) is not None else 1
        mine = torch.arange(self.global_rank, self.hparams.prior_samples, world, device=self.device)
        if self.generation is None:
            self.generation = GenerationMetrics()
        self.generation.to(self.device)
        for chunk in mine.split(500):
            self.generation.update(*self.decode_prior(chunk))
        gen = self.generation.compute()
        log_reduced(self, {f"test/prior_{k}": v.float() for k, v in gen.items()})
        self.generation.reset()
        seen = torch.tensor(float(self._pred_seen), device=self.device)
        if attached_trainer(self) is not None:
            seen = self.trainer.strategy.reduce(seen, reduce_op="max")  # compute() below is a collective
        if seen > 0:
            log_reduced(self, {"test/pred_rmse": self.pred_rmse.compute(),
                               "test/pred_kendall_tau": self.pred_tau.compute()})
        self.pred_rmse.reset()
        self.pred_tau.reset()
        self._prediction_curve()

    def _prediction_curve(self) -> None:
        """With accuracies in the data: RMSE and Kendall τ of a regressor on the posterior means against the
        training-set size (:func:`~scgbench.metrics.prediction.prediction_curve`), logged as
        ``test/pred_curve_*`` and drawn into the run directory's ``figures/pred_curve.png``. Every rank computes
        the same curve (the cells and subsets come from the data seed), so the logged values are exact."""
        dm = getattr(attached_trainer(self), "datamodule", None)
        if dm is None or not getattr(dm, "has_targets", False):
            return
        train_rows, test_rows = dm.prediction_index(max_train=max(DEFAULT_SIZES))
        if len(train_rows) < 2 or len(test_rows) < 2:
            return
        curve = prediction_curve(self.embed(dm.cells_loader(train_rows)), dm.targets(train_rows),
                                 self.embed(dm.cells_loader(test_rows)), dm.targets(test_rows), seed=dm.data_seed)
        log_reduced(self, curve_scalars(curve))
        if self.trainer.is_global_zero:
            prediction_curve_figure(curve, Path(self.trainer.default_root_dir) / "figures" / "pred_curve.png")

    @torch.no_grad()
    def embed(self, loader) -> np.ndarray:
        """Posterior means [N, dg] of the cells of ``loader``, in its order."""
        return torch.cat([self.encode(b.to(self.device))[0].float().cpu() for b in loader]).numpy()

    def configure_optimizers(self):
        opt = adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.hparams.plateau_factor,
                                                           patience=self.hparams.plateau_patience)
        # Appendix A.2: "whenever the loss did not drop for 10 epochs" — the training loss
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train/loss", "interval": "epoch"}}
