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
  validation accuracy, trained jointly (MSE on cells that have one) when the data carry accuracies.

Decoding is batched over graphs *and* exact: each graph's random choices come from its own uniform noise
(``noise_type`` [B, 6], ``noise_edge`` [B, 6, 6]), so a batch decodes to the same graphs as decoding each
graph alone with its noise row.
"""

from __future__ import annotations


import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter
from torchmetrics import KendallRankCorrCoef, MeanSquaredError

from ..datamodules.nasbench101.cell import MAX_VERTICES, NODE_TYPES
from ..metrics.graphs import GenerationMetrics, ReconstructionAccuracy

NUM_TYPES = len(NODE_TYPES)
INPUT_T, OUTPUT_T = 0, NUM_TYPES - 1


class DirectedMessage(MessagePassing):
    """``Σ_{u→v} Lin([h_v, h_u])`` at every node v (sum aggregation; the target comes first)."""

    def __init__(self, dn: int) -> None:
        super().__init__(aggr="add")
        self.lin = nn.Linear(2 * dn, 2 * dn)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, h=h, size=(h.size(0), h.size(0)))

    def message(self, h_i: torch.Tensor, h_j: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([h_i, h_j], dim=-1))


class BiRound(nn.Module):
    """One propagation round: forward and reverse messages summed into a GRU cell update (Eq. 5.4, A.2.1)."""

    def __init__(self, dn: int) -> None:
        super().__init__()
        self.fwd, self.bwd = DirectedMessage(dn), DirectedMessage(dn)
        self.gru = nn.GRUCell(2 * dn, dn)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        m = self.fwd(h, edge_index) + self.bwd(h, edge_index.flip(0))
        return self.gru(m, h)


class GatedSum(nn.Module):
    """``Σ_v Lin_{dn→dg}(h_v) ⊙ σ(Lin_{dn→1}(h_v))`` per graph (A.2.1)."""

    def __init__(self, dn: int, dg: int) -> None:
        super().__init__()
        self.value, self.gate = nn.Linear(dn, dg), nn.Linear(dn, 1)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        return scatter(self.value(h) * torch.sigmoid(self.gate(h)), batch, dim=0, dim_size=num_graphs, reduce="sum")


class GraphNet(nn.Module):
    """``rounds`` bidirectional rounds (own weights each) + gated aggregation (+ a variance aggregator)."""

    def __init__(self, dn: int, dg: int, rounds: int = 2, variational: bool = False) -> None:
        super().__init__()
        self.rounds = nn.ModuleList([BiRound(dn) for _ in range(rounds)])
        self.agg = GatedSum(dn, dg)
        self.agg_var = GatedSum(dn, dg) if variational else None

    def forward(self, h, edge_index, batch, num_graphs):
        for r in self.rounds:
            h = r(h, edge_index)
        hg = self.agg(h, batch, num_graphs)
        var = self.agg_var(h, batch, num_graphs) if self.agg_var is not None else None
        return h, hg, var


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


def _dense_edges(adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of A graphs with n nodes each ([A, n, n] 0/1) as a flat edge_index + batch vector."""
    a, n, _ = adj.shape
    g, src, dst = torch.nonzero(adj, as_tuple=True)
    edge_index = torch.stack([g * n + src, g * n + dst])
    return edge_index, torch.arange(a, device=adj.device).repeat_interleave(n)


class VSGAE(pl.LightningModule):
    """VS-GAE LightningModule. Batches are torch-geometric ``Batch`` objects from
    :class:`~scgbench.datamodules.nasbench101.NASBench101DataModule` (``node_type``, ``edge_index``, ``y``).

    Evaluation protocol (thesis §6.1.4): reconstruction = ``recon_z_samples`` z ~ q(z|G) × ``recon_decodes``
    decodes per held-out graph, exact match in node order; prior = ``prior_samples`` z ~ N(0, I) ×
    ``prior_decodes`` decodes, scored by :class:`~scgbench.metrics.graphs.GenerationMetrics`.
    """

    def __init__(self, dn: int = 250, dg: int = 56, rounds: int = 2, lr: float = 1e-4, kl_weight: float = 1.0,
                 plateau_patience: int = 10, plateau_factor: float = 0.1, decode: str = "sample",
                 recon_z_samples: int = 10, recon_decodes: int = 10, prior_samples: int = 1000,
                 prior_decodes: int = 10, predictor_weight: float = 1.0, eval_seed: int = 0) -> None:
        super().__init__()
        if decode not in ("sample", "greedy"):
            raise ValueError(f"decode must be 'sample' or 'greedy', got {decode!r}")
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
        self.recon = ReconstructionAccuracy()
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
    def encode(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_embed(batch.node_type)
        _, mu, logvar = self.encoder(h, batch.edge_index, batch.batch, batch.num_graphs)
        return mu, logvar

    # -- decoder pieces -------------------------------------------------------------------------------
    def _propagate(self, h: torch.Tensor, adj: torch.Tensor):
        """GraphProp on A partial graphs that all have n nodes: h [A, n, dn], adj [A, n, n]."""
        a, n, _ = h.shape
        edge_index, batch = _dense_edges(adj)
        hp, hg, _ = self.graph_prop(h.reshape(a * n, -1), edge_index, batch, a)
        return hp.reshape(a, n, -1), hg

    def _start(self, z: torch.Tensor) -> torch.Tensor:
        emb = self.dec_embed.weight[INPUT_T].expand(z.size(0), -1)
        return self.start_node(torch.cat([z, emb], dim=-1))[:, None, :]

    def _edge_logits(self, h_new, hp, z, hg) -> torch.Tensor:
        a, n, _ = hp.shape
        ctx = torch.cat([z, hg], dim=-1)[:, None, :].expand(a, n, -1)
        return self.add_edges(torch.cat([h_new[:, None, :].expand(a, n, -1), hp, ctx], dim=-1)).squeeze(-1)

    # -- teacher-forced likelihood --------------------------------------------------------------------
    def reconstruction_loss(self, z: torch.Tensor, types: torch.Tensor, adj: torch.Tensor, nv: torch.Tensor):
        """Σ_t CE(node type t+1) + Σ_t Σ_{v≤t} BCE(edge v→t+1), with the true graph fed back (teacher
        forcing). Returns (node loss [B], edge loss [B])."""
        b = z.size(0)
        node_loss = torch.zeros(b, device=z.device)
        edge_loss = torch.zeros(b, device=z.device)
        h = self._start(z)                                         # [B, 1, dn]
        idx = torch.arange(b, device=z.device)                     # graphs still generating
        for t in range(MAX_VERTICES - 1):
            keep = nv[idx] > t + 1
            idx, h = idx[keep], h[keep]
            if idx.numel() == 0:
                break
            zt = z[idx]
            hp, hg = self._propagate(h, adj[idx, : t + 1, : t + 1])
            logits = self.add_node(torch.cat([zt, hg], dim=-1))
            true_type = types[idx, t + 1]
            node_loss = node_loss.index_add(0, idx, F.cross_entropy(logits, true_type, reduction="none"))
            h_new = self.init_node(torch.cat([zt, hg, self.dec_embed(true_type)], dim=-1))
            e_logits = self._edge_logits(h_new, hp, zt, hg)
            e_true = adj[idx, : t + 1, t + 1]
            edge_loss = edge_loss.index_add(
                0, idx, F.binary_cross_entropy_with_logits(e_logits, e_true, reduction="none").sum(-1))
            h = torch.cat([hp, h_new[:, None, :]], dim=1)
        return node_loss, edge_loss

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
        for t in range(steps):
            if idx.numel() == 0:
                break
            zt = z[idx]
            hp, hg = self._propagate(h, adj[idx, : t + 1, : t + 1].float())
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
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage in (None, "test", "fit") and self.generation is None and dm is not None and dm.table is not None:
            self.generation = GenerationMetrics(dm.space_hashes(), dm.train_hashes())

    def _loss(self, batch, sample: bool = True):
        types, adj, nv = self.dense(batch)
        mu, logvar = self.encode(batch)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        node_loss, edge_loss = self.reconstruction_loss(z, types, adj, nv)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        loss = (node_loss + edge_loss + self.hparams.kl_weight * kl).mean()
        logs = {"node_loss": node_loss.mean(), "edge_loss": edge_loss.mean(), "kl": kl.mean()}
        y = batch.y.reshape(-1)
        has = torch.isfinite(y)
        if has.any():
            pred = self.predictor(mu[has]).squeeze(-1)
            mse = F.mse_loss(pred, y[has])
            loss = loss + self.hparams.predictor_weight * mse
            logs["pred_mse"] = mse
        return loss, logs, mu, (types, adj, nv)

    def training_step(self, batch, batch_idx):
        loss, logs, _, _ = self._loss(batch)
        bs = batch.num_graphs
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)
        for k, v in logs.items():
            self.log(f"train/{k}", v.detach(), on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logs, mu, (types, adj, nv) = self._loss(batch, sample=False)
        bs = batch.num_graphs
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        # cheap progress signal: greedy decode of the posterior mean, exact match in node order
        dt, da, dn_ = self.decode(mu, mode="greedy")
        self.log("val/recon_greedy", self._exact(dt, da, dn_, types, adj, nv).float().mean(), on_epoch=True,
                 batch_size=bs, sync_dist=True)

    @staticmethod
    def _exact(dt, da, dnv, types, adj, nv) -> torch.Tensor:
        return (dnv == nv) & (dt == types).all(-1) & (da == adj.long()).all(-1).all(-1)

    def _generator(self, *salt: int) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(int(self.hparams.eval_seed) * 1_000_003 + sum(s * 7919 ** i for i, s in enumerate(salt, 1)))
        return g

    def test_step(self, batch, batch_idx):
        types, adj, nv = self.dense(batch)
        mu, logvar = self.encode(batch)
        b, zs, ds = mu.size(0), self.hparams.recon_z_samples, self.hparams.recon_decodes
        g = self._generator(1, batch_idx, self.global_rank)
        eps = torch.randn(b, zs, mu.size(1), generator=g).to(mu)
        z = (mu[:, None] + eps * torch.exp(0.5 * logvar)[:, None]).repeat_interleave(ds, dim=1).reshape(b * zs * ds, -1)
        steps = MAX_VERTICES - 1
        nt = torch.rand(z.size(0), steps, generator=g).to(mu)
        ne = torch.rand(z.size(0), steps, steps, generator=g).to(mu)
        dt, da, dnv = self.decode(z, nt, ne)
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

    def on_test_epoch_end(self) -> None:
        r = self.recon.compute()
        self.log_dict({f"test/recon_{k}" if k != "acc" else "test/recon_acc": v.float() for k, v in r.items()})
        self.recon.reset()
        # prior: z ~ N(0, I); this rank decodes every world_size-th sample
        n, d = self.hparams.prior_samples, self.hparams.prior_decodes
        g = self._generator(2)
        z_all = torch.randn(n, self.dg, generator=g)
        nt_all = torch.rand(n, d, MAX_VERTICES - 1, generator=g)
        ne_all = torch.rand(n, d, MAX_VERTICES - 1, MAX_VERTICES - 1, generator=g)
        mine = torch.arange(self.global_rank, n, self.trainer.world_size if self._trainer else 1)
        if self.generation is None:
            self.generation = GenerationMetrics()
        self.generation.to(self.device)
        for chunk in mine.split(500):
            z = z_all[chunk].repeat_interleave(d, dim=0).to(self.device)
            dt, da, dnv = self.decode(z, nt_all[chunk].reshape(-1, MAX_VERTICES - 1).to(self.device),
                                      ne_all[chunk].reshape(-1, MAX_VERTICES - 1, MAX_VERTICES - 1).to(self.device))
            self.generation.update(dt, da, dnv)
        gen = self.generation.compute()
        self.log_dict({f"test/prior_{k}": v.float() for k, v in gen.items()})
        self.generation.reset()
        if self._pred_seen:
            self.log("test/pred_rmse", self.pred_rmse.compute())
            self.log("test/pred_kendall_tau", self.pred_tau.compute())
        self.pred_rmse.reset()
        self.pred_tau.reset()

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.hparams.plateau_factor,
                                                           patience=self.hparams.plateau_patience)
        # Appendix A.2: "whenever the loss did not drop for 10 epochs" — the training loss
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train/loss", "interval": "epoch"}}
