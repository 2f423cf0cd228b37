"""Estimators a run cannot use are refused before any work: exit 2, one line naming the problem and the fix, no
results or runs directory (issue 25's bad inputs)."""

import re

import pytest

from scgbench.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["run", "mnist-addition", "--estimator", "nopkg.mod:Cls"], r"cannot import module 'nopkg.mod'.*install"),
    (["run", "mnist-addition", "--estimator", "torch.nn:Linear"], "is not an estimator.*subclass of scgbench"),
    (["run", "mnist-addition", "--estimator", "scgbench.estimators.gumbel:Nope"], "has no attribute 'Nope'"),
    (["run", "mnist-addition", "--estimator", "gumbel-rao", "--estimator-arg", "mc_samples=ten"],
     "option 'mc_samples' must be int, got 'ten'"),
    (["run", "mnist-addition", "--estimator", "gumbel", "--estimator-arg", "foo=1"], r"does not take \['foo'\]"),
    (["run", "mnist-addition", "--estimator", "spike-exp"], "binary nodes only.*K = 19"),
    (["run", "discrete-vae", "--estimator", "spike-exp"], "binary nodes only.*K = 10.*200x2"),
    (["run", "mnist-addition", "--estimator", "direct"], "cost-oracle"),
    (["run", "disentanglement", "--variant", "beta-vae", "--estimator", "st-gumbel"],
     "variant 'beta-vae' has no discrete node.*drop --estimator"),
])
def test_an_estimator_the_run_cannot_use_is_refused_before_any_work(isolated, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()
