"""The VS-GAE computation as the suite first implemented it, kept as the reference for the batched one.

:class:`~scgbench.models.vsgae.VSGAE` propagates dense ``[graphs, nodes, dn]`` blocks and keeps every graph of
a batch through all decoding steps. This module computes the same quantities on the same parameters the way
the first implementation did: edge lists through a torch-geometric ``MessagePassing`` that applies
``Lin([h_v, h_u])`` to every edge (Eqs. 5.1–5.4), and a decoding loop that drops the graphs that have finished
(thesis §5.1.4, Eqs. 5.7–5.12). It serves two purposes: the test that the batched loss and decoding equal the
per-step ones (``tests/test_vsgae.py``), and the side-by-side timing of :mod:`scgbench.bench.vsgae_speed`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from ..models.vsgae import INPUT_T, NUM_TYPES, OUTPUT_T, VSGAE, GraphNet
from ..specs.nasbench101 import MAX_VERTICES


class EdgeMessages(MessagePassing):
    """``Σ_{u→v} lin([h_v, h_u])`` at every node v with sum aggregation (parameter-free: ``lin`` is passed)."""

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def forward(self, lin: nn.Linear, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, h=h, lin=lin, size=(h.size(0), h.size(0)))

    def message(self, h_i: torch.Tensor, h_j: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        return lin(torch.cat([h_i, h_j], dim=-1))


_MESSAGES = EdgeMessages()


def graph_net(net: GraphNet, h: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor, num_graphs: int):
    """``net``'s rounds and aggregations on a flat node list (h [nodes, dn], edge_index [2, E], batch [nodes])."""
    for r in net.rounds:
        m = _MESSAGES(r.fwd.lin, h, edge_index) + _MESSAGES(r.bwd.lin, h, edge_index.flip(0))
        h = r.gru(m, h)

    def agg(a):
        return scatter(a.value(h) * torch.sigmoid(a.gate(h)), batch, dim=0, dim_size=num_graphs, reduce="sum")

    return h, agg(net.agg), (agg(net.agg_var) if net.agg_var is not None else None)


def encode(model: VSGAE, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, log σ²) of q(z|G) for a torch-geometric batch."""
    _, mu, logvar = graph_net(model.encoder, model.enc_embed(batch.node_type), batch.edge_index, batch.batch,
                              batch.num_graphs)
    return mu, logvar


def _dense_edges(adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, n, _ = adj.shape
    g, src, dst = torch.nonzero(adj, as_tuple=True)
    return torch.stack([g * n + src, g * n + dst]), torch.arange(a, device=adj.device).repeat_interleave(n)


def propagate(model: VSGAE, h: torch.Tensor, adj: torch.Tensor):
    """GraphProp on A partial graphs of n nodes each: h [A, n, dn], adj [A, n, n]."""
    a, n, _ = h.shape
    edge_index, batch = _dense_edges(adj)
    hp, hg, _ = graph_net(model.graph_prop, h.reshape(a * n, -1), edge_index, batch, a)
    return hp.reshape(a, n, -1), hg


def _edge_logits(model: VSGAE, h_new, hp, z, hg) -> torch.Tensor:
    a, n, _ = hp.shape
    ctx = torch.cat([z, hg], dim=-1)[:, None, :].expand(a, n, -1)
    return model.add_edges(torch.cat([h_new[:, None, :].expand(a, n, -1), hp, ctx], dim=-1)).squeeze(-1)


def reconstruction_loss(model: VSGAE, z, types, adj, nv):
    """Teacher-forced (node loss [B], edge loss [B]), one step at a time over the graphs still generating."""
    b = z.size(0)
    node_loss = torch.zeros(b, device=z.device)
    edge_loss = torch.zeros(b, device=z.device)
    h = model._start(z)
    idx = torch.arange(b, device=z.device)
    for t in range(MAX_VERTICES - 1):
        keep = nv[idx] > t + 1
        idx, h = idx[keep], h[keep]
        if idx.numel() == 0:
            break
        zt = z[idx]
        hp, hg = propagate(model, h, adj[idx, : t + 1, : t + 1])
        logits = model.add_node(torch.cat([zt, hg], dim=-1))
        true_type = types[idx, t + 1]
        node_loss = node_loss.index_add(0, idx, F.cross_entropy(logits, true_type, reduction="none"))
        h_new = model.init_node(torch.cat([zt, hg, model.dec_embed(true_type)], dim=-1))
        e_logits = _edge_logits(model, h_new, hp, zt, hg)
        e_true = adj[idx, : t + 1, t + 1]
        edge_loss = edge_loss.index_add(
            0, idx, F.binary_cross_entropy_with_logits(e_logits, e_true, reduction="none").sum(-1))
        h = torch.cat([hp, h_new[:, None, :]], dim=1)
    return node_loss, edge_loss


def loss(model: VSGAE, batch, eps: torch.Tensor) -> torch.Tensor:
    """The training objective (Eqs. 5.13–5.14, KL weight of ``model``) with reparameterisation noise ``eps``."""
    types, adj, nv = model.dense(batch)
    mu, logvar = encode(model, batch)
    z = mu + eps * torch.exp(0.5 * logvar)
    node_loss, edge_loss = reconstruction_loss(model, z, types, adj, nv)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
    return (node_loss + edge_loss + model.hparams.kl_weight * kl).mean()


@torch.no_grad()
def decode(model: VSGAE, z, noise_type, noise_edge):
    """Sampled decoding (inverse-CDF node types, ``noise_edge < p`` edges) of one graph per row of ``z``."""
    b, dev = z.size(0), z.device
    steps = MAX_VERTICES - 1
    types = torch.full((b, MAX_VERTICES), -1, dtype=torch.long, device=dev)
    types[:, 0] = INPUT_T
    adj = torch.zeros((b, MAX_VERTICES, MAX_VERTICES), dtype=torch.long, device=dev)
    nv = torch.ones(b, dtype=torch.long, device=dev)
    h = model._start(z)
    idx = torch.arange(b, device=dev)
    for t in range(steps):
        if idx.numel() == 0:
            break
        zt = z[idx]
        hp, hg = propagate(model, h, adj[idx, : t + 1, : t + 1].float())
        probs = torch.softmax(model.add_node(torch.cat([zt, hg], dim=-1)), dim=-1)
        new_type = (torch.cumsum(probs, dim=-1) < noise_type[idx, t: t + 1]).sum(-1).clamp(max=NUM_TYPES - 1)
        h_new = model.init_node(torch.cat([zt, hg, model.dec_embed(new_type)], dim=-1))
        edges = noise_edge[idx, t, : t + 1] < torch.sigmoid(_edge_logits(model, h_new, hp, zt, hg))
        types[idx, t + 1] = new_type
        adj[idx, : t + 1, t + 1] = edges.long()
        nv[idx] = t + 2
        go_on = new_type != OUTPUT_T
        idx = idx[go_on]
        h = torch.cat([hp, h_new[:, None, :]], dim=1)[go_on]
    return types, adj, nv
