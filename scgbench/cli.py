"""``scgbench`` command line: list, run, compare, leaderboard, profile, figure, data.

``scgbench run <benchmark> [--profile quick|paper] [--variant V] [--estimator E] [--seed S] [--resume]
[--config FILE] [--print_config] [--trainer.X v] [--model.X v] [--data.X v] [--tricks.NAME.X v]`` trains and tests
one configuration and writes one result record; see ``scgbench <command> --help``. Everything after the named
options is LightningCLI's (:mod:`scgbench.config`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _seeds(spec: str) -> list[int]:
    """``"0-2"`` → [0, 1, 2]; ``"0,3,5"`` → [0, 3, 5]."""
    out: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds {spec!r}: expected e.g. 0-4 or 0,3,5") from None
    if not out:
        raise ValueError(f"no seeds in {spec!r}")
    return out


def _kv(items: list[str] | None, flag: str = "--option") -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def cmd_list(args) -> int:
    from .benchmarks import PROFILES, load_all
    from .callbacks import CALLBACKS, TRICKS
    from .datamodules.catalog import load_providers
    from .estimators import ESTIMATORS

    print("benchmarks:")
    for name, bm in sorted(load_all().items()):
        try:
            offline = "available offline" if bm.offline() else "needs download"
        except Exception as e:  # noqa: BLE001 - availability probing must not break `list`
            offline = f"unavailable ({e})"
        print(f"  {name:24s} {offline:20s} data: {bm.data}")
        print(f"  {'':24s} profiles: {', '.join(bm.profiles)}; variants: {', '.join(bm.variants)} "
              f"(default {bm.default_variant})")
        print(f"  {'':24s} estimator families: {', '.join(bm.families) or 'none (no discrete node)'}")
    print("estimators:")
    for name, cls in sorted(ESTIMATORS.items()):
        print(f"  {name:24s} {cls.family}")
    print("tricks and diagnostics (--tricks.NAME.PARAM VALUE, --no-trick NAME):")
    for name, cls in sorted(CALLBACKS.items()):
        kind = "trick" if name in TRICKS else "diagnostic"
        print(f"  {name:24s} {kind:11s} {cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}")
    print(f"profiles: {', '.join(PROFILES)}")
    print("datasets (scgbench data <name>):")
    for name, entry in sorted(load_providers().items()):
        print(f"  {name:24s} {'offline' if entry.offline else 'download'}  {entry.description}")
    return 0


def _run_kwargs(args, overrides) -> dict:
    return dict(estimator=getattr(args, "estimator", None), profile=args.profile, variant=getattr(args, "variant", None),
                overrides=overrides,
                results=args.results_dir, estimator_kwargs=_kv(args.estimator_arg, "--estimator-arg"),
                disable_tricks=args.no_trick or (), threads=args.threads)


def _shown(metrics: dict) -> dict:
    return {k: round(v, 4) for k, v in metrics.items()}


def cmd_run(args, overrides) -> int:
    from .runner import Run

    record = Run(args.benchmark, seed=args.seed, run_dir=args.run_dir, resume=args.resume,
                 checkpoint_every=args.checkpoint_every, **_run_kwargs(args, overrides)).prepare().execute()
    if "path" in record:
        print(f"result record: {record['path']}\nrun directory: {record['run_dir']}\n"
              f"test metrics: {_shown(record['metrics'])}")
    return 0


def cmd_compare(args, overrides) -> int:
    from .leaderboard import read_records, write_leaderboard
    from .leaderboard.render import experiment_of
    from .runner import Run

    estimators = args.estimators.split(",") if args.estimators else [None]
    variants = args.variants.split(",") if args.variants else [None]
    seeds = _seeds(args.seeds)
    # Every cell is configured (and so checked) before the first one trains.
    cells = [(v, e, s, Run(args.benchmark, seed=s, **{**_run_kwargs(args, overrides), "variant": v, "estimator": e})
              .prepare()) for v in variants for e in estimators for s in seeds]
    bm = cells[0][3].bm
    done = {(experiment_of(r, bm)[0], r["seed"]) for _, r in read_records(args.results_dir, warn=lambda m: None)
            if r["benchmark"] == bm.name}
    failures = 0
    for variant, est, seed, cell in cells:
        print(f"== {args.benchmark} variant={cell.variant} estimator={cell.estimator} seed={seed}", flush=True)
        if (cell.fingerprint, seed) in done and not args.rerun:
            print("   complete record found: skipped (--rerun runs it again)", flush=True)
            continue
        try:
            rec = cell.execute()
            print(f"   test metrics: {_shown(rec['metrics'])}", flush=True)
        except Exception as e:  # noqa: BLE001 - one failed cell must not lose the rest of the grid
            failures += 1
            print(f"   failed: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"leaderboard: {write_leaderboard(args.results_dir, args.output)}")
    return 1 if failures else 0


def cmd_leaderboard(args, overrides) -> int:
    from .leaderboard import write_leaderboard

    path = write_leaderboard(args.results_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_profile(args, overrides) -> int:
    from .profiling import profile

    profile(args.benchmark, profile_name=args.profile, variant=args.variant, estimator=args.estimator,
            steps=args.steps, overrides=overrides, output=args.output)
    return 0


def cmd_figure(args, overrides) -> int:
    import os

    from .benchmarks import get_benchmark
    from .leaderboard import read_records

    bm = get_benchmark(args.benchmark)
    if args.name not in bm.figures:
        raise ValueError(f"unknown figure {args.name!r} for {bm.name}; choose one of: {', '.join(bm.figures) or '(none)'}")
    records = [r for _, r in read_records(args.results_dir) if r["benchmark"] == bm.name]
    if bm.row_variant:  # figures select runs by the leaderboard's row names
        records = [{**r, "variant": bm.row_variant(r)} for r in records]
    # Never onto a committed figure by default: under the runs directory unless --output says where.
    out = Path(args.output or Path(os.environ.get("SCGBENCH_RUNS_DIR", "runs")) / bm.name / "figures"
               / f"{args.name}.png")
    print(f"wrote {bm.figures[args.name](records, out)}")
    return 0


def cmd_data(args, overrides) -> int:
    from .datamodules.catalog import load_providers
    from .io import data_root

    datasets = load_providers()
    if args.name not in datasets:
        raise ValueError(f"unknown dataset {args.name!r}; choose one of: {', '.join(sorted(datasets))}")
    options = _kv(args.option)
    if args.force:  # rebuild derived caches and download sources again, even when present and intact
        options["force"] = True
    print(datasets[args.name].prepare(data_root(args.root), **options))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgbench", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="benchmarks, estimators, tricks, profiles and datasets", allow_abbrev=False)
    overrides_help = ("Everything else is LightningCLI's: --config FILE (a config layer of your own), --print_config "
                      "(print the resolved run and exit), --trainer.X / --model.X / --data.X / --tricks.NAME.X VALUE.")

    def common(q, grid=False):
        q.add_argument("benchmark")
        if grid:
            q.add_argument("--estimators", help="comma-separated estimator names")
            q.add_argument("--variants", help="comma-separated variants")
            q.add_argument("--seeds", default="0-2", help="e.g. 0-2 or 0,3,5")
            q.add_argument("--output", default="leaderboard.md")
            q.add_argument("--rerun", action="store_true", help="run cells that already have a complete record")
        else:
            q.add_argument("--estimator", help="estimator name (see `scgbench list`); sets --model.estimator")
            q.add_argument("--variant", help="model variant / ablation (see `scgbench list`)")
            q.add_argument("--seed", type=int, default=0)
        q.add_argument("--profile", default="quick", help="quick or paper")
        q.add_argument("--estimator-arg", action="append", metavar="KEY=VALUE",
                       help="estimator option, e.g. baseline=loo or num_samples=4")
        q.add_argument("--no-trick", action="append", metavar="NAME", help="switch a trick off (tempmatch, dropres…)")
        q.add_argument("--results-dir", help="where records go (default $SCGBENCH_RESULTS_DIR or ./results)")
        q.add_argument("--threads", type=int, help="intra-op threads per process (default: $OMP_NUM_THREADS, else 1)")

    r = sub.add_parser("run", help="train and test one benchmark configuration", epilog=overrides_help,
                       allow_abbrev=False)
    common(r)
    r.add_argument("--run-dir", help="run directory (default runs/<benchmark>/<run name>)")
    r.add_argument("--resume", action="store_true", help="continue the same command from its last checkpoint")
    r.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="also write last.ckpt every N optimizer steps (default: every epoch only)")
    c = sub.add_parser("compare", help="run a grid of estimators × variants × seeds, then render the leaderboard",
                       epilog=overrides_help, allow_abbrev=False)
    common(c, grid=True)
    lb = sub.add_parser("leaderboard", help="render leaderboard.md from all result records", allow_abbrev=False)
    lb.add_argument("--results-dir")
    lb.add_argument("--output", default="leaderboard.md")
    pr = sub.add_parser("profile", help="steps/s of Lightning vs a bare loop, loader vs step, estimator vs softmax",
                        epilog=overrides_help, allow_abbrev=False)
    pr.add_argument("benchmark")
    pr.add_argument("--profile", default="quick")
    pr.add_argument("--variant")
    pr.add_argument("--estimator")
    pr.add_argument("--steps", type=int, default=1000, help="timed steps per loop (more = steadier on a noisy machine)")
    pr.add_argument("--output", help="also write the numbers as JSON here")
    f = sub.add_parser("figure", help="draw a benchmark's figure from the result records of real runs",
                       allow_abbrev=False)
    f.add_argument("benchmark")
    f.add_argument("name", help="e.g. fig4.2 for mnist-addition")
    f.add_argument("--results-dir")
    f.add_argument("--output", help="PNG path (default runs/<benchmark>/figures/<name>.png)")
    d = sub.add_parser("data", help="download / convert / generate a dataset")
    d.add_argument("name")
    d.add_argument("--root", help="data root (default $SCGBENCH_DATA or ./data)")
    d.add_argument("--option", action="append", metavar="KEY=VALUE")
    d.add_argument("--force", action="store_true",
                   help="rebuild caches and download again even if the files are present and intact")
    return p


COMMANDS = {"list": lambda a, o: cmd_list(a), "run": cmd_run, "compare": cmd_compare,
            "leaderboard": cmd_leaderboard, "profile": cmd_profile, "figure": cmd_figure, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if overrides and args.command not in ("run", "compare", "profile"):
        parser.error(f"unrecognised arguments: {' '.join(overrides)}")
    try:
        return COMMANDS[args.command](args, overrides)
    except SystemExit as e:  # --print_config and --help exit from inside LightningCLI's parser
        return e.code if isinstance(e.code, int) else 0
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        print(f"scgbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # after training (e.g. the results directory went away): the record is in the run dir
        print(f"scgbench: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
