"""The Lightning private attributes the suite relies on (scgbench/_lightning.py) still exist and still do what the
suite assumes: this test fails naming the one that changed when Lightning is upgraded."""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from scgbench import _lightning
from scgbench.callbacks import ProgressBar, SelectionCheckpoint


def test_every_private_name_exists():
    assert _lightning.missing() == [], f"Lightning {pl.__version__} lacks {_lightning.missing()}"


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)
        self.fx_names = set()

    def __setattr__(self, name, value):
        if name == "_current_fx_name" and value:
            self.__dict__.setdefault("fx_names", set()).add(value)
        super().__setattr__(name, value)

    def training_step(self, batch, i):
        return self.w(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_still_calls_them_as_the_suite_assumes(tmp_path):
    calls = []

    class CountingBar(ProgressBar):
        def _should_update(self, current, total):
            calls.append((current, total))
            return super()._should_update(current, total)

    model = _Tiny()
    ckpt = SelectionCheckpoint(tmp_path, monitor=None)
    trainer = pl.Trainer(max_steps=3, callbacks=[CountingBar(), ckpt], logger=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2))
    assert calls and all(t == 3 for _, t in calls)  # the bar asks once per step with (step, total)
    assert "training_step" in model.fx_names  # Lightning sets _current_fx_name around each hook
    assert not _lightning.checkpoint_saves_on_steps(ckpt)
    assert _lightning.checkpoint_saves_on_steps(SelectionCheckpoint(tmp_path, every_n_train_steps=2))
