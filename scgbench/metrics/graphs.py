"""Graph-generation metrics for VS-GAE on NAS-Bench-101 (SPEC §2.4; thesis §6.1.4, Table 6.7).

Decoded graphs are given as padded arrays: ``types`` [N, 7] (indices into ``NODE_TYPES`` = input,
conv3x3, conv1x1, maxpool3x3, output; -1 = no node), ``adj`` [N, 7, 7] (edge i→j at [i, j]) and
``num_nodes`` [N]. All metrics are torchmetrics ``Metric`` objects whose states reduce across DDP ranks
(sums, and concatenated 64-bit hash keys for uniqueness/novelty).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import Metric

from ..specs.nasbench101 import MAX_EDGES, NODE_TYPES, hash_modules

INPUT_T, OUTPUT_T = 0, len(NODE_TYPES) - 1
CHECKS = ("one_input", "one_output", "all_have_predecessor", "all_have_successor", "acyclic")


def validity_checks(types, adj, num_nodes) -> dict[str, np.ndarray]:
    """The five checks of thesis §6.1.4 (following Zhang et al. 2019), each a boolean array [N]:
    1) exactly one input node, 2) exactly one output node, 3) every node except the input has a
    predecessor, 4) every node except the output has a successor, 5) the graph is a DAG."""
    types, adj, nv = (np.asarray(x) for x in (types, adj, num_nodes))
    n, m = types.shape
    node = np.arange(m)[None, :] < nv[:, None]
    a = (np.asarray(adj) != 0) & node[:, :, None] & node[:, None, :]
    is_in = (types == INPUT_T) & node
    is_out = (types == OUTPUT_T) & node
    has_pred, has_succ = a.any(axis=1), a.any(axis=2)
    # acyclic: repeatedly remove nodes without remaining predecessors (Kahn); a cycle leaves nodes behind
    alive = node.copy()
    for _ in range(m):
        indeg = (a & alive[:, :, None] & alive[:, None, :]).sum(axis=1)
        alive &= ~((indeg == 0) & alive)
    return {
        "one_input": is_in.sum(axis=1) == 1,
        "one_output": is_out.sum(axis=1) == 1,
        "all_have_predecessor": ~(node & ~is_in & ~has_pred).any(axis=1),
        "all_have_successor": ~(node & ~is_out & ~has_succ).any(axis=1),
        "acyclic": ~alive.any(axis=1),
    }


def graph_hashes(types, adj, num_nodes) -> np.ndarray:
    """NAS-Bench-101 module hash of each graph (input → -1, output → -2, ops → 0..2), batched by size."""
    types, adj, nv = np.asarray(types), np.asarray(adj), np.asarray(num_nodes)
    out = np.empty(len(types), dtype="U32")
    labels = np.where(types == INPUT_T, -1, np.where(types == OUTPUT_T, -2, types - 1))
    for v in np.unique(nv):
        sel = np.flatnonzero(nv == v)
        out[sel] = hash_modules(adj[sel, :v, :v], labels[sel, :v])
    return out


def hash_keys(hashes) -> np.ndarray:
    """First 64 bits of each hex hash as int64."""
    return np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64).view(np.int64)


class ReconstructionAccuracy(Metric):
    """Share of decodes that reproduce the input graph exactly, in node order (thesis §6.1.4: 10 z samples
    × 10 decodes per test graph). ``update(per_graph_share)``; ``compute()`` returns the mean over test
    graphs and a normal-approximation 95% confidence interval over graphs (decodes of one graph are not
    independent, so graphs are the unit)."""

    full_state_update = False

    def __init__(self, z: float = 1.959964, **kw) -> None:
        super().__init__(**kw)
        self.z = z
        for name in ("n", "total", "total_sq"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, per_graph: torch.Tensor) -> None:
        p = per_graph.detach().to(torch.float64).reshape(-1)
        self.n += p.numel()
        self.total += p.sum()
        self.total_sq += (p * p).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n.clamp(min=1)
        mean = self.total / n
        var = (self.total_sq / n - mean * mean).clamp(min=0) * n / (n - 1).clamp(min=1)
        half = self.z * torch.sqrt(var / n)
        return {"acc": mean, "ci_low": (mean - half).clamp(min=0), "ci_high": (mean + half).clamp(max=1),
                "ci_half_width": half, "graphs": self.n}


class GenerationMetrics(Metric):
    """Validity (the five checks), share of valid graphs inside the NAS-Bench-101 space (by hash; ≤ 9 edges),
    uniqueness (distinct valid graphs / valid graphs) and novelty (distinct valid graphs not among the
    training cells / distinct valid graphs). Distinctness is up to isomorphism (module hash).

    ``space_hashes`` / ``train_hashes``: iterables of hex hashes (or ``None`` to skip those metrics).
    """

    full_state_update = False

    def __init__(self, space_hashes=None, train_hashes=None, **kw) -> None:
        super().__init__(**kw)
        self.space_set = set(space_hashes) if space_hashes is not None else None
        self.train_set = set(train_hashes) if train_hashes is not None else None
        for name in ("n", "valid", "in_space") + CHECKS:
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("keys", default=[], dist_reduce_fx="cat")
        self.add_state("novel", default=[], dist_reduce_fx="cat")

    def update(self, types, adj, num_nodes) -> None:
        types, adj, nv = (x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
                          for x in (types, adj, num_nodes))
        checks = validity_checks(types, adj, nv)
        valid = np.logical_and.reduce([checks[c] for c in CHECKS])
        self.n += len(valid)
        self.valid += int(valid.sum())
        for c in CHECKS:
            setattr(self, c, getattr(self, c) + int(checks[c].sum()))
        sel = np.flatnonzero(valid)
        hashes = graph_hashes(types[sel], adj[sel], nv[sel]) if len(sel) else np.zeros(0, dtype="U32")
        if self.space_set is not None and len(sel):
            edges = adj[sel].reshape(len(sel), -1).sum(axis=1)
            self.in_space += int(sum(h in self.space_set and e <= MAX_EDGES for h, e in zip(hashes, edges)))
        # always append (possibly empty) tensors so that every rank contributes to the 'cat' reduction
        self.keys.append(torch.as_tensor(hash_keys(hashes), dtype=torch.long, device=self.n.device))
        novel = [h not in self.train_set for h in hashes] if self.train_set is not None else [True] * len(hashes)
        self.novel.append(torch.as_tensor(novel, dtype=torch.bool, device=self.n.device))

    def compute(self) -> dict[str, torch.Tensor]:
        n, valid = self.n.clamp(min=1).double(), self.valid.double()
        out = {"validity": valid / n}
        for c in CHECKS:
            out[f"check_{c}"] = getattr(self, c).double() / n
        if self.space_set is not None:
            out["valid_in_space"] = self.in_space.double() / valid.clamp(min=1)
        keys = self.keys if torch.is_tensor(self.keys) else (torch.cat(self.keys) if self.keys else None)
        novel = self.novel if torch.is_tensor(self.novel) else (torch.cat(self.novel) if self.novel else None)
        if keys is not None and keys.numel():
            uniq, inv = torch.unique(keys, return_inverse=True)
            out["uniqueness"] = torch.tensor(uniq.numel() / keys.numel(), dtype=torch.float64)
            if self.train_set is not None:
                novel_u = torch.zeros(uniq.numel(), dtype=torch.bool, device=keys.device)
                novel_u[inv] = novel
                out["novelty"] = novel_u.double().mean()
        else:
            out["uniqueness"] = torch.tensor(math.nan, dtype=torch.float64)
            if self.train_set is not None:
                out["novelty"] = torch.tensor(math.nan, dtype=torch.float64)
        return out
