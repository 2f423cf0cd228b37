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
