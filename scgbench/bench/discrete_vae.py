"""Timing of the discrete-VAE training step against bare PyTorch loops, and of its evaluation, on this machine.

    python -m scgbench.bench.discrete_vae                         # fmnist profile, 20x10, gumbel, 2,000 steps
    python -m scgbench.bench.discrete_vae --profile disarm-1e5 --variant 200b-linear --estimator reinforce

One process, the same pre-drawn batches for everyone, **interleaved in chunks** (a shared machine's speed drifts
by ±15 % over seconds; timing loops one after the other moves ratios by more than the 3 % asked for). After a
warm-up, every ``chunk`` training steps of the suite, a callback pauses the fit and times ``chunk`` steps of each
baseline on the next batches, alternating which baseline goes first:

* **suite** — ``Trainer.fit`` with the Trainer ``scgbench run`` builds from the profile: its tricks (τ annealing),
  checkpoint callbacks, logger, progress output and logging cadence (:func:`scgbench.profiling` builds the same);
* **module** — a bare PyTorch loop (``zero_grad``, ``training_loss``, ``backward``, ``step``) over a twin of the
  suite's module, synced to the suite's weights before every chunk: the same model code without Lightning;
* **handwritten** (gumbel, categorical variants only) — the same network written in plain PyTorch, independent of
  the suite's code: ``torch.bernoulli`` binarisation, ``nn.Linear``/``ReLU`` layers with the suite's weights,
  ``F.gumbel_softmax``, BCE likelihood and the analytic KL to the uniform prior, ``torch.optim.Adam``.

Every chunk is timed twice: by wall clock and by this thread's CPU time (``time.thread_time``; torch runs its one
intra-op thread in the calling thread). On a machine shared with other jobs the CPU time is the fair measure: a
chunk during which the scheduler runs someone else is slower by wall clock only. Ratios are Σ baseline time /
Σ suite time (≥ 0.97: within 3 %) and the median of the per-chunk ratios; quartiles show the spread. With
``--eval`` it also times one test batch of the k-sample bound and one validation batch and estimates a full run's
wall time from the measured per-step time: steps × suite step + validations + test. The load average is printed
before and after: on a machine shared by other jobs the absolute times are only what they were then.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from ..benchmarks import get_benchmark
from ..callbacks import RunCheckpoint, SelectionCheckpoint
from ..config import BenchmarkCLI, benchmark_args, check_families
from ..estimators import score_tape
from ..profiling import _first_optimizer, _replay, _ReplayData
from ..runner import NullProfiler, choose_threads, progress_callbacks, quiet_lightning


class Handwritten(torch.nn.Module):
    """The categorical VAE of the suite's module in plain PyTorch (module docstring), sharing nothing but weights."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder, self.decoder = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
        self.n, self.k, self.model = model.num_nodes, model.num_categories, model

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.bernoulli(x)
        logits = self.encoder(x).view(len(x), self.n, self.k)
        z = F.gumbel_softmax(logits, tau=float(self.model.estimator.tau))
        recon = F.binary_cross_entropy_with_logits(self.decoder(z.flatten(1)), x, reduction="none").sum(-1)
        logq = torch.log_softmax(logits, -1)
        kl = (logq.exp() * (logq + math.log(self.k))).sum((-1, -2))
        return (recon + kl).mean()

    def sync(self) -> None:
        self.encoder.load_state_dict(self.model.encoder.state_dict())
        self.decoder.load_state_dict(self.model.decoder.state_dict())


class Interleaved(pl.Callback):
    """Every ``chunk`` suite steps (after ``warmup``), time ``chunk`` steps of each baseline on the next batches."""

    def __init__(self, batches: list, warmup: int, chunk: int, handwritten: bool) -> None:
        self.batches, self.warmup, self.chunk, self.handwritten = batches, warmup, chunk, handwritten
        self.times: dict[str, list[tuple[float, float]]] = {"suite": [], "module": [], "handwritten": []}
        self._resumed_at: tuple[float, float] | None = None
        self._flip = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.twin = copy.deepcopy(pl_module, memo={id(trainer): None})
        self.twin_opt = _first_optimizer(self.twin.configure_optimizers())
        if self.handwritten:
            self.hand = Handwritten(pl_module)
            self.hand_opt = torch.optim.Adam(self.hand.parameters(), lr=pl_module.lr)

    def _module_steps(self, batches) -> tuple[float, float]:
        self.twin.train()
        t0 = _now()
        for b in _replay(batches):
            self.twin_opt.zero_grad(set_to_none=True)
            with score_tape():  # as SCGModule.training_step
                loss = self.twin.training_loss(b)[0]
            loss.backward()
            self.twin_opt.step()
        return _since(t0)

    def _hand_steps(self, batches) -> tuple[float, float]:
        t0 = _now()
        for b in _replay(batches):
            self.hand_opt.zero_grad(set_to_none=True)
            self.hand.loss(b["x"]).backward()
            self.hand_opt.step()
        return _since(t0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        done = trainer.global_step
        if done < self.warmup or (done - self.warmup) % self.chunk:
            return
        if self._resumed_at is not None:
            self.times["suite"].append(_since(self._resumed_at))
        if done + self.chunk <= len(self.batches):
            nxt = self.batches[done:done + self.chunk]
            self.twin.load_state_dict(pl_module.state_dict())  # same weights and tau as the suite has now
            runs = [("module", self._module_steps)]
            if self.handwritten:
                self.hand.sync()
                runs.append(("handwritten", self._hand_steps))
            self._flip = not self._flip
            for name, fn in (runs if self._flip else runs[::-1]):
                self.times[name].append(fn(nxt))
        self._resumed_at = _now()

    def summary(self) -> dict:
        n = len(self.times["suite"])
        out = {"chunks": n, "steps_timed": n * self.chunk}
        for clock, i in (("cpu", 1), ("wall", 0)):
            suite = [t[i] for t in self.times["suite"]]
            out[f"suite_ms_per_step_{clock}"] = 1e3 * sum(suite) / (n * self.chunk)
            for name in ("module", "handwritten"):
                t = [x[i] for x in self.times[name][:n]]
                if len(t) < n or not n:
                    continue
                per = sorted(b / s for b, s in zip(t, suite))
                q = statistics.quantiles(per, n=4) if n > 1 else per * 3
                out[f"{name}_ms_per_step_{clock}"] = 1e3 * sum(t) / (n * self.chunk)
                out[f"{name}_vs_suite_{clock}"] = sum(t) / sum(suite)
                out[f"{name}_vs_suite_{clock}_chunk_quartiles"] = [round(v, 4) for v in q]
        return out


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _now()
    return wall - t0[0], cpu - t0[1]


def build(profile: str, variant: str | None, estimator: str | None, overrides: list[str]):
    bm = get_benchmark("discrete-vae")
    cli = BenchmarkCLI(bm, benchmark_args(bm, profile, variant, 0, estimator) + list(overrides))
    check_families(cli)
    cli.instantiate()
    return bm, cli


def time_steps(profile: str, variant: str | None, estimator: str | None, steps: int, chunk: int, warmup: int,
               overrides: list[str]) -> dict:
    bm, cli = build(profile, variant, estimator, overrides)
    dm, model = cli.datamodule, cli.model
    steps = chunk * max(1, math.ceil(steps / chunk))
    total = warmup + steps + chunk
    dm.prepare_data()
    dm.setup("fit")
    batches = []
    while len(batches) < total:
        for b in dm.train_dataloader():
            batches.append(b)
            if len(batches) == total:
                break
    handwritten = (model.estimator.name == "gumbel" and not model.binary_logit and model.prior_logits is None
                   and model.likelihood == "bernoulli" and model.binarization in ("dynamic", "redraw"))
    timer = Interleaved(batches, warmup, chunk, handwritten)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = cli.make_trainer(
            [timer, SelectionCheckpoint(Path(tmp) / "checkpoints", bm.selection_metric, bm.selection_mode),
             RunCheckpoint(Path(tmp) / "checkpoints"), *progress_callbacks(cli)],
            default_root_dir=tmp, logger=TensorBoardLogger(tmp, name="tb", version=""), profiler=NullProfiler(),
            max_steps=warmup + steps + 1, max_epochs=None, limit_val_batches=0, num_sanity_val_steps=0,
            accelerator="cpu", devices=1)
        trainer.fit(model, datamodule=_ReplayData(dm, batches))
        # the per-epoch cost the timed steps do not see: RunCheckpoint writes last.ckpt (weights, optimizer state)
        # at every epoch's end, so that an interrupted run resumes exactly
        saves = []
        for i in range(3):
            t0 = time.perf_counter()
            trainer.save_checkpoint(Path(tmp) / f"probe{i}.ckpt", weights_only=False)
            saves.append(time.perf_counter() - t0)
    out = timer.summary()
    out["checkpoint_save_s"] = min(saves)
    out.update(steps_per_epoch=len(dm.train_dataloader()), n_val=len(dm.val_set), n_test=len(dm.test_set),
               eval_batch_size=dm.eval_batch_size)
    return out, cli


@torch.no_grad()
def time_eval(cli, repeats: int = 1) -> dict:
    """CPU seconds of one test batch (k = iw_samples) and one validation batch (k = val_samples)."""
    from ..estimators import eval_noise_key
    from ..models.evaluation import TEST, VAL

    model, dm = cli.model.eval(), cli.datamodule
    batch = next(iter(dm.test_dataloader()))
    out = {}
    for name, k, stage in (("test", model.iw_samples, TEST), ("val", model.val_samples, VAL)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.thread_time()
            model.bounds(model.binarize_eval(batch["x"], batch["index"], stage), batch["index"], k,
                         eval_noise_key(stage))
            best = min(best, time.thread_time() - t0)
        out[f"{name}_batch_s"], out[f"{name}_k"] = best, k
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="fmnist")
    p.add_argument("--variant", default="20x10")
    p.add_argument("--estimator", default="gumbel")
    p.add_argument("--steps", type=int, default=2000, help="timed suite steps (each baseline times as many)")
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--eval", action="store_true", help="also time evaluation and estimate a full run's wall time")
    p.add_argument("--output", help="also write the numbers as JSON here")
    args, overrides = p.parse_known_args(argv)
    threads = choose_threads()
    quiet_lightning()
    load0 = os.getloadavg()
    result, cli = time_steps(args.profile, args.variant, args.estimator, args.steps, args.chunk, args.warmup, overrides)
    result.update(profile=args.profile, variant=args.variant, estimator=args.estimator,
                  torch_threads=threads["torch_threads"], cpus=len(os.sched_getaffinity(0)), load_start=load0)
    if args.eval:
        ev = time_eval(cli)
        result.update(ev)
        trainer_cfg = cli.config_init.get("trainer", {})
        max_steps = trainer_cfg.get("max_steps") or -1
        epochs = trainer_cfg.get("max_epochs") or 0
        steps = max_steps if max_steps > 0 else epochs * result["steps_per_epoch"]
        every = trainer_cfg.get("val_check_interval")
        if trainer_cfg.get("check_val_every_n_epoch"):
            validations = epochs // trainer_cfg["check_val_every_n_epoch"]
        elif isinstance(every, int) and every > 0:
            validations = steps // every
        else:
            validations = epochs
        batches = lambda n: math.ceil(n / result["eval_batch_size"])  # noqa: E731
        train_s = steps * result["suite_ms_per_step_cpu"] / 1e3  # one core to itself
        val_s = validations * batches(result["n_val"]) * ev["val_batch_s"]
        test_s = batches(result["n_test"]) * ev["test_batch_s"]
        ckpt_s = math.ceil(steps / result["steps_per_epoch"]) * result["checkpoint_save_s"]
        result.update(planned_steps=steps, planned_validations=validations, estimated_train_min=train_s / 60,
                      estimated_validation_min=val_s / 60, estimated_test_min=test_s / 60,
                      estimated_checkpoint_min=ckpt_s / 60,
                      estimated_total_min=(train_s + val_s + test_s + ckpt_s) / 60)
    result["load_end"] = os.getloadavg()
    for k, v in result.items():
        print(f"{k:36s} {v:.4g}" if isinstance(v, float) else f"{k:36s} {v}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
