"""``scgbench`` command line: list, run, compare, leaderboard, profile, figure, data.

``scgbench run <benchmark> [--profile quick|paper] [--variant V] [--estimator E] [--seed S] [--resume]
[--config FILE] [--print_config] [--trainer.X v] [--model.X v] [--data.X v] [--tricks.NAME.X v]`` trains and tests
one configuration and writes one result record; see ``scgbench <command> --help``. Everything after the named
options is LightningCLI's (:mod:`scgbench.config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

from .run_spec import Parser, add_grid_options, add_run_options, build_run, cell_argv, kv, make_run


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


def cmd_list(args) -> int:
    """Names and metadata only: no model, data module or callback class is imported, and so not Lightning
    (tests/test_cli_imports.py pins it)."""
    from .benchmarks import PROFILES, load_all
    from .callbacks import CALLBACK_CLASSES, TRICKS
    from .datamodules.catalog import load_providers
    from .estimators import registry

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
    print("estimators (family; nodes served; what it needs from a task beyond samples):")
    for name, cls in sorted(registry().items()):
        needs = ", ".join(sorted(cls.requires)) or "-"
        print(f"  {name:24s} {cls.family:15s} {'+'.join(sorted(cls.node_kinds)):20s} {needs}")
    print("tricks and diagnostics (--tricks.NAME.PARAM VALUE, --no-trick NAME):")
    for name, cls in sorted(CALLBACK_CLASSES.items()):
        kind = "trick" if name in TRICKS else "diagnostic"
        print(f"  {name:24s} {kind:11s} scgbench.callbacks.{cls}")
    print(f"profiles: {', '.join(PROFILES)}")
    print("datasets (scgbench data <name>):")
    for name, entry in sorted(load_providers().items()):
        print(f"  {name:24s} {'offline' if entry.offline else 'download'}  {entry.description}")
    return 0


def _shown(metrics: dict) -> dict:
    return {k: round(v, 4) for k, v in metrics.items()}


def cmd_run(args, overrides) -> int:
    record = make_run(args, overrides).prepare().execute()
    if "path" in record:
        print(f"result record: {record['path']}\nrun directory: {record['run_dir']}\n"
              f"test metrics: {_shown(record['metrics'])}")
    return 0


def _sweeps(items: list[str] | None) -> list[list[str]]:
    """``--sweep KEY=V1,V2`` (repeatable) → the overrides of every point of their product (``[[]]``: no sweep)."""
    axes = []
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals or "." not in key:
            raise ValueError(f"--sweep expects SECTION.KEY=V1,V2,… (e.g. model.gamma=10,20,40), got {item!r}")
        axes.append([f"--{key}={v}" for v in vals])
    return [list(p) for p in itertools.product(*axes)]


def cmd_compare(args, overrides) -> int:
    from . import grid
    from .benchmarks import get_benchmark
    from .experiment import record_experiment
    from .io import runs_root
    from .leaderboard import read_records, write_leaderboard
    from .runner import run_in_progress, unfinished_run
    from .store import check_readable, results_dirs

    slurm_flags = [f for f, v in (("--slurm-partition", args.slurm_partition), ("--slurm-time", args.slurm_time),
                                  ("--slurm-cpus-per-task", args.slurm_cpus_per_task),
                                  ("--slurm-gpus-per-node", args.slurm_gpus_per_node),
                                  ("--slurm-mem-gb", args.slurm_mem_gb), ("--slurm-option", args.slurm_option),
                                  ("--slurm-setup", args.slurm_setup), ("--slurm-folder", args.slurm_folder)) if v]
    if args.executor != "slurm" and slurm_flags:
        raise ValueError(f"{slurm_flags[0]} needs --executor slurm")
    from .io import check_output_path

    if args.output:  # the leaderboard written after the grid (default: in the results directory)
        check_output_path(args.output, "--output")
    grid.check_jobs(args.jobs, args.oversubscribe, args.executor)
    if args.executor == "slurm":
        threads = args.threads if args.threads is not None else args.slurm_cpus_per_task or 1
    else:
        threads = grid.threads_per_job(args.jobs, args.threads)
    stores = results_dirs(args.results_dir)
    for store in stores:  # new records go into the first store, which may not exist yet
        if store is not stores[0] or store.exists():
            check_readable(store)
    results = str(stores[0].absolute()) if args.results_dir else None
    bm = get_benchmark(args.benchmark)
    runs = runs_root()
    if args.executor == "slurm":  # no SLURM here is found before any cell is configured
        folder = Path(args.slurm_folder or runs / bm.name / "submitit" / "%j").absolute()
        executor = grid.slurm_executor(folder, name=f"scgbench-{bm.name}", time_min=args.slurm_time or 60,
                                       cpus_per_task=args.slurm_cpus_per_task or threads, jobs=args.jobs,
                                       partition=args.slurm_partition, gpus_per_node=args.slurm_gpus_per_node,
                                       mem_gb=args.slurm_mem_gb, options=kv(args.slurm_option, "--slurm-option"),
                                       setup=args.slurm_setup or ())
        where = f"SLURM ({args.jobs} job{'s' if args.jobs > 1 else ''} at once, {threads} thread(s) each, logs {folder})"
    else:
        where = f"a local pool of {args.jobs} job{'s' if args.jobs > 1 else ''} × {threads} thread(s)"
    estimators = args.estimators.split(",") if args.estimators else [None]
    variants = args.variants.split(",") if args.variants else [None]
    seeds = _seeds(args.seeds)
    sweeps = _sweeps(args.sweep)
    shared = cell_argv(args, overrides, threads, results)
    # Every cell is configured (parsed, built and checked, model included) here before the first one trains, so
    # bad input in any cell stops the grid before work starts; each job builds its run again from the cell's
    # resolved config in its own process.
    cells = []
    for v in variants:
        for e in estimators:
            for point, s in itertools.product(sweeps, seeds):
                argv = [args.benchmark, *(["--variant", v] if v else []), *(["--estimator", e] if e else []),
                        "--seed", str(s), *shared, *point]
                run = build_run(argv).configure()
                cells.append((grid.Cell(run.bm.name, run.variant, run.estimator, s, tuple(argv), run.spec()),
                              run.fingerprint, run.base_dir()))
    done = {(record_experiment(r, bm)[0], r["seed"])
            for _, r in read_records(stores, warn=lambda m: None, missing_ok=True) if r["benchmark"] == bm.name}
    todo = []
    for cell, fp, base in cells:
        print(f"== {cell.label}", flush=True)
        if (fp, cell.seed) in done and not args.rerun:
            print("   complete record found: skipped (--rerun runs it again)", flush=True)
        elif not args.rerun and (unfinished := unfinished_run(base)):
            if run_in_progress(unfinished[0]):  # e.g. the same grid started twice: leave it to its process
                print(f"   run in progress in another process ({unfinished[0]}, step {unfinished[1]}): skipped",
                      flush=True)
                continue
            # an interrupted run (a killed grid, a session's end): continue it exactly where its last.ckpt left off
            print(f"   interrupted run found ({unfinished[0]}, step {unfinished[1]}): resumed (--rerun starts it "
                  "afresh)", flush=True)
            todo.append(dataclasses.replace(cell, argv=(*cell.argv, "--resume")))
        else:
            todo.append(cell)
    print(f"grid: {len(todo)} of {len(cells)} cells to run on {where}", flush=True)
    failures = []
    if todo:
        if args.executor == "slurm":
            outcomes = grid.submitit_run(executor, todo)
        else:
            logs = None if args.jobs == 1 else runs / bm.name / "logs"
            outcomes = grid.LocalPool(args.jobs, logs).run(todo)
        for cell, out in outcomes:
            if out.get("refused") and args.executor == "local":
                # bad input the job found that configuring the cell here did not (its files changed meanwhile, or
                # the job's environment differs): stop before other cells start
                outcomes.close()
                raise ValueError(f"{out['error']} ({cell.label}: refused by its job's checks; the grid stopped)")
            if "error" in out:
                failures.append((cell, out))
                log = f" (log: {out['log']})" if out.get("log") else ""
                print(f"== failed: {cell.label}: {out['error']}{log}", file=sys.stderr, flush=True)
            else:
                print(f"== done: {cell.label}: test metrics: {_shown(out['metrics'])}", flush=True)
    if failures:
        print(f"grid: {len(failures)} of {len(todo)} cells failed (the others went on); rerunning the grid runs only "
              "the cells without a complete record. Failed cells:", file=sys.stderr)
        for cell, out in failures:
            print(f"   {cell.label}: {out['error']}\n      {cell.command}", file=sys.stderr)
    existing = [d for d in stores if d.exists()]
    if existing:  # your leaderboard goes next to your records (the committed leaderboard.md stays untouched)
        print(f"leaderboard: {write_leaderboard(existing, args.output or stores[0] / 'leaderboard.md')}")
    else:
        print(f"no results directory yet ({stores[0]}): leaderboard not written")
    return 1 if failures else 0


def cmd_leaderboard(args, overrides) -> int:
    from .io import check_output_path
    from .leaderboard import write_leaderboard

    if args.html:  # the static site (DIR/index.html, a page per benchmark) instead of leaderboard.md
        from .leaderboard.site import build_site

        if args.export or args.output:
            raise ValueError("--html DIR writes the site into DIR: give it without --export and --output")
        check_output_path(args.html, "--html", directory=True)
        print(f"wrote {build_site(args.html, args.results_dir)}")
        return 0
    if args.verify:  # re-run one record and compare (exit 1 when a metric misses its expectation)
        from .verify import verify

        return 0 if verify(args.verify, args.results_dir) else 1
    from .store import results_dir

    default = "leaderboard.md" if args.results_dir else results_dir() / "leaderboard.md"
    if args.output or not args.export:
        check_output_path(str(args.output or default), "--output")
    if args.export:  # one row per record instead of the rendered table; --output names the file
        from .leaderboard.export import write_export

        print(f"wrote {write_export(args.results_dir, args.output, args.export)}")
        return 0
    path = write_leaderboard(args.results_dir, args.output or default)
    print(f"wrote {path}")
    return 0


def cmd_publish(args, overrides) -> int:
    """Copy records into the published store; a record from a dirty tree is refused (exit 2, one line)."""
    from .store import publish

    for path, what in publish(args.runs, args.to):
        print(f"{what}: {path}")
    return 0


def cmd_profile(args, overrides) -> int:
    from .profiling import profile

    shapes = None
    if args.estimator_shapes:
        try:
            shapes = [tuple(int(d) for d in s.split("x")) for s in args.estimator_shapes.split(",")]
        except ValueError:
            raise ValueError(f"--estimator-shapes: expected e.g. 64x10x64,512x14541, got {args.estimator_shapes!r}") from None
        if any(not s or min(s) < 1 for s in shapes):
            raise ValueError(f"--estimator-shapes: every size must be >= 1, got {args.estimator_shapes!r}")
    profile(args.benchmark, profile_name=args.profile, variant=args.variant, estimator=args.estimator,
            steps=args.steps, overrides=overrides, output=args.output, estimator_shapes=shapes,
            estimator_iters=args.estimator_iters, estimator_rounds=args.estimator_rounds,
            estimators_only=args.estimators_only)
    return 0


def cmd_figure(args, overrides) -> int:
    from .benchmarks import get_benchmark
    from .io import runs_root
    from .leaderboard import read_records

    bm = get_benchmark(args.benchmark)
    if args.name not in bm.figures:
        raise ValueError(f"unknown figure {args.name!r} for {bm.name}; choose one of: {', '.join(bm.figures) or '(none)'}")
    records = [r for _, r in read_records(args.results_dir) if r["benchmark"] == bm.name]  # every store
    if bm.row_variant:  # figures select runs by the leaderboard's row names
        records = [{**r, "variant": bm.row_variant(r)} for r in records]
    # Never onto a committed figure by default: under the runs directory unless --output says where.
    out = Path(args.output or runs_root() / bm.name / "figures"
               / f"{args.name}.png")
    print(f"wrote {bm.figures[args.name](records, out)}")
    return 0


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated numbers, e.g. 0.5,1,2, got {text!r}") from None


def cmd_gradcheck(args, overrides) -> int:
    from .gradcheck import DEFAULT_EPSILONS, DEFAULT_TAUS, run_gradcheck

    run_gradcheck(args.benchmark, latent=args.latent, checkpoint=args.checkpoint,
                  estimators=[e for e in (args.estimators or "").split(",") if e] or None,
                  taus=_floats(args.taus, "--taus") if args.taus else DEFAULT_TAUS,
                  epsilons=_floats(args.epsilons, "--epsilons") if args.epsilons else DEFAULT_EPSILONS,
                  draws=args.draws, batch=args.batch, seed=args.seed, max_configurations=args.max_configurations,
                  results_dir=args.results_dir, figure_path=args.figure, threads=args.threads,
                  match_evaluations=args.match_evaluations)
    return 0


def cmd_data(args, overrides) -> int:
    from .datamodules.catalog import load_providers
    from .io import data_root

    datasets = load_providers()
    if args.name not in datasets:
        raise ValueError(f"unknown dataset {args.name!r}; choose one of: {', '.join(sorted(datasets))}")
    options = kv(args.option)
    if args.force:  # rebuild derived caches and download sources again, even when present and intact
        options["force"] = True
    print(datasets[args.name].prepare(data_root(args.root), **options))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="scgbench", description=__doc__.split("\n\n")[0], allow_abbrev=False,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="benchmarks, estimators, tricks, profiles and datasets", allow_abbrev=False)
    overrides_help = ("Everything else is LightningCLI's: --config FILE (a config layer of your own), --print_config "
                      "(print the resolved run and exit), --trainer.X / --model.X / --data.X / --tricks.NAME.X VALUE.")

    r = sub.add_parser("run", help="train and test one benchmark configuration", epilog=overrides_help,
                       allow_abbrev=False)
    add_run_options(r)
    c = sub.add_parser("compare", help="run a grid of estimators × variants × seeds, then render the leaderboard",
                       epilog=overrides_help, allow_abbrev=False)
    add_grid_options(c)
    lb = sub.add_parser("leaderboard", help="render leaderboard.md from all result records", allow_abbrev=False)
    lb.add_argument("--results-dir", action="append", metavar="DIR",
                    help="a results directory to read (repeatable; records in several count once; default: your "
                         "stores ($SCGBENCH_RESULTS_DIR, a path list, or ./scgbench-results) and the published results/)")
    lb.add_argument("--output", help="default: leaderboard.md in your results directory (with --results-dir: "
                                     "./leaderboard.md), or records.csv / records.parquet with --export")
    lb.add_argument("--verify", metavar="RECORD", help="re-run RECORD's experiment (its resolved config and seed) in a "
                                                       "scratch directory and report each metric's difference")
    lb.add_argument("--export", choices=("csv", "parquet", "table-csv"),
                    help="csv/parquet: every record as one table row (metric.*, config.*, cost and env columns); "
                         "table-csv: the leaderboard's rows and cells as leaderboard.md shows them")
    lb.add_argument("--html", metavar="DIR", help="write a self-contained static site into DIR instead (index.html: "
                                                  "estimator × benchmark ranks; a page per benchmark: tables, plots)")
    pr = sub.add_parser("profile", help="steps/s of Lightning vs a bare loop, loader vs step, estimator vs softmax",
                        epilog=overrides_help, allow_abbrev=False)
    pr.add_argument("benchmark")
    pr.add_argument("--profile", default="quick")
    pr.add_argument("--variant")
    pr.add_argument("--estimator")
    pr.add_argument("--steps", type=int, default=1000, help="timed steps per loop (more = steadier on a noisy machine)")
    pr.add_argument("--output", help="also write the numbers as JSON here")
    pr.add_argument("--estimators-only", action="store_true",
                    help="only time the estimators' forward+backward against softmax and F.gumbel_softmax")
    pr.add_argument("--estimator-shapes", metavar="SHAPES",
                    help="node shapes for the estimator timing, e.g. 64x10x64,512x14541 (default: the benchmark's "
                         "node shape, 64x10x64, 100x20x10 and 512x14541)")
    pr.add_argument("--estimator-iters", type=int, help="repetitions per round (default: ~2e6 elements' worth)")
    pr.add_argument("--estimator-rounds", type=int, default=5, help="interleaved rounds (default 5)")
    f = sub.add_parser("figure", help="draw a benchmark's figure from the result records of real runs",
                       allow_abbrev=False)
    f.add_argument("benchmark")
    f.add_argument("name", help="e.g. fig4.2 for mnist-addition")
    f.add_argument("--results-dir", action="append", metavar="DIR",
                   help="a results directory to read (repeatable; default $SCGBENCH_RESULTS_DIR, a path list)")
    f.add_argument("--output", help="PNG path (default runs/<benchmark>/figures/<name>.png)")
    g = sub.add_parser("gradcheck", help="estimators' gradients against the exact gradient by enumeration "
                                         "(relative bias, std, cosine, cost)", allow_abbrev=False)
    g.add_argument("benchmark", help="discrete-vae")
    g.add_argument("--latent", help="N x K of a fresh model, e.g. 4x3 or 8x4 (K^N within --max-configurations)")
    g.add_argument("--checkpoint", help="a trained model's Lightning checkpoint (e.g. runs/.../checkpoints/last.ckpt)")
    g.add_argument("--estimators", help="comma-separated (default: every estimator that takes logits and serves K)")
    g.add_argument("--taus", help="temperatures of the tempered estimators (default 0.5,1,2)")
    g.add_argument("--epsilons", help="Direct's epsilons (default 1,0.1)")
    g.add_argument("--draws", type=int, default=1000, help="gradient draws per setting (default 1000)")
    g.add_argument("--batch", type=int, default=16, help="test images in the fixed batch (default 16)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-configurations", type=int, default=65_536, help="cap on K^N (default 65,536 = 8x4)")
    g.add_argument("--results-dir", help="where the records go (default $SCGBENCH_RESULTS_DIR or ./scgbench-results)")
    g.add_argument("--figure", help="bias-vs-std PNG (default runs/<benchmark>/gradcheck/bias_std-<latent>-<model>.png)")
    g.add_argument("--threads", type=int, help="intra-op threads (default: $OMP_NUM_THREADS, else 1)")
    g.add_argument("--match-evaluations", type=int, metavar="N",
                   help="set each estimator's sample count so that it spends N decoder evaluations per image and "
                        "draw (the largest count below N where N cannot be met); estimators without one keep theirs")
    pb = sub.add_parser("publish", help="copy result records into the published store (refuses a dirty tree's)",
                        allow_abbrev=False)
    pb.add_argument("runs", nargs="+", metavar="RUN", help="a result record (JSON) or a run directory with record.json")
    pb.add_argument("--to", metavar="DIR", help="the published store (default $SCGBENCH_PUBLISHED or the checkout's "
                                                "results/)")
    d = sub.add_parser("data", help="download / convert / generate a dataset")
    d.add_argument("name")
    d.add_argument("--root", help="data root (default $SCGBENCH_DATA or ./data)")
    d.add_argument("--option", action="append", metavar="KEY=VALUE")
    d.add_argument("--force", action="store_true",
                   help="rebuild caches and download again even if the files are present and intact")
    return p


COMMANDS = {"list": lambda a, o: cmd_list(a), "run": cmd_run, "compare": cmd_compare,
            "leaderboard": cmd_leaderboard, "profile": cmd_profile, "figure": cmd_figure, "data": cmd_data,
            "gradcheck": cmd_gradcheck, "publish": cmd_publish}


def estimator_class_args(argv: list[str]) -> list[str]:
    """The jsonargparse ``class_path`` spelling of an estimator on the command line, as the suite's own options:
    ``--estimator.class_path X`` → ``--estimator X`` and ``--estimator.init_args.KEY VALUE`` (or ``=VALUE``) →
    ``--estimator-arg KEY=VALUE`` (values typed as YAML and checked against the class's annotations)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        for prefix, make in (("--estimator.class_path", lambda v: ["--estimator", v]),
                             ("--estimator.init_args.", None)):
            if not a.startswith(prefix):
                continue
            key, eq, value = a[len(prefix):].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"{a} needs a value")
                value, i = argv[i + 1], i + 1
            out += make(value) if make else ["--estimator-arg", f"{key}={value}"]
            break
        else:
            out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = estimator_class_args(list(sys.argv[1:] if argv is None else argv))
    except ValueError as e:
        print(f"scgbench: error: {e}", file=sys.stderr)
        return 2
    try:
        args, overrides = parser.parse_known_args(argv)
        if overrides and args.command not in ("run", "compare", "profile"):
            parser.error(f"unrecognised arguments: {' '.join(overrides)}")
    except SystemExit as e:  # a usage error (one line, exit 2) or --help (exit 0)
        return e.code if isinstance(e.code, int) else 0
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
