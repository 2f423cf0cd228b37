"""``scgbench profile`` builds its run with ``scgbench run``'s builder and checks (runner.Run.prepare): what a run
refuses before any work, a profile refuses too, with the same one-line error."""

import pytest

from scgbench.config import ConfigError
from scgbench.profiling import profile


@pytest.mark.parametrize("name,overrides,needle", [
    # the model's own demands on the data (check_datamodule)
    ("disentanglement", ["--data.num_labels=100"], "--data.num_labels is used only by the semi-supervised models"),
    # Lightning's trainer checks (check_trainer)
    ("mnist-addition", ["--trainer.max_epochs=-5"], "`max_epochs` must be a non-negative integer"),
    # the estimator's family
    ("nasbench101-vsgae", ["--model.estimator=gumbel"], "unknown option|trains without a gradient estimator"),
])
def test_profile_refuses_what_a_run_refuses(isolated, name, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        profile(name, profile_name="smoke", steps=2, warmup=1, chunk=1, overrides=overrides, estimator_iters=1,
                estimator_shapes=[(2, 3)], estimator_rounds=1)
    assert not (isolated / "runs").exists() and not (isolated / "results").exists()
