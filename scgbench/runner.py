"""Run one benchmark: build it from its config layers (:mod:`scgbench.config`), check everything checkable, train,
test the selected checkpoint, and write one result record that describes what ran.

Order of work, so that a mistake costs nothing: parse and check the config (names, types, estimator family) →
instantiate model, datamodule and tricks (their range checks; the model's ``check_datamodule``) → probe that
the results and runs directories are writable → claim the run directory → build the trainer → fit → test →
write the record, first into the run directory and then, atomically, into the results directory.

Everything a run produces lives in one run directory (``runs/<benchmark>/<run name>`` unless
``--run-dir``/``$SCGBENCH_RUNS_DIR`` say otherwise): TensorBoard logs (``tb/``), checkpoints
(``checkpoints/``: the best-validation one for testing and ``last.ckpt``, rewritten atomically every epoch and
every ``checkpoint_every`` steps), figures (``figures/``), the resolved config (``config.yaml``) and the record
(``record.json``). The run name is ``<variant>-<estimator>-<profile>-s<seed>-<fingerprint>``, so ``--resume``
finds the last checkpoint of the same experiment and seed. Under DDP the launcher re-executes the command in
each process; they share the parent's run directory through ``$SCGBENCH_RUN_DIR`` and only global rank 0 writes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import PassThroughProfiler

from .benchmarks import Benchmark, get_benchmark
from .callbacks import TRICKS, EpochLine, ProgressBar, RunCheckpoint, SelectionCheckpoint
from .config import BenchmarkCLI, ConfigError, benchmark_args, check_families, configured_estimator
from .estimators import estimator_origin, estimators_of
from .experiment import fingerprint, modifications
from .io import atomic_write_bytes, atomic_write_json, runs_root
from .store import SCHEMA_VERSION, record_name, results_dir, write_record
from .nn.state import schedule_values
from .provenance import git_commit, hardware, load_average, package_versions


class NullProfiler(PassThroughProfiler):
    """Lightning's default no-op profiler without its per-call cost: ``PassThroughProfiler.profile`` builds a
    generator context manager ~70 times per training step; this returns one shared ``nullcontext``. Same
    behaviour (nothing is recorded); ``--trainer.profiler simple`` etc. still replace it."""

    _NULL = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._NULL


class _NoTips(logging.Filter):
    """Drops Lightning's lines that tell a user of this suite nothing: advertising tips (LitLogger, litmodels), the
    absent accelerators ("GPU available: False, used: False"; a GPU that is present but unused is still named),
    and the restore notices of the test on the selected checkpoint (the record names that checkpoint). A resumed
    run's "Restored all states from the checkpoint at …" stays."""

    CHATTER = re.compile(r"💡 Tip|(GPU|TPU|HPU|IPU) available: False\b|Restoring states from the checkpoint path at |"
                         r"Loaded model weights from the checkpoint at ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.CHATTER.match(str(record.msg))


def quiet_lightning() -> None:
    """Silence output a user cannot act on: Lightning's tips and absent-accelerator and restore notices
    (:class:`_NoTips`), and a deprecation notice Lightning itself triggers with this torch (``_pytree``'s
    ``LeafSpec``). Warnings about the user's own configuration stay."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in log.filters):
            log.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def quiet_ddp_worker() -> None:
    """A DDP worker re-executes the owner's command: everything it would report, the owner (global rank 0) reports
    too, so each message appears once; a worker's errors still show."""
    for name in ("scgbench", "lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- threads --------------------------------------------------------------------------------------------------
def choose_threads(requested: int | None = None) -> dict[str, Any]:
    """Intra-op threads of this process: ``requested`` (``--threads``), else ``$OMP_NUM_THREADS`` if the user
    set it, else 1. Small models on few shared cores run 10–50× faster with one thread per process than with
    torch's default (one per core, contending with every other process)."""
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads must be >= 1, got {requested}")
        n, source = int(requested), "--threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        n, source = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        n, source = 1, "scgbench default (one per process)"
    torch.set_num_threads(n)
    return {"torch_threads": torch.get_num_threads(), "source": source}


def progress_callbacks(cli: BenchmarkCLI) -> list[pl.Callback]:
    """What a run shows while training: the time-throttled bar on a terminal, one line per epoch otherwise, nothing
    with ``--trainer.enable_progress_bar=false``."""
    if cli.config.trainer.get("enable_progress_bar") is False:
        return []
    return [ProgressBar()] if sys.stderr.isatty() else [EpochLine()]


# -- directories ----------------------------------------------------------------------------------------------
def probe_writable(directory: Path, what: str, flag: str) -> None:
    """Fail now (before training), naming the directory and the option to change, unless ``directory`` can be
    created and written: a file is created and removed in its nearest existing ancestor; nothing is left."""
    existing = Path(directory).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".scgbench-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"the {what} {directory} is not writable ({e.strerror or e}: {existing}); choose "
                          f"another with {flag} or fix its permissions") from None


def _with_checkpoint(base: Path) -> list[Path]:
    """``base``, ``base-2``, … in that order, those that hold ``checkpoints/last.ckpt``."""
    taken = [base] + sorted((p for p in base.parent.glob(base.name + "-*") if p.name.rsplit("-", 1)[1].isdigit()),
                            key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return [c for c in taken if (c / "checkpoints" / "last.ckpt").exists()]


try:
    import fcntl
except ImportError:  # not POSIX: no run lock (a second resume of a running run is then the user's to avoid)
    fcntl = None

LOCK_NAME = ".running"


def hold_run_lock(out: Path):
    """Take ``out/.running``'s exclusive ``flock`` for as long as the returned file stays open, or raise
    :class:`ConfigError` if another process holds it. The kernel drops the lock when its process dies, SIGKILL
    included, so a killed run's directory is free to resume at once. ``None`` where ``fcntl`` is missing."""
    if fcntl is None:
        return None
    f = open(out / LOCK_NAME, "a")  # noqa: SIM115 - held open for the run's life
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise ConfigError(f"the run directory {out} is in use: another process is training there; wait for it to "
                          "finish, or start a separate run without --resume") from None
    return f


def run_in_progress(out: Path) -> bool:
    """Whether a live process holds ``out``'s run lock (:func:`hold_run_lock`)."""
    if fcntl is None:
        return False
    try:
        with open(out / LOCK_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when f closes
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def unfinished_run(base: Path) -> tuple[Path, int | None] | None:
    """The run directory ``--resume`` would continue and its checkpoint's step, when that run has not finished
    (no ``record.json``); else ``None``. ``scgbench compare`` resumes such a cell instead of starting it again."""
    with_ckpt = _with_checkpoint(base)
    if not with_ckpt or (with_ckpt[-1] / "record.json").exists():
        return None
    return with_ckpt[-1], _checkpoint_step(with_ckpt[-1] / "checkpoints" / "last.ckpt")


def choose_run_dir(base: Path, resume: bool) -> Path:
    """With ``resume``: the newest of ``base``, ``base-2``, … that holds ``last.ckpt``. Otherwise claim the first
    free one with an atomic ``mkdir``, so concurrent identical commands never share a directory."""
    if resume:
        with_ckpt = _with_checkpoint(base)
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


def _discard_if_empty(out: Path) -> None:
    """A run that failed before its first checkpoint leaves nothing worth keeping: remove its directory."""
    if out.is_dir() and not (out / "checkpoints" / "last.ckpt").exists():
        shutil.rmtree(out, ignore_errors=True)


# -- the run --------------------------------------------------------------------------------------------------
class Run:
    """One configured run: :meth:`prepare` (all checks, no files), :meth:`execute` (train, test, record)."""

    def __init__(self, benchmark: str, estimator: str | None = None, profile: str = "quick", seed: int = 0,
                 variant: str | None = None, overrides: Sequence[str] = (), results: str | None = None,
                 run_dir: str | None = None, resume: bool = False, estimator_kwargs: dict | None = None,
                 disable_tricks: Sequence[str] = (), extra_callbacks: Sequence[pl.Callback] = (),
                 threads: int | None = None, checkpoint_every: int | None = None, write: bool = True,
                 spec: dict | None = None) -> None:
        """``spec``: this run's :meth:`spec` as configured in another process (a grid's cell): the run is built from
        its resolved config, which is not parsed from the layers again."""
        self.bm: Benchmark = get_benchmark(benchmark)
        self.variant = variant or self.bm.default_variant
        self.profile, self.seed, self.resume, self.write = profile, int(seed), resume, write
        self.results = results_dir(results)
        self.run_dir_arg, self.extra_callbacks = run_dir, list(extra_callbacks)
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be >= 1, got {checkpoint_every}")
        self.threads_requested, self.checkpoint_every = threads, checkpoint_every
        self.estimator_requested, self.given_spec = estimator, spec
        self.base_args = benchmark_args(self.bm, profile, self.variant, self.seed, estimator, estimator_kwargs)
        self.args = benchmark_args(self.bm, profile, self.variant, self.seed, estimator, estimator_kwargs,
                                   disable_tricks) + list(overrides)

    def configure(self) -> "Run":
        """Parse and check the run as its job will, without keeping its model: option names and types, estimator
        families, the experiment's identity, the constructors of the tricks, callbacks, datamodule and model (an
        estimator the model's latent cannot serve, a value only the model checks), the model's demands on the data,
        Lightning's trainer checks, the directories; data that must be downloaded is fetched. Nothing is written.
        What ``compare`` does for each cell before any cell runs, so that bad input in a later cell stops the grid
        before the first trains (building a model takes 0.3 s or less for every benchmark; each job builds its own
        from :meth:`spec`)."""
        self._parse()
        self.cli.instantiate()
        self.datamodule = self.cli.datamodule
        self._check_model(self.cli.model)
        self.cli.model = self.cli.config_init["model"] = None  # not kept: a grid holds one configured run per cell
        self.estimator = configured_estimator(self.cli)
        self._check()
        return self

    def prepare(self) -> "Run":
        """Parse, check and instantiate everything but the trainer; nothing is written."""
        self._parse()
        self.cli.instantiate()
        self.model, self.datamodule = self.cli.model, self.cli.datamodule
        est = self._check_model(self.model)
        self.estimator = "+".join(est) if est else "none"
        self._check()
        return self

    def _check_model(self, model) -> list[str]:
        """The checks that need the built model: its own demands on the datamodule, and an ``--estimator`` that a
        variant without a discrete node would ignore. Returns the registered names of the model's estimators."""
        check = getattr(model, "check_datamodule", None)
        if check is not None:
            try:
                check(self.datamodule)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        est = sorted({e.name for e in estimators_of(model)})
        if self.estimator_requested is not None and not est:
            raise ConfigError(f"{self.bm.name} variant {self.variant!r} has no discrete node, so --estimator "
                              f"{self.estimator_requested} would train nothing differently; drop --estimator or choose "
                              f"a variant with discrete latents")
        return est

    def spec(self) -> dict[str, Any]:
        """What a grid's job builds this run from (plain data, after :meth:`configure`): the resolved config, the
        experiment's fingerprint (the job checks that the config gives it again) and what the run modifies (found
        from the base layers, which the job does not parse)."""
        return {"config": self.cli.resolved(), "fingerprint": self.fingerprint, "modified": self.modified}

    def _parse(self) -> None:
        """One parse: the arguments' layers and overrides, or the resolved config of a :meth:`spec`."""
        spec = self.given_spec
        self.cli = BenchmarkCLI(self.bm, self.args if spec is None else spec["config"])
        check_families(self.cli)
        self.experiment = self.cli.experiment()
        self.fingerprint = fingerprint(self.experiment)
        if spec is None:
            self.modified = modifications(self.cli.experiment(self.base_args), self.experiment)  # the same parser
        elif self.fingerprint != spec["fingerprint"]:
            raise ConfigError(f"the resolved config of this {self.bm.name} cell is experiment {self.fingerprint}, but "
                              f"it was configured as {spec['fingerprint']}; run the grid again")
        else:
            self.modified = dict(spec["modified"])

    def _check(self) -> None:
        """The checks of a configured run that need no model: Lightning's trainer checks, writable directories, and
        data that must be downloaded is fetched now (without network the run fails here, with no directory)."""
        self.cli.check_trainer()
        if self.write:
            probe_writable(self.results / self.bm.name, "results directory", "--results-dir")
        if not self._is_ddp_worker():
            probe_writable(self.base_dir().parent, "runs directory", "--run-dir or $SCGBENCH_RUNS_DIR")
            fetch = getattr(self.datamodule, "fetch_sources", None)
            if fetch is not None:
                fetch()

    @property
    def run_name(self) -> str:
        return f"{self.variant}-{self.estimator}-{self.profile}-s{self.seed}-{self.fingerprint}"

    @staticmethod
    def _is_ddp_worker() -> bool:
        """A process Lightning's DDP launcher started (``LOCAL_RANK`` ≥ 1) to re-execute the owner's command."""
        owner = os.environ.get("SCGBENCH_RUN_OWNER")
        return bool(os.environ.get("SCGBENCH_RUN_DIR") and owner and owner != str(os.getpid())
                    and os.environ.get("LOCAL_RANK", "0") != "0")

    def base_dir(self) -> Path:
        """Where this run's directory goes: ``--run-dir``, else ``<runs root>/<benchmark>/<run name>`` (a rerun of
        the same command takes ``<that>-2``, ``-3``, …)."""
        return (Path(self.run_dir_arg) if self.run_dir_arg
                else runs_root() / self.bm.name / self.run_name)

    def _claim_dir(self) -> Path:
        if self._is_ddp_worker():
            out = Path(os.environ["SCGBENCH_RUN_DIR"])  # a DDP worker re-executing the parent's command
            self.resume = self.resume and (out / "checkpoints" / "last.ckpt").exists()
            return out
        base = self.base_dir()
        if self.run_dir_arg and not self.resume:
            # An explicit directory must be new or empty: a failed run removes what it created, nothing else.
            if base.exists() and any(base.iterdir()):
                raise ConfigError(f"--run-dir {base} is not empty; continue its run with --resume or choose "
                                  "another directory")
            base.mkdir(parents=True, exist_ok=True)
            out = base
        else:
            out = choose_run_dir(base, self.resume)
        os.environ["SCGBENCH_RUN_DIR"], os.environ["SCGBENCH_RUN_OWNER"] = str(out), str(os.getpid())
        return out

    def execute(self) -> dict[str, Any]:
        # Seeded again here: `compare` prepares every cell before the first one trains.
        pl.seed_everything(self.seed, workers=True, verbose=False)
        quiet_lightning()
        if self._is_ddp_worker():
            quiet_ddp_worker()
        threads = choose_threads(self.threads_requested)
        shared = {k: os.environ.get(k) for k in ("SCGBENCH_RUN_DIR", "SCGBENCH_RUN_OWNER")}
        try:
            return self._execute(threads)
        finally:
            # The run directory is shared with this run's DDP workers only: leave no trace for later runs of this
            # process or the processes it starts.
            for k, v in shared.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _execute(self, threads: dict) -> dict[str, Any]:
        out = self._claim_dir()
        # DDP workers share their owner's directory (and lock); anyone else resuming it now is refused
        lock = None if self._is_ddp_worker() else hold_run_lock(out)
        try:
            return self._execute_in(out, threads)
        finally:
            if lock is not None:
                lock.close()

    def _execute_in(self, out: Path, threads: dict) -> dict[str, Any]:
        done = out / "record.json"
        if self.resume and done.exists():
            record = json.loads(done.read_text())
            print(f"run {out} is already complete; its record: {record.get('path', done)}", file=sys.stderr)
            return record
        try:
            return self._train_and_test(out, threads)
        except BaseException:
            if not self.resume:
                _discard_if_empty(out)
            raise

    def _train_and_test(self, out: Path, threads: dict) -> dict[str, Any]:
        bm, cli = self.bm, self.cli
        last = out / "checkpoints" / "last.ckpt"
        resume_step = _checkpoint_step(last) if self.resume else None
        if self.resume:  # of course it holds the run's own checkpoints: Lightning's warning says nothing here
            warnings.filterwarnings("ignore", message=re.escape(f"Checkpoint directory {out / 'checkpoints'} exists "
                                                                "and is not empty."))
        selection = SelectionCheckpoint(out / "checkpoints", bm.selection_metric, bm.selection_mode)
        code_version = git_commit()  # the code this run trains with, even if the checkout moves on meanwhile
        state = RunCheckpoint(out / "checkpoints", every_n_steps=self.checkpoint_every,
                              segment={"threads_source": threads["source"], "host": hardware().get("host"),
                                       "git": code_version.get("commit"), "resumed": resume_step is not None})
        progress = progress_callbacks(cli)
        # One TensorBoard run: a resumed run hides the events the killed run wrote after its checkpoint.
        logger = TensorBoardLogger(save_dir=str(out), name="tb", version="", default_hp_metric=False,
                                   **({"purge_step": resume_step} if resume_step else {}))
        trainer = cli.make_trainer([selection, state, *progress, *self.extra_callbacks], default_root_dir=str(out),
                                   logger=logger, profiler=NullProfiler())
        if trainer.is_global_zero:
            atomic_write_bytes(out / "config.yaml", yaml.safe_dump(cli.resolved(), sort_keys=False).encode())
        t0 = time.perf_counter()
        model, dm = self.model, self.datamodule
        trainer.fit(model, datamodule=dm, ckpt_path=str(last) if self.resume else None)
        fit_seconds = time.perf_counter() - t0
        schedule_end = schedule_values(model)
        ests = estimators_of(model)  # as trained (testing loads the best checkpoint's buffers)
        estimators = [{"module": n, **_describe(e), "family": e.family, **estimator_origin(type(e))}
                      for n, e in model.named_modules() if any(e is x for x in ests)]
        # Copied now: testing a checkpoint restores the callbacks' state as it was when that checkpoint was saved.
        history, segments = list(state.history), [dict(s) for s in state.segments]
        best = selection.best_model_path or None
        # The best-validation checkpoint; without validation, the final weights.
        tested = trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)
        metrics: dict[str, float] = {}
        for d in tested:
            metrics.update({k.split("/dataloader_idx")[0]: float(v) for k, v in d.items()})
        record = self._record(trainer, metrics, selection, best, schedule_end, estimators, history, segments,
                              threads, code_version, fit_seconds, time.perf_counter() - t0, out)
        if self.write and trainer.is_global_zero:
            record["path"] = str(self._write(record, out))
        return record

    def _record(self, trainer, metrics, selection, best, schedule_end, estimators, history, segments, threads,
                code_version, fit_seconds, total_seconds, out) -> dict[str, Any]:
        model, dm, cli = self.model, self.datamodule, self.cli
        used_threads = sorted({s.get("torch_threads") for s in segments if s.get("torch_threads")})
        return {
            "schema_version": SCHEMA_VERSION,
            "benchmark": self.bm.name, "variant": self.variant, "profile": self.profile, "seed": self.seed,
            "estimator": self.estimator, "result_version": self.bm.result_version,
            "estimators": estimators,
            "estimator_kwargs": dict(getattr(model, "hparams", {}).get("estimator_kwargs") or {}),
            "tricks": {k: (_describe(cli.tricks[k]) if k in cli.tricks else False) for k in TRICKS},
            "diagnostics": {k: _describe(cb) for k, cb in cli.tricks.items() if k not in TRICKS},
            "callbacks": [f"{type(c).__module__}.{type(c).__qualname__}" for c in trainer.callbacks],
            "experiment": self.experiment, "fingerprint": self.fingerprint, "modified": self.modified,
            "config": cli.resolved(),
            "metrics": metrics,
            "selection": {"metric": self.bm.selection_metric, "mode": self.bm.selection_mode,
                          "best": float(selection.best_model_score) if selection.best_model_score is not None
                          else None, "checkpoint": best},
            "hparams": {"model": dict(getattr(model, "hparams", {})), "data": dict(getattr(dm, "hparams", {})),
                        "trainer": {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                                    "accumulate_grad_batches": trainer.accumulate_grad_batches,
                                    "precision": str(trainer.precision),
                                    "limit_train_batches": trainer.limit_train_batches}},
            "schedule_end": schedule_end,
            "data_source": getattr(dm, "data_source", "unknown"),
            "data": dm.describe() if hasattr(dm, "describe") else {},
            "wall_clock_s": {"fit": fit_seconds, "total": total_seconds,
                             "epochs": [h.get("time/epoch_s") for h in history]},
            "history": history,
            "epochs_trained": trainer.current_epoch, "global_steps": trainer.global_step,
            "segments": segments, "resumed": max(0, len(segments) - 1),
            "device": {"accelerator": type(trainer.accelerator).__name__, "devices": trainer.num_devices,
                       "strategy": type(trainer.strategy).__name__, "world_size": trainer.world_size,
                       "num_nodes": trainer.num_nodes, **hardware()},
            "torch_threads": used_threads[0] if len(used_threads) == 1 else used_threads,
            "threads_source": threads["source"],
            "load_average": {"start": segments[0].get("load_start") if segments else None, "end": load_average()},
            "num_parameters": sum(p.numel() for p in model.parameters()),
            # Cost next to quality: the training batch size per process (from the data module) and how often each
            # example's downstream computation runs per step (REINFORCE with S samples: S; none without estimator).
            "batch_size": getattr(dm, "batch_size", None),
            "function_evaluations_per_step": max((e.evaluations_per_step for e in estimators_of(model)), default=None),
            "run_dir": str(out), "run_name": out.name, "args": self.args, "git": code_version,
            "versions": package_versions(), "command": sys.argv,
        }

    def _write(self, record: dict, out: Path) -> Path:
        """Into the run directory first (nothing is lost if the results directory fails now), then into the
        results directory under a unique name."""
        record = {**record, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "id": str(uuid.uuid4())}  # the same id in both copies: a store holding either counts it once
        name = record_name(record)
        record["path"] = str(self.results / self.bm.name / name)
        atomic_write_json(out / "record.json", record)
        try:
            return write_record(record, self.results, name=name)
        except OSError as e:
            raise OSError(f"the record could not be written to {self.results} ({e.strerror or e}); it is saved in "
                          f"{out / 'record.json'}: copy it to {self.results / self.bm.name}/") from None


def run(benchmark: str, **kwargs) -> dict[str, Any]:
    """Train and test one configuration; return the result record (also written to the results directory)."""
    return Run(benchmark, **kwargs).prepare().execute()


def _describe(obj) -> dict:
    """An object's constructor parameters as it holds them (estimators, tricks): what the run used."""
    import inspect

    if hasattr(obj, "describe"):
        out = obj.describe()
    else:
        out = {p: getattr(obj, p) for p in list(inspect.signature(type(obj).__init__).parameters)[1:]
               if hasattr(obj, p)}
    out = {k: (float(v) if torch.is_tensor(v) and v.numel() == 1 else v) for k, v in out.items()}
    if hasattr(obj, "name") and isinstance(getattr(type(obj), "name", None), str):
        out = {"name": obj.name, **out}
    return out


def _checkpoint_step(path: Path) -> int | None:
    """The global step a checkpoint was saved at (for TensorBoard's purge), without loading its tensors twice."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))
    except Exception:  # noqa: BLE001 - a checkpoint Lightning itself cannot read fails in fit with its own message
        return None
