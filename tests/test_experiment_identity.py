"""Which options make a different experiment (a different fingerprint, a leaderboard row of its own): every
setting that changes a test number — the number of importance samples of the bound, of prior samples and decodes,
the metric preset, the size of a test set — and none that cannot change one (the evaluation batch size: evaluation
noise is keyed per example). Built through the same parser as a run."""

import pytest

from scgbench.benchmarks import get_benchmark
from scgbench.config import BenchmarkCLI, benchmark_args
from scgbench.experiment import fingerprint


def _fingerprint(name: str, *overrides: str) -> str:
    bm = get_benchmark(name)
    return fingerprint(BenchmarkCLI(bm, benchmark_args(bm, "quick", None, 0) + list(overrides)).experiment())


@pytest.mark.parametrize("name,option", [
    ("discrete-vae", "--model.iw_samples=1000"),      # k of the importance-weighted bound test/nll_iw
    ("nasbench101-vsgae", "--model.prior_samples=500"),  # test/prior_validity, uniqueness, novelty
    ("nasbench101-vsgae", "--model.recon_decodes=3"),    # test/recon_acc
    ("disentanglement", "--model.metrics_preset=study"),  # the six metrics' sample sizes
    ("listops", "--data.test_per_depth=100"),          # the test set
])
def test_a_setting_that_changes_test_numbers_is_a_new_experiment(name, option):
    assert _fingerprint(name, option) != _fingerprint(name)


@pytest.mark.parametrize("name", ["discrete-vae", "nasbench101-vsgae", "listops"])
def test_the_evaluation_batch_size_is_the_same_experiment(name):
    """The control: an option that cannot change a number keeps the fingerprint (so the check above can tell)."""
    assert _fingerprint(name, "--data.eval_batch_size=7") == _fingerprint(name)


def test_a_records_experiment_is_its_fingerprint_and_modifications():
    """What ``compare`` asks to skip a complete cell and what the leaderboard groups by: one function, below both."""
    from scgbench.experiment import record_experiment
    from scgbench.leaderboard.render import experiment_of

    assert experiment_of is record_experiment
    assert record_experiment({"fingerprint": "abc", "modified": {"model.tau": 2}}, None) == ("abc", {"model.tau": 2})
    assert record_experiment({"fingerprint": "abc", "modified": None}, None) == ("abc", {})


def test_a_run_is_parsed_by_one_cli_and_its_modifications_by_the_same_parser(isolated, monkeypatch):
    """Run.prepare builds one BenchmarkCLI; the profile ⊕ variant ⊕ estimator layers alone go through its parser
    again, and what the run modifies is exactly what differs from a CLI built from those layers."""
    from scgbench.config import BenchmarkCLI
    from scgbench.experiment import modifications
    from scgbench.runner import Run

    built = []
    init = BenchmarkCLI.__init__
    monkeypatch.setattr(BenchmarkCLI, "__init__", lambda self, *a, **k: (built.append(a[0].name), init(self, *a, **k))[1])
    run = Run("disentanglement", variant="factor-dvae", estimator="st-gumbel", disable_tricks=["cosine_scale"],
              overrides=["--model.gamma=20", "--data.num_val=64"]).prepare()
    assert built == ["disentanglement"]
    assert run.modified == {"data.num_val": 64, "model.gamma": 20, "tricks.cosine_scale.class_path": None}
    monkeypatch.setattr(BenchmarkCLI, "__init__", init)
    assert run.modified == modifications(BenchmarkCLI(run.bm, run.base_args).experiment(), run.experiment)
