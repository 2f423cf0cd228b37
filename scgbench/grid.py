"""The cells of ``scgbench compare`` and their dispatch: a local pool of processes or SLURM through submitit.

A *cell* is one (variant, estimator, seed) of the grid plus the options the grid shares (profile, estimator
options, tricks switched off, results directory, threads, LightningCLI overrides), held as the argument list of the
equivalent ``scgbench run`` command and the run's spec: the resolved config that the submitting process parsed and
checked (everything but the model, :meth:`scgbench.runner.Run.configure`), as plain data. Its job builds the run from
them in its own process (:func:`run_cell`): the named options from the arguments, the model, datamodule and trainer
from the resolved config, which is not parsed from the layers again; nothing built in the submitting process is
pickled. Each job writes its own record into the shared results directory, so a rerun of the grid finds it.

Engines, not a scheduler of our own:

* ``local`` (default): :class:`concurrent.futures.ThreadPoolExecutor` keeps ``--jobs`` cells running at once,
  each in a fresh Python process (``python -m scgbench.grid``). A cell whose process fails, or dies (killed, out
  of memory), is reported and the others go on (a process-pool executor would terminate every running cell when
  one worker dies). With one job the cells' output goes to the terminal; with more, each cell writes a log file.
* ``slurm``: a submitit job array (``submitit.AutoExecutor``), ``--jobs`` of them running at once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class Cell:
    benchmark: str
    variant: str  # as resolved (the benchmark's default variant when the grid names none)
    estimator: str  # as configured ("none" for a benchmark without a discrete node)
    seed: int
    argv: tuple[str, ...]  # the arguments of the equivalent `scgbench run` command
    spec: dict = field(default_factory=dict, compare=False, repr=False)  # runner.Run.spec(): what its job builds

    @property
    def label(self) -> str:
        return f"{self.benchmark} variant={self.variant} estimator={self.estimator} seed={self.seed}"

    @property
    def command(self) -> str:
        return shlex.join(["scgbench", "run", *self.argv])


# -- bad input and threads ------------------------------------------------------------------------------------
def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_jobs(jobs: int, oversubscribe: bool = False, executor: str = "local", cpus: int | None = None) -> None:
    """``--jobs`` must be >= 1; a local pool may not run more jobs than cores unless ``--oversubscribe``."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    cpus = cpus or available_cpus()
    if executor == "local" and jobs > cpus and not oversubscribe:
        raise ValueError(f"--jobs {jobs} is more than the {cpus} CPU cores here; use --jobs {cpus} or fewer, or add "
                         "--oversubscribe to run them anyway")


def threads_per_job(jobs: int, requested: int | None = None, cpus: int | None = None) -> int:
    """Intra-op threads of each job of a local pool: ``--threads`` if given, else ``$OMP_NUM_THREADS`` if set, else
    an equal share of the cores, ``max(1, cpus // jobs)``, so the jobs together do not oversubscribe the machine."""
    if requested is not None:
        return requested
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, (cpus or available_cpus()) // jobs)


# -- one cell, in its job's own process -----------------------------------------------------------------------
class CellRefused(ValueError):
    """A cell's run refused by its job's checks before any work, which configuring it in the grid's process passed
    (its files or the job's environment changed meanwhile): the grid stops."""


def run_cell(argv: Sequence[str], spec: dict | None = None) -> dict[str, Any]:
    """Build the run of ``scgbench run <argv>`` in this process (from ``spec``, the resolved config its grid
    configured, when given), train, test and record it; return its summary."""
    from .run_spec import build_run

    try:
        run = build_run(list(argv), spec).prepare()
    except ValueError as e:
        raise CellRefused(str(e)) from None
    rec = run.execute()
    return {"path": rec.get("path"), "run_dir": rec.get("run_dir"), "metrics": rec.get("metrics", {})}


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _worker(argv: list[str]) -> int:
    """``python -m scgbench.grid CELL_JSON ARGS…``: :func:`run_cell` on ``ARGS`` (the cell's ``scgbench run``
    arguments, also what the process's command line and its record show) and the spec in ``CELL_JSON`` (written by
    :class:`LocalPool`: ``{"spec": …, "result": RESULT_JSON}``); its summary, or the one-line error, goes to
    ``RESULT_JSON``."""
    from .io import atomic_write_json

    cell = json.loads(Path(argv[0]).read_text())
    result = Path(cell["result"])
    try:
        summary, code = run_cell(argv[1:], cell["spec"]), 0
    except SystemExit as e:  # argparse / LightningCLI exits on a bad option (checked in the parent already)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(e, SIGTERMException):  # Lightning's SIGTERM handler ends fit with this SystemExit(None)
            summary, code = {"error": "its process was stopped by SIGTERM"}, 1
        else:
            summary, code = {"error": f"exited with status {e.code}"}, e.code if isinstance(e.code, int) and e.code else 2
    except CellRefused as e:  # the grid reports it, in one line, and stops
        summary, code = {"error": str(e).strip().splitlines()[0], "refused": True}, 2
    except Exception as e:  # noqa: BLE001 - the error is the cell's outcome
        if not isinstance(e, (ValueError, FileNotFoundError, ConnectionError)):
            traceback.print_exc()
        print(f"scgbench: error: {e}", file=sys.stderr)
        summary, code = {"error": one_line(e)}, 1
    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP: the launcher's other ranks re-execute this command
        atomic_write_json(result, summary)
    return code


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


# -- local pool -----------------------------------------------------------------------------------------------
class LocalPool:
    """Up to ``jobs`` cells at once, each in a fresh ``python -m scgbench.grid`` process."""

    def __init__(self, jobs: int, log_dir: Path | None = None) -> None:
        self.jobs, self.log_dir = jobs, log_dir

    def log_of(self, cell: Cell, stamp: str) -> Path | None:
        if self.log_dir is None:
            return None
        return self.log_dir / f"compare-{stamp}-{cell.variant}-{cell.estimator}-s{cell.seed}.log"

    def _one(self, cell: Cell, result: Path, log: Path | None) -> dict[str, Any]:
        from .io import atomic_write_json

        cell_file = result.with_suffix(".cell.json")
        atomic_write_json(cell_file, {"spec": cell.spec, "result": str(result)})
        cmd = [sys.executable, "-m", "scgbench.grid", str(cell_file), *cell.argv]
        if log is None:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as f:
                code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT).returncode
        out: dict[str, Any] = {}
        try:
            out = json.loads(result.read_text())
        except (OSError, ValueError):
            out = {"error": f"its process {_exit_text(code)} before it reported a result"}
        if code and "error" not in out:
            out["error"] = f"its process {_exit_text(code)}"
        return {**out, **({"log": str(log)} if log else {})}

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Outcomes as cells finish. A cell starts when one before it has finished and its outcome has been taken,
        so a caller that stops at an outcome (closes this generator) starts no further cell."""
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        todo = iter(enumerate(cells))
        with tempfile.TemporaryDirectory(prefix="scgbench-grid-") as tmp, ThreadPoolExecutor(self.jobs) as pool:
            running: dict = {}

            def start() -> None:
                for i, cell in todo:
                    log = self.log_of(cell, stamp)
                    if log:
                        print(f"   {cell.label}: log {log}", flush=True)
                    running[pool.submit(self._one, cell, Path(tmp) / f"{i}.json", log)] = cell
                    return

            for _ in range(self.jobs):
                start()
            while running:
                for f in wait(running, return_when=FIRST_COMPLETED).done:
                    yield running.pop(f), f.result()
                    start()


# -- SLURM through submitit -----------------------------------------------------------------------------------
def slurm_executor(folder: Path, *, name: str, time_min: int, cpus_per_task: int, jobs: int,
                   partition: str | None = None, gpus_per_node: int | None = None, mem_gb: int | None = None,
                   options: dict | None = None, setup: Sequence[str] = ()):
    """A submitit executor for SLURM with the grid's resources (one task per job)."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    except RuntimeError as e:  # submitit looks for `srun`
        raise ValueError(f"--executor slurm: {e} (submit the grid from a machine with the SLURM commands)") from None
    params: dict[str, Any] = {"name": name, "timeout_min": time_min, "cpus_per_task": cpus_per_task,
                              "tasks_per_node": 1, "nodes": 1, "slurm_array_parallelism": jobs}
    if partition:
        params["slurm_partition"] = partition
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if mem_gb:
        params["mem_gb"] = mem_gb
    if options:
        params["slurm_additional_parameters"] = dict(options)
    if setup:
        params["slurm_setup"] = list(setup)
    executor.update_parameters(**params)
    return executor


def _submitit_error(e: BaseException) -> str:
    """The one-line error of a failed submitit job: the last line of the job's traceback (``Type: message``)."""
    text = str(e)
    parts = re.split(r"\n-{10,}\n", text)
    trace = parts[1] if len(parts) >= 3 else ""
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip()]
    if lines:
        kind, sep, msg = lines[-1].partition(": ")
        return f"{kind.rsplit('.', 1)[-1]}{sep}{msg}"
    first = text.strip().splitlines()
    return f"{type(e).__name__}: {first[0]}" if first else type(e).__name__


def submitit_run(executor, cells: Sequence[Cell], poll_s: float = 5.0) -> Iterator[tuple[Cell, dict[str, Any]]]:
    """Submit every cell to ``executor`` (a submitit executor) as one job array; yield outcomes as jobs finish."""
    import submitit

    jobs = executor.map_array(run_cell, [list(c.argv) for c in cells], [c.spec for c in cells])
    of = {id(job): cell for job, cell in zip(jobs, cells)}
    for job, cell in zip(jobs, cells):
        print(f"   {cell.label}: submitted as job {job.job_id}", flush=True)
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll_s):
        cell = of[id(job)]
        try:
            yield cell, job.result()
        except Exception as e:  # noqa: BLE001 - a failed job is the cell's outcome
            log = getattr(getattr(job, "paths", None), "stderr", None)
            yield cell, {"error": _submitit_error(e), **({"log": str(log)} if log else {})}


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
