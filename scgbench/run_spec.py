"""A run's specification: the options of ``scgbench run`` and how they become a :class:`scgbench.runner.Run`.

The one place that knows a run's named options (the rest of a command line is LightningCLI's, :mod:`scgbench.config`):
the CLI's ``run`` and ``compare`` parsers add them from here, a grid cell is the ``scgbench run`` arguments of one run
with the resolved config its grid configured (:meth:`scgbench.runner.Run.spec`), and each job builds it with
:func:`build_run` in its own process. Below the CLI and the grid (:mod:`scgbench.grid`
imports this module, not the CLI); it imports nothing heavy until a run is built, so ``scgbench --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse with the suite's error format: one line naming the problem and where the options are listed (the
    subcommands' parsers are of this class too), exit 2; ``--help`` prints the usage."""

    def error(self, message: str):
        print(f"scgbench: error: {self.prog.removeprefix('scgbench ') + ': ' if ' ' in self.prog else ''}{message}"
              f" (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _shared_options(q) -> None:
    """The options a run and a grid of runs share."""
    q.add_argument("--profile", default="quick", help="quick or paper")
    q.add_argument("--estimator-arg", action="append", metavar="KEY=VALUE",
                   help="estimator option, e.g. baseline=loo or num_samples=4")
    q.add_argument("--no-trick", action="append", metavar="NAME", help="switch a trick off (tempmatch, dropres…)")


def add_run_options(q) -> None:
    """``scgbench run``'s named options."""
    q.add_argument("benchmark")
    q.add_argument("--estimator", help="estimator name (see `scgbench list`) or package.module:ClassName; sets "
                                       "--model.estimator")
    q.add_argument("--variant", help="model variant / ablation (see `scgbench list`)")
    q.add_argument("--seed", type=int, default=0)
    _shared_options(q)
    q.add_argument("--results-dir", help="where records go (default $SCGBENCH_RESULTS_DIR or ./scgbench-results; "
                                         "`scgbench publish` copies one into the published results/)")
    q.add_argument("--threads", type=int, help="intra-op threads per process (default: $OMP_NUM_THREADS, else 1)")
    q.add_argument("--run-dir", help="run directory (default runs/<benchmark>/<run name>)")
    q.add_argument("--resume", action="store_true", help="continue the same command from its last checkpoint")
    q.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="also write last.ckpt every N optimizer steps (default: every epoch only)")


def add_grid_options(q) -> None:
    """``scgbench compare``'s named options: a grid of runs and where it runs."""
    q.add_argument("benchmark")
    q.add_argument("--estimators", help="comma-separated estimator names")
    q.add_argument("--variants", help="comma-separated variants")
    q.add_argument("--seeds", default="0-2", help="e.g. 0-2 or 0,3,5")
    q.add_argument("--output", help="the grid's leaderboard (default: leaderboard.md in the results directory)")
    q.add_argument("--rerun", action="store_true", help="run cells that already have a complete record, and start "
                   "interrupted cells afresh (without it they resume from their last checkpoint)")
    q.add_argument("--sweep", action="append", metavar="KEY=V1,V2,…",
                   help="also sweep a config option over values, e.g. model.gamma=10,20,40 (repeatable: "
                        "the grid is their product); each value is the override --KEY=V of its cells")
    q.add_argument("--results-dir", action="append", metavar="DIR",
                   help="a results directory (repeatable): new records go into the first, cells with a "
                        "complete record in any are skipped (default $SCGBENCH_RESULTS_DIR, a path list, "
                        "or ./scgbench-results)")
    q.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="cells running at once, each in its own process (default 1); a local pool gives "
                        "each job max(1, cores // N) threads unless --threads or $OMP_NUM_THREADS say")
    q.add_argument("--oversubscribe", action="store_true", help="allow more local jobs than CPU cores")
    q.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: a process pool on this machine; slurm: a submitit job array")
    q.add_argument("--slurm-partition")
    q.add_argument("--slurm-time", type=int, metavar="MINUTES", help="time limit of each job (default 60)")
    q.add_argument("--slurm-cpus-per-task", type=int, metavar="N", help="default: --threads, else 1")
    q.add_argument("--slurm-gpus-per-node", type=int, metavar="N")
    q.add_argument("--slurm-mem-gb", type=int, metavar="GB")
    q.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high")
    q.add_argument("--slurm-setup", action="append", metavar="LINE",
                   help="a shell line run before each job, e.g. 'module load cuda'")
    q.add_argument("--slurm-folder", help="submitit's job files and logs (default runs/<benchmark>/submitit/%%j)")
    _shared_options(q)
    q.add_argument("--threads", type=int, help="intra-op threads per process (default: $OMP_NUM_THREADS, else 1)")


def kv(items: list[str] | None, flag: str = "--option") -> dict:
    """``KEY=VALUE`` items → a dict, each value read as YAML (``k=4`` is the int 4)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def check_config_files(overrides: list[str]) -> None:
    """Each ``--config FILE`` of the user's that exists must be YAML: a malformed one is named with the line and
    column of the problem (jsonargparse would name ``"<unicode string>"``); a missing one is LightningCLI's to
    report."""
    import yaml

    files = [overrides[i + 1] for i, a in enumerate(overrides[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in overrides if a.startswith("--config=")]
    for name in files:
        path = Path(name)
        if not path.is_file():
            continue
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ValueError(f"--config {name}: not valid YAML ({problem}{where}); fix the file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--config {name}: cannot be read ({e}); fix the file or its permissions") from None


def make_run(args, overrides, spec: dict | None = None):
    """The (unprepared) :class:`~scgbench.runner.Run` of parsed ``run`` options and LightningCLI overrides (``spec``:
    its resolved config as configured elsewhere, see :meth:`~scgbench.runner.Run.spec`)."""
    from .runner import Run

    check_config_files(overrides)
    return Run(args.benchmark, estimator=args.estimator, profile=args.profile, variant=args.variant,
               seed=args.seed, overrides=overrides, results=args.results_dir,
               estimator_kwargs=kv(args.estimator_arg, "--estimator-arg"), disable_tricks=args.no_trick or (),
               threads=args.threads, run_dir=args.run_dir, resume=args.resume, checkpoint_every=args.checkpoint_every,
               spec=spec)


def build_run(argv: list[str], spec: dict | None = None):
    """The (unprepared) run of ``scgbench run <argv>``; with ``spec`` (a grid's job), built from the resolved
    config its grid configured: only the named options of ``argv`` are read, the LightningCLI layers are not parsed
    again."""
    q = Parser(prog="scgbench run", allow_abbrev=False)
    add_run_options(q)
    args, overrides = q.parse_known_args(list(argv))
    return make_run(args, overrides, spec)


def cell_argv(args, overrides, threads: int, results: str | None) -> list[str]:
    """The ``scgbench run`` options every cell of a grid shares (parsed ``compare`` options → run arguments)."""
    out = ["--profile", args.profile]
    for item in args.estimator_arg or []:
        out += ["--estimator-arg", item]
    for name in args.no_trick or []:
        out += ["--no-trick", name]
    if results is not None:
        out += ["--results-dir", results]
    return [*out, "--threads", str(threads), *overrides]
