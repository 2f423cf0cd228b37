"""What a run prints on a terminal-less stream (a log file, CI): one line per epoch with the values of that epoch,
Lightning's notices in order, nothing about accelerators that are absent or about loading the checkpoint the test
uses, and under DDP every message once."""

import os
import re
import subprocess
import sys

import pytest


def _run(tmp_path, *args: str) -> str:
    env = {**os.environ, "SCGBENCH_RUNS_DIR": str(tmp_path / "runs"), "SCGBENCH_RESULTS_DIR": str(tmp_path / "results"),
           "SCGBENCH_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    for k in ("SCGBENCH_RUN_DIR", "SCGBENCH_RUN_OWNER", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "scgbench", "run", *args], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout + p.stderr


def test_a_cpu_run_prints_each_epoch_once_with_only_its_own_values(tmp_path):
    out = _run(tmp_path, "discrete-vae", "--profile", "smoke", "--trainer.max_epochs=4",
               "--trainer.check_val_every_n_epoch=2")
    for chatter in ("GPU available", "TPU available", "Restoring states", "Loaded model weights", "💡"):
        assert chatter not in out, (chatter, out)
    lines = out.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/4", "2/4", "3/4", "4/4"], out
    # validation ran after epochs 2 and 4 only: the others show no (stale) validation value
    assert ["val/neg_elbo" in ln for ln in epochs] == [False, True, False, True], epochs
    assert all("train/loss" in ln for ln in epochs)
    stopped = [i for i, ln in enumerate(lines) if ln.startswith("`Trainer.fit` stopped")]
    assert len(stopped) == 1 and stopped[0] > lines.index(epochs[-1]), out  # after the last epoch's line
    assert re.search(r"^test metrics: \{'test/neg_elbo'", out, re.M)


@pytest.mark.slow
def test_under_ddp_every_message_appears_once(tmp_path):
    out = _run(tmp_path, "mnist-addition", "--profile", "smoke", "--trainer.max_epochs=2", "--trainer.devices=2",
               "--trainer.strategy=ddp", "--trainer.accelerator=cpu")
    lines = [ln for ln in out.splitlines() if ln.strip() and not set(ln) <= {"-"}]
    assert len(lines) == len(set(lines)), out
    assert "Initializing distributed: GLOBAL_RANK: 0" in out and "GLOBAL_RANK: 1" not in out
    assert sum(ln.startswith("MNIST data:") for ln in lines) == 1
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["1/2", "2/2"]
