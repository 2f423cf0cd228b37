"""``scgbench profile <benchmark>``: where the time of a training step goes, measured in one process.

1. training steps/s of the LightningModule under ``Trainer.fit`` — with the Trainer of ``scgbench run``:
   its logger, checkpoint and progress-bar callbacks, logging cadence and training tricks — vs a bare
   PyTorch loop (``zero_grad``, ``training_loss``, ``backward``, ``Adam.step``) over the *same* model
   initialisation and the *same* pre-drawn batches, read through the same DataLoader (target ratio ≥ 0.9);
2. the data loader alone (batches/s) vs training steps/s (target ≥ 10×);
3. each estimator's forward+backward vs a plain softmax of the benchmark's node shape.

All timings skip warm-up steps and use ``time.perf_counter``; they are ratios within one process, so they
are comparable across machines even where the absolute numbers are not.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader

from .benchmarks import get_benchmark
from .callbacks import TRICKS, build_callbacks
from .estimators import ESTIMATORS, get_estimator, reset_estimators
from .runner import resolve, run_callbacks, split_overrides, to_cli_args, trainer_defaults


class _StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.t0 is not None:
            self.n += 1
            self.t1 = time.perf_counter()


def _bare_loop(model, batches: DataLoader, warmup: int) -> float:
    opt = model.configure_optimizers()
    model.train()
    t0 = None
    score = getattr(model, "score_estimators", None)  # the module's cached list, as its training_step uses
    for i, b in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        reset_estimators(model, score)
        opt.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(b)
        loss.backward()
        opt.step()
    return (len(batches) - warmup) / (time.perf_counter() - t0)  # len(DataLoader) = number of batches


def _estimator_timing(shape: Sequence[int], iters: int = 300) -> dict[str, float]:
    torch.manual_seed(0)
    theta = torch.randn(*shape, requires_grad=True)
    w = torch.randn(shape[-1])

    def timed(fn) -> float:
        for _ in range(20):
            fn()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters

    def softmax_step():
        (torch.softmax(theta, -1) * w).sum().backward()

    out = {"softmax_us": 1e6 * timed(softmax_step)}
    for name in sorted(ESTIMATORS):
        # REINFORCE with the EMA baseline: the same shape as the pathwise ones (LOO only changes the baseline)
        est = get_estimator(name, **({"baseline": "ema", "num_samples": 1} if name == "reinforce" else {})).train()

        def step(est=est):
            z = est(theta)
            cost = (z * w).sum(-1).reshape(shape[0], -1).sum(1)
            (cost.sum() + est.surrogate_loss(cost)).backward()

        out[f"{name}_us"] = 1e6 * timed(step)
        out[f"{name}_vs_softmax"] = out[f"{name}_us"] / out["softmax_us"]
    return out


def profile(benchmark: str, profile_name: str = "quick", variant: str | None = None, estimator: str | None = None,
            steps: int = 1000, overrides: Sequence[str] = (), output: str | None = None, warmup: int = 20) -> dict:
    bm = get_benchmark(benchmark)
    config = resolve(bm, profile_name, variant, estimator)
    # Training tricks only: diagnostics would write figures and are not part of a training step's cost.
    config["tricks"] = {k: v for k, v in config["tricks"].items() if k in TRICKS}
    user_args = split_overrides(overrides)
    args = to_cli_args(config) + user_args
    timer = _StepTimer(warmup)
    total = steps + warmup
    with tempfile.TemporaryDirectory() as tmp:
        # The Trainer of `scgbench run` (callbacks, logger, progress bar, logging cadence), stopped after
        # `total` steps without validation, on the CPU where the bare loop runs too.
        callbacks = [timer, *run_callbacks(bm, Path(tmp), build_callbacks(config["tricks"]))]
        defaults = {**trainer_defaults(Path(tmp), callbacks, user_args), "max_steps": total,
                    "limit_val_batches": 0, "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1}
        cli = LightningCLI(bm.module, bm.datamodule, run=False, args=args, seed_everything_default=0,
                           save_config_callback=None, auto_configure_optimizers=False, trainer_defaults=defaults,
                           parser_kwargs={"exit_on_error": False})
        dm, model = cli.datamodule, cli.model
        dm.prepare_data()
        dm.setup("fit")

        # (2) the data loader alone
        loader = dm.train_dataloader()
        batches, t0 = [], time.perf_counter()
        while len(batches) < total:
            for b in loader:
                batches.append(b)
                if len(batches) == total:
                    break
        loader_rate = total / (time.perf_counter() - t0)

        # (1) bare loop vs Lightning on the same initial weights and batches (one epoch: no epoch-end work)
        # The bare loop runs before and after Lightning (rates averaged) so drifting machine load biases neither.
        # Both iterate the pre-drawn batches through the same pass-through DataLoader.
        init = copy.deepcopy(model.state_dict())
        drawn = DataLoader(batches, batch_size=None, shuffle=False)
        bare_before = _bare_loop(model, drawn, warmup)
        model.load_state_dict(init)
        cli.trainer.fit(model, train_dataloaders=drawn)
        lightning_rate = timer.n / (timer.t1 - timer.t0)
        model.load_state_dict(init)
        bare_rate = (bare_before + _bare_loop(model, drawn, warmup)) / 2

    est = _estimator_timing(bm.node_shape)
    batch_size = getattr(dm, "batch_size", None)
    result = {
        "benchmark": bm.name, "profile": profile_name, "variant": variant or bm.default_variant,
        "estimator": config["model"].get("estimator", "default"), "steps_timed": timer.n, "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "lightning_steps_per_s": lightning_rate, "bare_steps_per_s": bare_rate,
        "lightning_vs_bare": lightning_rate / bare_rate,
        "examples_per_s": lightning_rate * batch_size if batch_size else None,
        "loader_batches_per_s": loader_rate, "loader_vs_step": loader_rate / lightning_rate,
        "loading_time_share_of_step": lightning_rate / loader_rate,
        "node_shape": list(bm.node_shape), **{f"estimator_{k}": v for k, v in est.items()},
    }
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:{width}s}  {v:.4g}" if isinstance(v, float) else f"{k:{width}s}  {v}")
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
    return result
