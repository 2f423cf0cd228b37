"""``scgbench profile <benchmark>``: where the time of a training step goes, measured in one process.

1. training steps/s of the LightningModule under ``Trainer.fit`` — with the Trainer of ``scgbench run``:
   its logger, checkpoint and progress-bar callbacks, logging cadence and training tricks — vs a bare
   PyTorch loop (``zero_grad``, ``training_loss``, ``backward``, ``Adam.step``) over the same model and the
   same pre-drawn batches, read through the same kind of DataLoader. The two are
   **paired and interleaved**: every ``chunk`` Lightning steps, a callback pauses the fit and runs the next
   ``chunk`` batches through the bare loop on a twin of the module, synced to the module's current weights
   and schedule state. On a shared machine whose speed drifts by ±15 % over seconds, timing the two loops
   one after the other moved the ratio by ±0.05 between runs and favoured whichever loop ran while the
   process was cold; alternating 50-step chunks (~0.3 s each here) exposes both to the same drift.
   The ratio is Σ bare time / Σ Lightning time; the quartiles of the per-chunk ratios show the spread;
2. the same pairing for Lightning's loop alone (no logger, checkpointing, progress bar or training tricks;
   the same module), which separates the cost of Lightning's loop from what the run's Trainer adds;
3. Lightning's floor: the same pairing for the suite's base module with one parameter and no model (its
   loss ignores the batch), over the same batches. Its overhead is the fixed per-step cost of any module
   under Lightning's automatic-optimization loop (fetch, batch transfer, ~12 module and 6 callback hook calls,
   the closure).
   ``lightning_vs_bare_ceiling`` = bare step / (bare step + that cost) is the best ratio any LightningModule
   can reach at this model's step time; ``module_overhead_ms_per_step`` (core − floor) is what the task's
   module adds to it;
3b. the same pairing for the task's network and loss in a bare LightningModule (no suite hooks, no callbacks):
   Lightning's own per-step cost for this model (``lightning_plain_overhead_ms_per_step``; a real network costs
   Lightning more per step than the one-parameter floor). ``suite_overhead_share`` = (run − plain) overhead / the
   run's step is the suite's own per-step work: module hooks, tricks, checkpoints, logging, progress (target ≤ 5 %);
4. the data loader alone (batches/s) vs training steps/s (target ≥ 10×);
5. each estimator's forward+backward vs a plain softmax and vs ``torch.nn.functional.gumbel_softmax`` (soft and
   hard), interleaved in rounds, at the benchmark's node shape and at :data:`REFERENCE_SHAPES` ([64, 10, 64],
   [100, 20, 10], [512, 14541]); ``scgbench profile B --estimators-only`` runs this part alone.

All timings skip warm-up steps and use ``time.perf_counter``; they are ratios within one process, so they
are comparable across machines even where the absolute numbers are not.

Every timed figure (ratios and per-step overheads of (1)–(3b), each estimator's speed against its peer in (5))
is reported with the interquartile range of its per-chunk (per-round) values and a status
(:func:`figure_status`): **unresolved** when that spread is larger than the effect (the distance from no
effect: a ratio of 1, an overhead of 0) — a difference of two pairings adds their spreads — and always when a
ratio exceeds its own ceiling (it then measures the noise); such figures are named at the end as no findings.
The load averages before and after and the core count are recorded with the numbers.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from .benchmarks import get_benchmark
from .callbacks import CALLBACKS, TRICKS, RunCheckpoint, SelectionCheckpoint
from .estimators import (SCORE_FUNCTION, estimators_of as _estimators, get_estimator, list_estimators, registry,
                         score_tape)
from .models.base import SCGModule
from .runner import NullProfiler, Run, choose_threads, progress_callbacks, quiet_lightning


class _PairedTimer(pl.Callback):
    """Alternates ``chunk`` timed Lightning steps with ``chunk`` bare steps on ``twin`` over the next batches.

    It fires at each ``on_train_batch_end``, so the time between two of its calls is exactly one full
    Lightning step cycle (fetch, hooks, step, the other callbacks, logging) times the number of steps.
    """

    def __init__(self, warmup: int, chunk: int) -> None:
        self.warmup, self.chunk = warmup, chunk

    def bind(self, batches: list) -> "_PairedTimer":
        """Time against a twin of the module on ``batches``; the twin is made at ``on_train_start``, after the
        module's ``setup`` has built everything it builds from the data (e.g. the KG embeddings)."""
        self.batches = batches
        self.lightning: list[float] = []
        self.bare: list[float] = []
        self._resumed_at: float | None = None
        return self

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial_state = copy.deepcopy(pl_module.state_dict())  # after setup: complete
        self.twin = copy.deepcopy(pl_module, memo={id(trainer): None})  # the module, not its trainer
        self.opt = _first_optimizer(self.twin.configure_optimizers())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        done = batch_idx + 1
        if done < self.warmup or (done - self.warmup) % self.chunk:
            return
        if self._resumed_at is not None:
            self.lightning.append(time.perf_counter() - self._resumed_at)
        if done + self.chunk <= len(self.batches):
            self.twin.load_state_dict(pl_module.state_dict())  # same weights and τ/β/α as Lightning has now
            self.bare.append(_bare_steps(self.twin, self.opt, self.batches[done:done + self.chunk]))
        self._resumed_at = time.perf_counter()

    def summary(self) -> dict[str, float]:
        n = min(len(self.lightning), len(self.bare))
        light, bare = sum(self.lightning[:n]), sum(self.bare[:n])
        quartiles = _quartiles([b / l for b, l in zip(self.bare[:n], self.lightning[:n])])
        overheads = _quartiles([1e3 * (l - b) / self.chunk for b, l in zip(self.bare[:n], self.lightning[:n])])
        steps = n * self.chunk
        return {"steps": steps, "lightning_steps_per_s": steps / light, "bare_steps_per_s": steps / bare,
                "ratio": bare / light, "chunk_ratio_q1": quartiles[0], "chunk_ratio_median": quartiles[1],
                "chunk_ratio_q3": quartiles[2], "overhead_ms_per_step": 1e3 * (light - bare) / steps,
                "overhead_q1": overheads[0], "overhead_q3": overheads[2], "chunks": n}


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of ``values``; a single value is its own quartiles."""
    v = sorted(values)
    if len(v) < 2:
        return (v[0],) * 3 if v else (math.nan,) * 3
    q = statistics.quantiles(v, n=4)
    return q[0], q[1], q[2]


#: the status of a figure whose chunk-to-chunk spread is no larger than its effect
RESOLVED = "resolved"


def figure_status(value: float, q1: float, q3: float, null: float, ceiling: float | None = None,
                  count: int = 2) -> str:
    """Whether a timed figure is a finding: :data:`RESOLVED`, or why not.

    ``value`` is the figure over all chunks, ``[q1, q3]`` the interquartile range of its per-chunk values (the
    spread), ``null`` its value if there were no effect (1 for a ratio of two loops, 0 for an overhead), and
    ``ceiling`` the most it can physically be (a ratio to a loop that does more work cannot exceed the ratio
    to Lightning's one-parameter floor). A figure beyond its ceiling is noise whatever its spread; a figure
    whose spread is larger than its distance from ``null`` cannot be told from no effect, and one of ``count`` < 2
    chunks has no spread to tell."""
    if count < 2 or any(math.isnan(x) for x in (value, q1, q3)):
        return "unresolved (one chunk: no spread)"
    if ceiling is not None and value > ceiling:
        return f"unresolved (above its ceiling {ceiling:.4g}: noise)"
    spread, effect = q3 - q1, abs(value - null)
    if spread > effect:
        return f"unresolved (spread {spread:.3g} > effect {effect:.3g})"
    return RESOLVED


def _figure(key: str, value: float, q1: float, q3: float, null: float, ceiling: float | None = None,
            count: int = 2) -> dict:
    """``{key, key_q1, key_q3, key_status}`` (see :func:`figure_status`)."""
    return {key: value, f"{key}_q1": q1, f"{key}_q3": q3,
            f"{key}_status": figure_status(value, q1, q3, null, ceiling, count)}


def _difference(key: str, a: dict, b: dict, scale: float = 1.0) -> dict:
    """The figure ``scale·(a − b)`` of two overheads timed in separate pairings: its spread is the sum of theirs
    (they share no chunks, so nothing cancels)."""
    value = scale * (a["overhead_ms_per_step"] - b["overhead_ms_per_step"])
    half = 0.5 * scale * ((a["overhead_q3"] - a["overhead_q1"]) + (b["overhead_q3"] - b["overhead_q1"]))
    return _figure(key, value, value - half, value + half, 0.0, count=min(a.get("chunks", 2), b.get("chunks", 2)))


class _PlainModule(pl.LightningModule):
    """The task module's network and loss under a bare LightningModule (none of the suite's module hooks, no
    callbacks): what Lightning itself costs per step for this model, above its one-parameter floor."""

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.inner = module

    def training_step(self, batch, batch_idx):
        return _training_loss(self.inner, batch, batch_idx)

    def configure_optimizers(self):
        return _first_optimizer(self.inner.configure_optimizers())


class _FloorModule(SCGModule):
    """One parameter and no model: under Lightning, its step is Lightning's fixed per-step cost."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_loss(self, batch):
        return self.w.square(), {}


def _first_optimizer(configured):
    """The (first) optimizer of any ``configure_optimizers`` return form: an optimizer, a list or tuple of them,
    ``(optimizers, schedulers)``, or a dict / list of dicts with an ``"optimizer"`` key."""
    x = configured
    while not isinstance(x, torch.optim.Optimizer):
        if isinstance(x, dict):
            x = x["optimizer"]
        elif isinstance(x, (list, tuple)) and x:
            x = x[0]
        else:
            raise TypeError(f"cannot find an optimizer in configure_optimizers() = {configured!r}")
    return x


def _training_loss(model, batch, i: int) -> torch.Tensor:
    """The module's training loss: ``training_loss`` of an SCGModule, else its ``training_step`` (whose
    ``self.log`` calls are no-ops without a trainer)."""
    if hasattr(model, "training_loss"):
        return model.training_loss(batch)[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer: its logging is a no-op
        out = model.training_step(batch, i)
    return out["loss"] if isinstance(out, dict) else out


class _ReplayData(pl.LightningDataModule):
    """The pre-drawn batches as the training data, and every other attribute from the benchmark's datamodule
    (modules that build themselves from it in ``setup`` find what they need)."""

    def __init__(self, dm: pl.LightningDataModule, batches: list) -> None:
        super().__init__()
        self.dm, self.batches = dm, batches

    def __getattr__(self, name):
        if name in ("dm", "batches") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dm, name)

    def train_dataloader(self) -> DataLoader:
        return _replay(self.batches)


def _replay(batches: list) -> DataLoader:
    """The pre-drawn batches as a pass-through DataLoader: what both the bare loop and Lightning iterate."""
    return DataLoader(batches, batch_size=None, shuffle=False)


def _bare_steps(model, opt, batches: list) -> float:
    """Seconds for one bare training step on each of ``batches``, read through a DataLoader as under Lightning."""
    model.train()
    it = iter(_replay(batches))
    t0 = time.perf_counter()
    for i, b in enumerate(it):
        opt.zero_grad(set_to_none=True)
        with score_tape():  # as SCGModule.training_step
            loss = _training_loss(model, b, i)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


#: node shapes every profile times the estimators at: a 64 × 10 × 64 batch of 64-way nodes, a VAE-sized
#: 100 × 20 × 10 and KG's 512 × 14,541 (one hop over FB15k-237's entities)
REFERENCE_SHAPES: tuple[tuple[int, ...], ...] = ((64, 10, 64), (100, 20, 10), (512, 14541))
#: the baselines every estimator is timed against: a plain softmax and torch's Gumbel-softmax (soft and hard)
_BASELINES = ("softmax", "gumbel_softmax", "gumbel_softmax_hard")
#: each estimator's own peer (what it replaces): torch's Gumbel-softmax, soft and hard, and the authors' ``reinmax``
#: package (PyPI; timed when installed)
PEERS = {"gumbel": "gumbel_softmax", "st-gumbel": "gumbel_softmax_hard", "reinmax": "reinmax_package"}


def shape_key(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _estimator_timing(shape: Sequence[int], iters: int | None = None, rounds: int = 5) -> dict[str, float]:
    """Forward+backward µs on one node of ``shape`` of each registered estimator and of the three baselines (a plain
    softmax, ``torch.nn.functional.gumbel_softmax`` with ``hard`` False and True, all at τ = 1), **interleaved**:
    ``rounds`` rounds, each timing ``iters`` repetitions of every candidate in turn, so that a machine whose
    speed drifts over seconds slows all of them alike (timing one after the other favours whichever ran while the
    machine was fast). ``iters`` defaults to about 2·10⁶ elements' worth per round (1 at KG's 512 × 14,541), at
    most 500.

    ``{name}_vs_softmax`` is the cost ratio (estimator µs / softmax µs, > 1: slower); ``{name}_speed_vs_gumbel_softmax``
    and ``{name}_speed_vs_gumbel_softmax_hard`` are speed ratios (F.gumbel_softmax µs / estimator µs, ≥ 1: at least
    as fast). ``{name}_speed_vs_peer`` is the speed against the estimator's own peer (:data:`PEERS`) in thread CPU
    time, with the quartiles of its per-round values and a status (:func:`figure_status`). An estimator with its
    own parameterisation (IGR: 2(K−1) numbers) gets parameters of that size."""
    import torch.nn.functional as F

    k = int(shape[-1])
    if iters is None:  # a round of a small node lasts tens of ms: the machine's jitter averages out within it
        iters = max(1, min(500, int(2e6 // math.prod(shape))))
    torch.manual_seed(0)
    theta = torch.randn(*shape, requires_grad=True)
    w = torch.randn(k)

    def softmax_step():
        (torch.softmax(theta, -1) * w).sum().backward()

    def gumbel_softmax_step(hard: bool):
        return lambda: (F.gumbel_softmax(theta, tau=1.0, hard=hard) * w).sum().backward()

    steps = {"softmax": softmax_step, "gumbel_softmax": gumbel_softmax_step(False),
             "gumbel_softmax_hard": gumbel_softmax_step(True)}
    try:
        from reinmax import reinmax as reinmax_package
    except ImportError:
        pass
    else:
        steps["reinmax_package"] = lambda: (reinmax_package(theta, 1.0)[0] * w).sum().backward()
    # the estimators that sample nodes of k categories through forward (Direct and exact need a task's cost oracle,
    # spike-exp binary nodes): the others are not timed at this shape
    timed = list_estimators(num_categories=k, provides=frozenset())  # those a node inside a forward pass can call
    for name in timed:
        # REINFORCE with the EMA baseline: the same shape as the pathwise ones (LOO only changes the baseline)
        est = get_estimator(name, **({"baseline": "ema", "num_samples": 1} if name == "reinforce" else {})).train()
        size = est.param_size(k)
        params = theta if size == k else torch.randn(*shape[:-1], size, requires_grad=True)

        def step(est=est, params=params):
            if est.family != SCORE_FUNCTION:  # the same loss as the baselines'; a pathwise estimator records nothing
                (est(params) * w).sum().backward()  # on a tape (a model opens one per training step, not per node)
                return
            with score_tape() as tape:
                z = est(params)
                cost = (z * w).sum(-1).reshape(shape[0], -1).sum(1)  # the surrogate needs one cost per example
                (cost.sum() + tape.surrogate(cost)).backward()

        steps[name] = step
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    cpu_round: dict[str, list[float]] = {name: [] for name in steps}
    for fn in steps.values():  # warm-up: allocator, lazy inits
        for _ in range(2):
            fn()
    names = list(steps)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):  # alternate the order: no one always runs first
            fn = steps[name]
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(iters):
                fn()
            per_round[name].append(time.perf_counter() - t0)
            cpu_round[name].append(time.thread_time() - c0)
    us = {name: 1e6 * sum(t) / (rounds * iters) for name, t in per_round.items()}
    out = {f"{b}_us": us[b] for b in _BASELINES if b in us}
    if "reinmax_package" in us:
        out["reinmax_package_us"] = us["reinmax_package"]
    out.update(iters=iters, rounds=rounds)
    for name in timed:
        out[f"{name}_us"] = us[name]
        out[f"{name}_vs_softmax"] = us[name] / us["softmax"]
        out[f"{name}_speed_vs_gumbel_softmax"] = us["gumbel_softmax"] / us[name]
        out[f"{name}_speed_vs_gumbel_softmax_hard"] = us["gumbel_softmax_hard"] / us[name]
        peer = PEERS.get(name)
        if peer in us:  # the speed against its own peer in thread CPU time (on a shared machine the steadier
            # clock: it leaves out the time other processes hold the core), with its spread over the rounds
            q1, _, q3 = _quartiles([p / e for p, e in zip(cpu_round[peer], cpu_round[name])])
            out.update(_figure(f"{name}_speed_vs_peer", sum(cpu_round[peer]) / sum(cpu_round[name]), q1, q3, 1.0,
                               count=rounds))
            out[f"{name}_peer"] = peer
    return out


def estimator_table(timing: dict[str, dict[str, float]]) -> str:
    """The per-shape estimator timings as a text table: µs, cost vs softmax, speed vs F.gumbel_softmax (soft, hard),
    and speed vs the estimator's own peer (:data:`PEERS`) with its spread over the rounds and its status."""
    lines = [f"{'shape':>12s}  {'estimator':12s} {'µs':>11s} {'vs softmax':>10s} {'speed vs F.gs':>13s} "
             f"{'vs F.gs hard':>12s}  speed vs peer, CPU time [q1, q3 over rounds]"]
    for key, t in timing.items():
        lines.append(f"{key:>12s}  {'softmax':12s} {t['softmax_us']:11.1f}")
        lines.append(f"{key:>12s}  {'F.gs soft':12s} {t['gumbel_softmax_us']:11.1f}")
        lines.append(f"{key:>12s}  {'F.gs hard':12s} {t['gumbel_softmax_hard_us']:11.1f}")
        if "reinmax_package_us" in t:
            lines.append(f"{key:>12s}  {'reinmax pkg':12s} {t['reinmax_package_us']:11.1f}")
        for name in sorted(registry()):
            if f"{name}_us" in t:
                peer = ""
                if f"{name}_speed_vs_peer" in t:
                    f = f"{name}_speed_vs_peer"
                    peer = (f"  {t[f]:.2f} [{t[f + '_q1']:.2f}, {t[f + '_q3']:.2f}] vs {t[name + '_peer']}"
                            f"{'' if t[f + '_status'] == RESOLVED else ' ' + t[f + '_status']}")
                lines.append(f"{key:>12s}  {name:12s} {t[name + '_us']:11.1f} {t[name + '_vs_softmax']:10.2f} "
                             f"{t[name + '_speed_vs_gumbel_softmax']:13.2f} "
                             f"{t[name + '_speed_vs_gumbel_softmax_hard']:12.2f}{peer}")
    return "\n".join(lines)


def estimator_timings(shapes: Sequence[Sequence[int]], iters: int | None = None,
                      rounds: int = 5) -> dict[str, dict[str, float]]:
    """:func:`_estimator_timing` at each of ``shapes`` (duplicates once), keyed ``"64x10x64"``."""
    out: dict[str, dict[str, float]] = {}
    for shape in shapes:
        key = shape_key(shape)
        if key not in out:
            out[key] = _estimator_timing(tuple(int(d) for d in shape), iters, rounds)
    return out


def _paired_core(module: pl.LightningModule, data: pl.LightningDataModule | None, batches: list, warmup: int,
                 chunk: int, tmp: str) -> dict[str, float]:
    """Lightning's loop alone (no logger, checkpointing, progress bar or other callbacks) paired with the bare loop."""
    timer = _PairedTimer(warmup, chunk).bind(batches)
    trainer = pl.Trainer(max_steps=len(batches), limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, profiler=NullProfiler(), callbacks=[timer], default_root_dir=tmp)
    if data is None:
        trainer.fit(module, train_dataloaders=_replay(batches))
    else:
        trainer.fit(module, datamodule=data)
    return timer.summary()


def profile(benchmark: str, profile_name: str = "quick", variant: str | None = None, estimator: str | None = None,
            steps: int = 1000, overrides: Sequence[str] = (), output: str | None = None, warmup: int = 20,
            chunk: int = 50, estimator_iters: int | None = None,
            estimator_shapes: Sequence[Sequence[int]] | None = None, estimator_rounds: int = 5,
            estimators_only: bool = False) -> dict:
    """Everything in the module docstring; ``estimator_shapes`` (default: the benchmark's node shape and
    :data:`REFERENCE_SHAPES`) are where (5) times the estimators; ``estimators_only`` skips (1)–(4)."""
    bm = get_benchmark(benchmark)
    threads = choose_threads()
    quiet_lightning()
    load_before = os.getloadavg()
    shapes = [tuple(bm.node_shape), *REFERENCE_SHAPES] if estimator_shapes is None else list(estimator_shapes)
    if estimators_only:
        timing = estimator_timings(shapes, estimator_iters, estimator_rounds)
        result = {"benchmark": bm.name, "torch_threads": threads["torch_threads"], "node_shape": list(bm.node_shape),
                  **_load(load_before), "estimator_timing": timing}
        return _report(result, output)
    # The builder and every check of `scgbench run` (Run.prepare: the config, the estimator's family, Lightning's
    # trainer checks, the model's demands on the data); diagnostics off (they write figures and are no part of a
    # step's cost); no record is written.
    built = Run(bm.name, estimator=estimator, profile=profile_name, variant=variant, overrides=overrides,
                disable_tricks=[k for k in CALLBACKS if k not in TRICKS], write=False).prepare()
    cli, dm, model = built.cli, built.datamodule, built.model
    steps = chunk * max(1, math.ceil(steps / chunk))
    total = warmup + steps
    with tempfile.TemporaryDirectory() as tmp:
        dm.prepare_data()
        dm.setup("fit")
        # (4) the data loader alone
        loader = dm.train_dataloader()
        batches, t0 = [], time.perf_counter()
        while len(batches) < total:
            for b in loader:
                batches.append(b)
                if len(batches) == total:
                    break
        loader_rate = total / (time.perf_counter() - t0)
        data = _ReplayData(dm, batches)

        # (1) the Trainer of `scgbench run` (tricks, checkpoints, logger, progress bar, logging cadence), stopped
        # after `total` steps without validation, on the CPU where the bare loop runs too, paired with the bare loop
        paired = _PairedTimer(warmup, chunk).bind(batches)
        trainer = cli.make_trainer(
            [paired, SelectionCheckpoint(Path(tmp) / "checkpoints", bm.selection_metric, bm.selection_mode),
             RunCheckpoint(Path(tmp) / "checkpoints"), *progress_callbacks(cli)],
            default_root_dir=tmp, logger=TensorBoardLogger(tmp, name="tb", version=""), profiler=NullProfiler(),
            max_steps=total, max_epochs=None, limit_train_batches=1.0, limit_val_batches=0, num_sanity_val_steps=0,
            accelerator="cpu", devices=1)
        trainer.fit(model, datamodule=data)
        run = paired.summary()
        model.load_state_dict(paired.initial_state)
        # (2) Lightning's loop alone and (3) Lightning's floor, on the same batches
        core_run = _paired_core(model, data, batches, warmup, chunk, tmp)
        floor = _paired_core(_FloorModule(), data, batches, warmup, chunk, tmp)  # the same data hooks as the module pays
        # (2b) Lightning with the same network and loss in a bare LightningModule (from the set-up twin)
        plain_module = copy.deepcopy(paired.twin)
        plain_module.load_state_dict(paired.initial_state)
        plain = _paired_core(_PlainModule(plain_module), data, batches, warmup, chunk, tmp)

    timing = estimator_timings(shapes, estimator_iters, estimator_rounds)
    est = timing.get(shape_key(bm.node_shape)) or _estimator_timing(bm.node_shape, estimator_iters, estimator_rounds)
    batch_size = getattr(dm, "batch_size", None)
    lightning_rate = run["lightning_steps_per_s"]
    bare_ms = 1e3 / run["bare_steps_per_s"]
    ceiling = bare_ms / (bare_ms + floor["overhead_ms_per_step"])
    result = {
        "benchmark": bm.name, "profile": profile_name, "variant": variant or bm.default_variant,
        "estimator": "+".join(sorted({e.name for e in _estimators(model)})) or "none", "steps_timed": run["steps"],
        "chunk": chunk, "batch_size": batch_size, "torch_threads": threads["torch_threads"],
        "lightning_steps_per_s": lightning_rate, "bare_steps_per_s": run["bare_steps_per_s"],
        # every timed figure with the interquartile range of its per-chunk values and whether it is a finding
        # (figure_status: a spread larger than the effect, or a ratio above its ceiling, is unresolved)
        **_figure("lightning_vs_bare", run["ratio"], run["chunk_ratio_q1"], run["chunk_ratio_q3"], 1.0, ceiling,
                  run["chunks"]),
        **_overhead("lightning_overhead_ms_per_step", run),
        **_figure("lightning_core_vs_bare", core_run["ratio"], core_run["chunk_ratio_q1"], core_run["chunk_ratio_q3"],
                  1.0, ceiling, core_run["chunks"]),
        **_overhead("lightning_core_overhead_ms_per_step", core_run),
        **_overhead("lightning_floor_overhead_ms_per_step", floor),
        **_difference("module_overhead_ms_per_step", core_run, floor),
        "lightning_vs_bare_ceiling": ceiling,
        # the suite's own per-step work (module hooks, tricks, checkpoints, logging, progress) above what Lightning
        # costs for this network in a bare LightningModule, as a share of the run's step (target ≤ 5 %)
        **_overhead("lightning_plain_overhead_ms_per_step", plain),
        **_difference("suite_overhead_ms_per_step", run, plain),
        **_difference("suite_overhead_share", run, plain, lightning_rate / 1e3),
        "examples_per_s": lightning_rate * batch_size if batch_size else None,
        **({f"{bm.example_unit}_per_s": lightning_rate * batch_size} if batch_size and bm.example_unit else {}),
        "loader_batches_per_s": loader_rate, "loader_vs_step": loader_rate / lightning_rate,
        "loading_time_share_of_step": lightning_rate / loader_rate,
        "node_shape": list(bm.node_shape), **{f"estimator_{k}": v for k, v in est.items()},
        **_load(load_before), "estimator_timing": timing,
    }
    return _report(result, output)


def _overhead(key: str, summary: dict) -> dict:
    return _figure(key, summary["overhead_ms_per_step"], summary["overhead_q1"], summary["overhead_q3"], 0.0,
                   count=summary["chunks"])


def _load(before: tuple[float, float, float]) -> dict:
    """The load the profile ran under: 1-, 5- and 15-minute load averages before and after, and the cores."""
    return {"load_avg_before": list(before), "load_avg_after": list(os.getloadavg()), "cpu_count": os.cpu_count()}


def _report(result: dict, output: str | None) -> dict:
    """Print the scalars one per line — a timed figure with its spread over chunks and its status — and the
    estimator timings as a table; name the unresolved figures and the load at the end; write the JSON to
    ``output``."""
    scalars = {k: v for k, v in result.items() if k != "estimator_timing"}
    figures = [k for k in scalars if f"{k}_status" in scalars]
    shown = {k for f in figures for k in (f"{f}_q1", f"{f}_q3", f"{f}_status")}
    width = max(map(len, scalars))
    for k, v in scalars.items():
        if k in shown or k.startswith("load_avg") or k == "cpu_count":
            continue
        text = f"{v:.4g}" if isinstance(v, float) else f"{v}"
        if k in figures:
            text += f"  [q1 {scalars[k + '_q1']:.4g}, q3 {scalars[k + '_q3']:.4g}]"
            if scalars[k + "_status"] != RESOLVED:
                text += f"  {scalars[k + '_status']}"
        print(f"{k:{width}s}  {text}")
    unresolved = [k for k in figures if scalars[k + "_status"] != RESOLVED]
    if unresolved:
        print(f"UNRESOLVED (not findings: the chunk-to-chunk spread exceeds the effect, or a ratio exceeds its "
              f"ceiling; rerun with more --steps or on a quieter machine): {', '.join(unresolved)}")
    if "load_avg_before" in scalars:
        fmt = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
        print(f"load average (1/5/15 min): {fmt(scalars['load_avg_before'])} before, "
              f"{fmt(scalars['load_avg_after'])} after, on {scalars['cpu_count']} cores")
    if result.get("estimator_timing"):
        print("estimator forward+backward (interleaved; 'vs softmax': cost ratio, 'speed vs F.gs': "
              "F.gumbel_softmax time / estimator time):")
        print(estimator_table(result["estimator_timing"]))
    if output:
        from .io import atomic_write_json

        atomic_write_json(output, result)
    return result
