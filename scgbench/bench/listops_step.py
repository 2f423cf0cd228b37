"""``python -m scgbench.bench.listops_step``: ListOps training steps at the paper profile, the GNN's edge chain as
today's autograd graph (``reference``) against :class:`~scgbench.models.listops._EdgeMessages` eagerly (``eager``)
and through ``torch.compile`` (``compiled``, the default of ``ListOpsModule``); ``--help`` for the options.

The model is the benchmark's ``ours`` variant with the paper profile's model options (read from the packaged
configuration files: dim 60, 5 rounds, all-position parent candidates, dropout 0.1), β = 1 and α = 0.5 (every
source of noise on, as mid-training); the batches are i.i.d. batches of 100 from the paper's training
distribution (the generator's training split at a smaller size per depth: a prefix of the paper's, per depth).
Every contender is a twin of one model with its own Adam and does the same steps on the same batches from the
same seed (``torch.manual_seed`` before each step), **interleaved**: each batch is run by every contender in
turn, in an order that alternates between batches, on one thread. First the contenders' losses and gradients
are checked against the reference's on two batches (float tolerance). Reported: median ms per step and the
quartiles, the speed ratio reference ÷ contender per batch (median and quartiles: the spread), the load average
before and after, and the paper profile's training time at that step time (1,000 steps an epoch × 100 epochs;
validation and test passes not included).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from importlib import resources

import torch
import yaml

from scgbench.datamodules.listops import ListOpsConfig, collate_listops, generate
from scgbench.models.listops import EDGE_CHAINS, ListOpsModule

#: the paper profile's training length (configs/listops/profiles/paper.yaml: 5 × 20,000 examples, batch 100)
PAPER_STEPS = 100 * (5 * 20_000 // 100)


def _paper_model_args() -> dict:
    """The ``model:`` options of the paper profile and the ``ours`` variant (the variant's win)."""
    root = resources.files("scgbench.benchmarks") / "configs" / "listops"
    out: dict = {}
    for part in ("profiles/paper.yaml", "variants/ours.yaml"):
        out.update(yaml.safe_load((root / part).read_text()).get("model") or {})
    return out


def _batches(n: int, batch_size: int, seed: int) -> list[dict]:
    cfg = ListOpsConfig(seed=seed, train_per_depth=-(-n * batch_size // 5), val_per_depth=1, test_per_depth=1,
                        extrap_per_depth=1)
    split = generate(cfg, ["train"], progress=False)["train"]
    items = [(*(split.example(i)[k] for k in ("tokens", "parents", "values")), int(split.labels[i]),
              int(split.depths[i])) for i in range(len(split))]
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [collate_listops([items[j] for j in perm[i * batch_size:(i + 1) * batch_size]]) for i in range(n)]


def _check(models: dict, batches: list[dict]) -> None:
    """Losses and gradients of every contender equal the reference's (float tolerance), from the same draws."""
    for b in batches:
        got = {}
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            loss, _ = m.training_loss(b)
            loss.backward()
            got[name] = (loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
        ref_loss, ref_grads = got["reference"]
        for name, (loss, grads) in got.items():
            torch.testing.assert_close(loss, ref_loss, msg=f"{name}: loss")
            for k in ref_grads:
                torch.testing.assert_close(grads[k], ref_grads[k], msg=f"{name}: gradient of {k}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m scgbench.bench.listops_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=12, help="distinct batches (default 12)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the batches (default 3)")
    p.add_argument("--chains", default=",".join(EDGE_CHAINS), help=f"contenders (default {','.join(EDGE_CHAINS)})")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    chains = [c.strip() for c in a.chains.split(",") if c.strip()]
    if "reference" not in chains or any(c not in EDGE_CHAINS for c in chains):
        p.error(f"--chains: choose among {', '.join(EDGE_CHAINS)}, reference included; got {a.chains!r}")
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    batches = _batches(a.batches, 100, a.seed)
    torch.manual_seed(a.seed)
    base = ListOpsModule(**_paper_model_args()).train()
    for m in base.modules():
        if hasattr(m, "set_alpha"):
            m.set_alpha(0.5)
    models, opts = {}, {}
    for name in chains:
        models[name] = copy.deepcopy(base)
        models[name].edge_chain = name
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=base.lr)
    t0 = time.perf_counter()
    _check(models, batches[:2])  # also the warm-up (and the compile) of every contender
    setup_s = time.perf_counter() - t0

    def step(name: str, batch: dict, seed: int) -> tuple[float, float]:
        m, opt = models[name], opts[name]
        torch.manual_seed(seed)
        t, c = time.perf_counter(), time.thread_time()
        opt.zero_grad(set_to_none=True)
        loss, _ = m.training_loss(batch)
        loss.backward()
        opt.step()
        return time.perf_counter() - t, time.thread_time() - c

    wall: dict[str, list[float]] = {n: [] for n in chains}
    cpu: dict[str, list[float]] = {n: [] for n in chains}
    for r in range(a.repeats):
        for i, b in enumerate(batches):
            order = chains if (r * len(batches) + i) % 2 == 0 else chains[::-1]
            for name in order:
                w, c = step(name, b, 1000 * r + i)
                wall[name].append(w)
                cpu[name].append(c)
    load_after = os.getloadavg()
    edges = [int(((b["lengths"] - 2).clamp_min(0) ** 2).sum()) for b in batches]  # (n − 2) children × (n − 2) parents
    print(f"ListOps `ours`, paper profile model ({', '.join(f'{k}={v}' for k, v in _paper_model_args().items())}), "
          f"batch 100, {a.batches} batches x {a.repeats} passes, 1 thread; about {statistics.median(edges):,.0f} "
          f"candidate edges per batch (median); equality with the reference checked on 2 batches "
          f"({setup_s:.1f} s, compile included)")
    out = {"load_before": load_before, "load_after": load_after}
    for clock, times in (("wall", wall), ("cpu", cpu)):
        # on a shared machine the wall clock also counts the other processes; the thread's CPU time is what the
        # step costs on a core of its own (the steadier of the two; ranking_bench reports both the same way)
        print(f" {clock} clock ({'time.perf_counter' if clock == 'wall' else 'time.thread_time'}):")
        ref = times["reference"]
        for name in chains:
            t = times[name]
            q = statistics.quantiles(t, n=4)
            rq = statistics.quantiles([r_ / c for r_, c in zip(ref, t)], n=4)
            med = statistics.median(t)
            out[f"{name}_{clock}"] = {"ms_per_step": 1e3 * med, "ms_q1": 1e3 * q[0], "ms_q3": 1e3 * q[2],
                                      "speed_vs_reference": rq[1], "speed_q1": rq[0], "speed_q3": rq[2],
                                      "paper_training_h": PAPER_STEPS * med / 3600}
            print(f"  {name:10s} {1e3 * med:7.1f} ms/step (q1 {1e3 * q[0]:.1f}, q3 {1e3 * q[2]:.1f}); speed vs "
                  f"reference {rq[1]:.2f}x (per-batch q1 {rq[0]:.2f}, q3 {rq[2]:.2f}); paper profile "
                  f"({PAPER_STEPS:,} steps): {PAPER_STEPS * med / 3600:.1f} h of training steps")
    print(f"  load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}; after "
          f"{', '.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} cores")
    return out


if __name__ == "__main__":
    main()
