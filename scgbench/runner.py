"""Run one benchmark: resolve its config (profile ⊕ variant ⊕ overrides), instantiate the datamodule and
module through LightningCLI (so every ``--trainer.*``, ``--model.*``, ``--data.*`` override works and is
type-checked), train, test the selected checkpoint, and write one result record.

Everything a run produces lives in one run directory (``runs/<benchmark>/<run name>`` unless
``--run-dir``/``$SCGBENCH_RUNS_DIR`` say otherwise): TensorBoard logs (``tb/``), checkpoints
(``checkpoints/``, ``last.ckpt`` at every epoch end), figures (``figures/``) and the resolved config. The run
name is a deterministic function of the command, so ``--resume`` finds the last checkpoint of the same
command. Under DDP the launcher re-executes the command in each process; they share the parent's run
directory through ``$SCGBENCH_RUN_DIR`` and only global rank 0 writes the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.profilers import PassThroughProfiler

from .benchmarks import Benchmark, get_benchmark
from .callbacks import EpochHistory, build_callbacks, final_values
from .estimators import estimators_of, get_estimator_class
from .io import atomic_write_json
from .leaderboard.records import git_commit, hardware, write_record

OVERRIDE_SECTIONS = ("trainer", "model", "data")
LOG_EVERY_N_STEPS = 50  # Lightning's default; one TensorBoard write of 4-5 scalars costs ~0.3 ms here
PROGRESS_BAR_INTERVAL = 0.25  # seconds between redraws of the progress bar


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar redrawn by time: at most every ``min_interval`` seconds, and at the end of each
    epoch. A step-count refresh redraws a small CPU model hundreds of times a second (each redraw re-reads the
    logged metrics and writes the terminal twice; ~1 % of a 5 ms step at one redraw per 20 steps) and a slow
    one only every few seconds."""

    def __init__(self, min_interval: float = PROGRESS_BAR_INTERVAL) -> None:
        super().__init__()
        self.min_interval, self._next_redraw = float(min_interval), 0.0

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        if current == total:
            return True
        now = time.monotonic()
        if now < self._next_redraw:
            return False
        self._next_redraw = now + self.min_interval
        return True


class NullProfiler(PassThroughProfiler):
    """Lightning's default no-op profiler without its per-call cost: ``PassThroughProfiler.profile`` builds a
    generator context manager ~70 times per training step; this returns one shared ``nullcontext``. Same
    behaviour (nothing is recorded); ``--trainer.profiler simple`` etc. still replace it."""

    _NULL = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._NULL


class SelectionCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` without two per-step costs (``scgbench profile`` measures them on small models):

    * ``state_key`` is built once. Lightning formats every callback's key into a profiler label at each hook
      call (~6 per step), and ModelCheckpoint's is a ``repr`` of settings that never change after construction;
    * with neither a step nor a time interval (the runs save at validation/epoch end), ``on_train_batch_end``
      returns at once, where Lightning's version runs its state checks and then returns.
    """

    @property
    def state_key(self) -> str:
        if "_state_key" not in self.__dict__:
            self.__dict__["_state_key"] = super().state_key
        return self.__dict__["_state_key"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def run_callbacks(bm: Benchmark, out: Path, trick_callbacks: Sequence[pl.Callback]) -> list[pl.Callback]:
    """[selection checkpoint (+ ``last.ckpt``), epoch history, *tricks]: the callbacks of every run."""
    ckpt = SelectionCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch}", monitor=bm.selection_metric,
                               mode=bm.selection_mode, save_last=True)
    return [ckpt, EpochHistory(), *trick_callbacks]


def trainer_defaults(out: Path, callbacks: Sequence[pl.Callback], user_args: Sequence[str] = ()) -> dict:
    """The Trainer settings of every ``scgbench run`` (``scgbench profile`` times the same ones): TensorBoard
    logs under ``out/tb``, no per-step profiler cost, a progress bar refreshed every
    ``PROGRESS_BAR_INTERVAL`` seconds unless ``--trainer.enable_progress_bar=false``."""
    callbacks = list(callbacks)
    given = dict(a.split("=", 1) for a in user_args if "=" in a)
    bar_off = given.get("--trainer.enable_progress_bar", "true").lower() in ("false", "0", "no")
    if not bar_off and "--trainer.callbacks" not in given:  # a user's own callbacks may bring their own bar
        callbacks.append(ProgressBar())
    return {"default_root_dir": str(out), "callbacks": callbacks, "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(out), "name": "tb", "version": ""}},
            "log_every_n_steps": LOG_EVERY_N_STEPS, "profiler": {"class_path": f"{__name__}.NullProfiler"}}


def to_cli_args(config: dict) -> list[str]:
    """``{"model": {"lr": 1e-4}}`` → ``["--model.lr=0.0001"]`` (JSON for non-strings, as jsonargparse reads)."""
    args = []
    for section in OVERRIDE_SECTIONS:
        for k, v in config.get(section, {}).items():
            args.append(f"--{section}.{k}={v if isinstance(v, str) else json.dumps(v)}")
    return args


def split_overrides(overrides: Sequence[str]) -> list[str]:
    """Normalise ``--trainer.max_epochs 3`` / ``--trainer.max_epochs=3`` into ``--key=value`` strings."""
    out, it = [], iter(overrides)
    for tok in it:
        if not tok.startswith("--") or tok.split(".", 1)[0][2:] not in OVERRIDE_SECTIONS:
            raise ValueError(f"unrecognised argument {tok!r}: overrides look like --trainer.X, --model.X or --data.X")
        if "=" in tok:
            out.append(tok)
        else:
            try:
                out.append(f"{tok}={next(it)}")
            except StopIteration:
                raise ValueError(f"override {tok} needs a value") from None
    return out


def run_name(benchmark: str, variant: str, estimator: str, profile: str, seed: int, overrides: Sequence[str],
             tricks: dict) -> str:
    digest = hashlib.sha1(json.dumps([list(overrides), tricks], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{variant}-{estimator}-{profile}-s{seed}-{digest}"


def _choose_run_dir(base: Path, resume: bool) -> Path:
    """With ``resume``: the newest of ``base``, ``base-2``, … that holds ``last.ckpt``. Otherwise claim the
    first free one with an atomic ``mkdir``, so concurrent identical commands never share a directory."""
    if resume:
        taken = [base] + sorted((p for p in base.parent.glob(base.name + "-*") if p.name.rsplit("-", 1)[1].isdigit()),
                                key=lambda p: int(p.name.rsplit("-", 1)[1]))
        with_ckpt = [c for c in taken if (c / "checkpoints" / "last.ckpt").exists()]
        if not with_ckpt:
            raise FileNotFoundError(f"--resume: no checkpoint found under {base}*/checkpoints/last.ckpt; "
                                    "run the same command without --resume first")
        return with_ckpt[-1]
    base.parent.mkdir(parents=True, exist_ok=True)
    i = 1
    while True:
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            i += 1


def resolve(benchmark: Benchmark, profile: str, variant: str | None, estimator: str | None,
            estimator_kwargs: dict | None = None, disable_tricks: Sequence[str] = ()) -> dict:
    config = benchmark.config(profile, variant)
    if estimator is not None:
        cls = get_estimator_class(estimator)
        if cls.family not in benchmark.families:
            raise ValueError(f"{benchmark.name} does not support {cls.family} estimators such as {estimator!r}")
        config["model"]["estimator"] = estimator
    if estimator_kwargs:
        config["model"]["estimator_kwargs"] = {**config["model"].get("estimator_kwargs", {}), **estimator_kwargs}
    for t in disable_tricks:
        if t not in config["tricks"]:
            raise ValueError(f"--no-trick {t!r}: this run has tricks {sorted(config['tricks'])}")
        config["tricks"][t] = None
        if t == "dropres" and "dropres" in config["model"]:
            config["model"]["dropres"] = False
    return config


def run(benchmark: str, estimator: str | None = None, profile: str = "quick", seed: int = 0,
        variant: str | None = None, overrides: Sequence[str] = (), results: str | None = None,
        run_dir: str | None = None, resume: bool = False, estimator_kwargs: dict | None = None,
        disable_tricks: Sequence[str] = (), extra_callbacks: Sequence[pl.Callback] = (),
        write: bool = True) -> dict[str, Any]:
    """Train and test one configuration; return the result record (also written to ``results``)."""
    bm = get_benchmark(benchmark)
    variant = variant or bm.default_variant
    config = resolve(bm, profile, variant, estimator, estimator_kwargs, disable_tricks)
    user_args = split_overrides(overrides)
    est_name = config["model"].get("estimator") or _default(bm.module, "estimator") or "none"
    tricks = config["tricks"]
    trick_callbacks = build_callbacks(tricks)  # validates schedule parameters before anything is built

    owner = os.environ.get("SCGBENCH_RUN_OWNER")
    if os.environ.get("SCGBENCH_RUN_DIR") and owner and owner != str(os.getpid()):
        out = Path(os.environ["SCGBENCH_RUN_DIR"])  # a DDP worker process re-executing the parent's command
        resume = (out / "checkpoints" / "last.ckpt").exists() and resume
    else:
        name = run_name(bm.name, variant, est_name, profile, seed, user_args, tricks)
        base = Path(run_dir) if run_dir else Path(os.environ.get("SCGBENCH_RUNS_DIR", "runs")) / bm.name / name
        out = _choose_run_dir(base, resume)
        out.mkdir(parents=True, exist_ok=True)
        os.environ["SCGBENCH_RUN_DIR"], os.environ["SCGBENCH_RUN_OWNER"] = str(out), str(os.getpid())

    ckpt, history, *_ = callbacks = [*run_callbacks(bm, out, trick_callbacks), *extra_callbacks]
    data_args = ["--data.seed=%d" % seed] if "seed" in _init_params(bm.datamodule) else []
    args = to_cli_args(config) + data_args + user_args
    cli = LightningCLI(
        bm.module, bm.datamodule, run=False, args=args, seed_everything_default=seed,
        save_config_callback=None, auto_configure_optimizers=False,
        trainer_defaults=trainer_defaults(out, callbacks, user_args),
        parser_kwargs={"exit_on_error": False})
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    if not estimators_of(model):
        est_name = "none"  # e.g. a continuous baseline: no discrete node, so no estimator is in play
    if trainer.is_global_zero:
        atomic_write_json(out / "config.json", {"benchmark": bm.name, "variant": variant, "profile": profile,
                                                "seed": seed, "config": config, "args": args})
    code_version = git_commit()  # the code this run trains with, even if the checkout moves on meanwhile
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=str(out / "checkpoints" / "last.ckpt") if resume else None)
    fit_seconds = time.perf_counter() - t0
    schedule_end = final_values(model)
    # Copied now: testing a checkpoint restores the callbacks' state as it was when that checkpoint was saved.
    epoch_history, epoch_seconds = list(history.history), list(history.epoch_seconds)
    best = ckpt.best_model_path or None
    tested = trainer.test(model, datamodule=dm, ckpt_path=best or "last", verbose=False)
    metrics: dict[str, float] = {}
    for d in tested:
        metrics.update({k.split("/dataloader_idx")[0]: float(v) for k, v in d.items()})

    record = {
        "benchmark": bm.name, "variant": variant, "estimator": est_name,
        "estimator_kwargs": config["model"].get("estimator_kwargs", {}),
        "tricks": {k: (v if v else False) for k, v in tricks.items()},
        "profile": profile, "seed": seed, "metrics": metrics,
        "selection": {"metric": bm.selection_metric, "mode": bm.selection_mode,
                      "best": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
                      "checkpoint": best},
        "hparams": {"model": dict(model.hparams), "data": dict(getattr(dm, "hparams", {})),
                    "trainer": {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                                "precision": str(trainer.precision)}},
        "schedule_end": schedule_end,
        "data_source": getattr(dm, "data_source", "unknown"),
        "wall_clock_s": {"fit": fit_seconds, "total": time.perf_counter() - t0,
                         "epochs": epoch_seconds},
        "history": epoch_history,
        "epochs_trained": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "device": {"accelerator": type(trainer.accelerator).__name__, "devices": trainer.num_devices,
                   "strategy": type(trainer.strategy).__name__, "world_size": trainer.world_size,
                   "num_nodes": trainer.num_nodes, **hardware()},
        "run_dir": str(out), "run_name": out.name, "resumed": bool(resume), "args": args, "git": code_version,
        "torch_threads": torch.get_num_threads(),
    }
    if write and trainer.is_global_zero:
        record["path"] = str(write_record(record, results))
    return record


def _init_params(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


def _default(cls, name: str):
    p = inspect.signature(cls.__init__).parameters.get(name)
    return None if p is None or p.default is inspect.Parameter.empty else p.default
