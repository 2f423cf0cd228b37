"""Estimators a run cannot use are refused before any work: exit 2, one line naming the problem and the fix, no
results or runs directory."""

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
    (["run", "discrete-vae", "--estimator", "nvil", "--estimator-arg", "baseline_input=pixels"],
     "baseline_input must be one of summary, params.*baseline_input=summary"),
    (["run", "listops", "--estimator", "nvil", "--estimator-arg", "baseline_input=params"],
     "does not fix its number of nodes.*baseline_input=summary"),
    # a grid's option that one of its estimators does not take stops it before any cell trains
    (["compare", "discrete-vae", "--profile", "smoke", "--variants", "200b-linear", "--estimators", "nvil,reinforce",
      "--estimator-arg", "baseline_input=params", "--seeds", "0"], r"'reinforce' does not take \['baseline_input'\]"),
])
def test_an_estimator_the_run_cannot_use_is_refused_before_any_work(isolated, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()


def test_the_class_path_spelling_of_an_estimator_is_the_suites_options():
    from scgbench.cli import estimator_class_args

    assert estimator_class_args(["run", "b", "--estimator.class_path", "pkg.mod:Cls", "--estimator.init_args.k", "4",
                                 "--estimator.init_args.mean=arithmetic", "--seed", "1"]) == [
        "run", "b", "--estimator", "pkg.mod:Cls", "--estimator-arg", "k=4", "--estimator-arg", "mean=arithmetic",
        "--seed", "1"]


def test_class_path_init_args_are_typed_and_checked_before_any_work(isolated, capsys):
    argv = ["run", "mnist-addition", "--estimator.class_path", "scgbench.estimators.gumbel_rao:GumbelRao",
            "--estimator.init_args.mc_samples", "ten"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "option 'mc_samples' must be int, got 'ten'" in err and len(err.splitlines()) == 1
    assert main(["run", "mnist-addition", "--estimator.init_args.k"]) == 2
    assert "needs a value" in capsys.readouterr().err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()
