"""Schedules (TempMatch, TauAnn, DropRes, cosine scale) and diagnostics under a real Lightning Trainer."""

import math
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scgbench.callbacks import (CategoryUsage, Clock, CosineScaleAnnealing, DropResAnnealing, GradientMagnitude,
                                TauAnnealing, TempMatch)
from scgbench.estimators import get_estimator
from scgbench.nn import DiscreteContinuous


class TwoNodes(pl.LightningModule):
    """Two discrete-continuous components on one path (stochastic depths 1 and 2)."""

    def __init__(self, tau=4.0):
        super().__init__()
        self.save_hyperparameters()
        self.inp = nn.Linear(3, 6)
        self.c1 = DiscreteContinuous(get_estimator("gumbel", tau=tau), nn.Linear(6, 5), depth=1)
        self.c2 = DiscreteContinuous(get_estimator("gumbel", tau=tau), nn.Linear(6, 5), depth=2)
        self.out = nn.Linear(6, 1)

    def training_step(self, batch, _):
        x, y = batch
        return (self.out(self.c2(self.c1(self.inp(x)))).squeeze(-1) - y).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(callbacks, steps=40, batches_per_epoch=10, tmp_path=None):
    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(batches_per_epoch * 4, 3), torch.randn(batches_per_epoch * 4))
    model = TwoNodes()
    trainer = pl.Trainer(max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(ds, batch_size=4))
    return model, trainer


def test_clock_cadences():
    tr = SimpleNamespace(global_step=25, num_training_batches=10, accumulate_grad_batches=1,
                         estimated_stepping_batches=100)
    assert Clock(updates_per_epoch=8).t(tr) == 20      # 8 updates per 10-step epoch
    assert Clock(every_n_steps=4).t(tr) == 6
    assert Clock(total_updates=1000).t(tr) == 250      # spread over the planned 100 steps
    clock = Clock(total_updates=1000)
    clock.start(tr)
    tr.estimated_stepping_batches = 50  # the plan is read once per fit, at its start
    assert clock.t(tr) == 250
    with pytest.raises(ValueError, match="exactly one"):
        Clock(updates_per_epoch=8, every_n_steps=2)
    with pytest.raises(ValueError, match="> 0"):
        Clock(every_n_steps=0)


def test_tempmatch_follows_beta_t_equals_tau_one_minus_exp(tmp_path):
    model, trainer = _fit([TempMatch(gamma=0.05, every_n_steps=2)], steps=40, tmp_path=tmp_path)
    t_last = 39 // 2  # the schedule is applied at the start of the last batch (global_step 39)
    for c in (model.c1, model.c2):
        assert float(c.estimator.beta) == pytest.approx(4.0 * (1 - math.exp(-0.05 * t_last)), rel=1e-6)
        assert float(c.estimator.tau) == 4.0


def test_tauann_and_dropres_and_cosine(tmp_path):
    model, _ = _fit([TauAnnealing(gamma=0.1, tau_min=1.5, every_n_steps=1),
                     DropResAnnealing(rate=0.01, every_n_steps=1)], steps=30, tmp_path=tmp_path)
    assert float(model.c1.estimator.tau) == pytest.approx(max(1.5, 4.0 * math.exp(-0.1 * 29)), rel=1e-6)
    assert float(model.c2.alpha) == pytest.approx(0.29)
    model, _ = _fit([CosineScaleAnnealing(0.5, 2.0, total_updates=40)], steps=40, tmp_path=tmp_path)
    assert float(model.c1.estimator.beta) == pytest.approx(2.0 + (0.5 - 2.0) * (1 + math.cos(math.pi * 39 / 40)) / 2)


def test_dropres_reaches_one_and_stays(tmp_path):
    model, _ = _fit([DropResAnnealing(rate=0.1, every_n_steps=1)], steps=30, tmp_path=tmp_path)
    assert float(model.c1.alpha) == 1.0


def test_gradient_magnitude_and_category_usage_write_figures(tmp_path):
    gm, cu = GradientMagnitude(every_n_steps=1), CategoryUsage(every_n_steps=1)
    _fit([gm, cu], steps=12, tmp_path=tmp_path)
    depths = {r["depth"] for r in gm.history}
    assert depths == {1, 2}
    assert all(r["grad_u"] > 0 and r["grad_theta"] > 0 for r in gm.history)
    usage = cu.usage()
    assert set(usage) == {1, 2}
    assert sum(usage[1]["mean_z"]) == pytest.approx(1.0, abs=1e-5)  # z is a distribution over categories
    for f in ("grad_magnitude.png", "grad_magnitude.json", "category_usage.png", "category_usage.json"):
        assert (tmp_path / "figures" / f).stat().st_size > 0


@pytest.mark.parametrize("cls,kwargs,match", [
    (TempMatch, {"gamma": -0.1, "updates_per_epoch": 8}, "gamma must be >= 0"),
    (TempMatch, {"tau": 0, "updates_per_epoch": 8}, "tau must be > 0"),
    (TempMatch, {"every_n_steps": 5, "total_updates": 10}, "exactly one schedule cadence.*set the others to null"),
    (DropResAnnealing, {"rate": -1, "every_n_steps": 1}, "rate"),
    (DropResAnnealing, {"alpha0": 1.5}, r"alpha0 must be in \[0, 1\]"),
    (DropResAnnealing, {"updates_per_epoch": 0}, "cadence updates_per_epoch must be > 0"),
])
def test_bad_trick_parameters_are_rejected_by_name(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_dropres_alpha0_offsets_the_schedule_and_rate_zero_keeps_it_fixed():
    comp = SimpleNamespace(alpha=None, set_alpha=lambda a: setattr(comp, "alpha", a))
    for kwargs, t, want in (({"rate": 0.1, "alpha0": 0.25}, 5, 0.75), ({"rate": 0.1, "alpha0": 0.5}, 9, 1.0),
                            ({"rate": 0.0, "alpha0": 0.3}, 1000, 0.3)):
        cb = DropResAnnealing(**kwargs, every_n_steps=1)
        cb.components = [comp]
        cb.apply(None, t)
        assert comp.alpha == pytest.approx(want)
    assert DropResAnnealing(rate=0.1, alpha0=0.2, total_updates=7).describe() == {
        "rate": 0.1, "alpha0": 0.2, "updates_per_epoch": None, "every_n_steps": None, "total_updates": 7}


def test_selection_checkpoint_keeps_step_interval_saves_and_a_fixed_state_key(tmp_path):
    from scgbench.callbacks import SelectionCheckpoint

    every4 = SelectionCheckpoint(tmp_path / "steps", filename="{step}", every_n_train_steps=4, save_top_k=-1)
    epochs = SelectionCheckpoint(tmp_path / "epochs", filename="{step}", save_top_k=-1)
    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(24, 3), torch.randn(24))
    trainer = pl.Trainer(max_steps=12, callbacks=[every4, epochs], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(TwoNodes(), DataLoader(ds, batch_size=4))  # 6 steps per epoch
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert names(tmp_path / "steps") == ["step=12.ckpt", "step=4.ckpt", "step=8.ckpt"]
    assert names(tmp_path / "epochs") == ["step=12.ckpt", "step=6.ckpt"]  # the per-step hook skipped, epochs kept
    assert every4.state_key is every4.state_key and every4.state_key.startswith("SelectionCheckpoint{")  # cached
    assert every4.state_key != epochs.state_key
