"""``python -m scgbench.bench.vsgae_speed``: VS-GAE training and generation throughput, the batched model
against the per-step reference (:mod:`scgbench.bench.vsgae_reference`) on the same parameters, in one process.

Per batch size: a training step (objective, backward, Adam step) on batches of NAS-Bench-101 cells, timed in
interleaved chunks of the two implementations (so load drifts hit both alike), and the batch's collation
(torch-geometric ``Batch``, shared by both) timed on its own. Generation: ``--prior`` z ~ N(0, I) decoded
with the same noise by both. Prints one JSON object; ``--help`` for the sizes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule, collate_graphs
from scgbench.models.vsgae import VSGAE
from scgbench.bench import vsgae_reference as ref
from scgbench.specs.nasbench101 import MAX_VERTICES


def _batched_loss(model: VSGAE, batch, eps: torch.Tensor) -> torch.Tensor:
    return model._loss(batch, eps=eps)[0]


def _timed_steps(model, opt, batches, eps, loss_fn) -> float:
    t = time.perf_counter()
    for b, e in zip(batches, eps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model, b, e).backward()
        opt.step()
    return time.perf_counter() - t


def training(model: VSGAE, dm: NASBench101DataModule, batch_size: int, chunks: int, chunk: int) -> dict:
    g = torch.Generator().manual_seed(batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    idx = torch.randperm(len(dm.train_set), generator=g)[: batch_size * chunk].view(chunk, batch_size)
    items = [[dm.train_set[int(i)] for i in row] for row in idx]
    t = time.perf_counter()
    batches = [collate_graphs(it) for it in items]
    collate = (time.perf_counter() - t) / chunk
    eps = [torch.randn(batch_size, model.dg, generator=g) for _ in batches]
    _timed_steps(model, opt, batches[:2], eps[:2], _batched_loss)  # warm-up of both paths
    _timed_steps(model, opt, batches[:2], eps[:2], ref.loss)
    new = old = 0.0
    for _ in range(chunks):
        new += _timed_steps(model, opt, batches, eps, _batched_loss)
        old += _timed_steps(model, opt, batches, eps, ref.loss)
    steps = chunks * chunk
    return {"batch_size": batch_size, "steps": steps, "batched_ms_per_step": 1e3 * new / steps,
            "reference_ms_per_step": 1e3 * old / steps, "collate_ms_per_batch": 1e3 * collate,
            "batched_graphs_per_s": batch_size * steps / new, "reference_graphs_per_s": batch_size * steps / old,
            "speedup": old / new}


@torch.no_grad()
def generation(model: VSGAE, n: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(1)
    steps = MAX_VERTICES - 1
    z, nt, ne = torch.randn(n, model.dg, generator=g), torch.rand(n, steps, generator=g), \
        torch.rand(n, steps, steps, generator=g)
    model.eval()
    same = all(torch.equal(a, b) for a, b in zip(model.decode(z, nt, ne, mode="sample"), ref.decode(model, z, nt, ne)))
    new = old = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        model.decode(z, nt, ne, mode="sample")
        new += time.perf_counter() - t
        t = time.perf_counter()
        ref.decode(model, z, nt, ne)
        old += time.perf_counter() - t
    model.train()
    return {"graphs": n, "repeats": repeats, "batched_graphs_per_s": n * repeats / new,
            "reference_graphs_per_s": n * repeats / old, "speedup": old / new, "same_graphs": same}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m scgbench.bench.vsgae_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--chunks", type=int, default=5, help="interleaved chunks per implementation")
    p.add_argument("--chunk", type=int, default=6, help="training steps per chunk")
    p.add_argument("--prior", type=int, default=1000, help="prior samples decoded per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--subset", type=int, default=20000, help="cells of the enumerated space to draw batches from")
    p.add_argument("--dn", type=int, default=250, help="node width (250 in the paper, 64 in the quick profile)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default=None, help="data root (default $SCGBENCH_DATA or ./data)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dm = NASBench101DataModule(root=a.root, subset=a.subset)
    dm.setup()
    model = VSGAE(dn=a.dn)  # dg = 56 and two rounds as in the paper
    model.train_predictor = False  # the enumerated space has no accuracies (as the training step sets in setup)
    out = {"threads": a.threads, "dn": a.dn, "training": [training(model, dm, b, a.chunks, a.chunk) for b in a.batch_sizes],
           "generation": generation(model, a.prior, a.repeats)}
    out["mean_nodes"] = float(np.mean(dm.table.num_vertices[dm.train_index]))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
