"""Every private Lightning attribute the suite relies on, in one place.

Lightning's public API does not cover three small costs the suite removes from a training step, so it touches
these private names. ``tests/test_lightning_private.py`` checks each of them against the installed Lightning and
fails naming the one that disappeared; ``pyproject.toml`` bounds ``lightning`` to the tested minor versions.

* ``TQDMProgressBar._should_update(current, total)`` — the bar's redraw decision, overridden by
  :class:`scgbench.callbacks.ProgressBar` to redraw by time;
* ``ModelCheckpoint._every_n_train_steps`` / ``_train_time_interval`` — read by
  :class:`scgbench.callbacks.SelectionCheckpoint` to skip Lightning's per-step checks when it saves at validation
  end only;
* ``LightningModule._current_fx_name`` — set by Lightning around every hook call;
  :class:`scgbench.models.base.SCGModule` stores it without ``nn.Module.__setattr__``'s checks.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

PRIVATE = {
    "lightning.pytorch.callbacks.TQDMProgressBar._should_update": "method",
    "lightning.pytorch.callbacks.ModelCheckpoint._every_n_train_steps": "instance attribute",
    "lightning.pytorch.callbacks.ModelCheckpoint._train_time_interval": "instance attribute",
    "lightning.pytorch.LightningModule._current_fx_name": "instance attribute",
}


def checkpoint_saves_on_steps(ckpt: ModelCheckpoint) -> bool:
    """Whether a ``ModelCheckpoint`` saves on training steps or time (else only at validation/epoch end)."""
    return ckpt._every_n_train_steps >= 1 or ckpt._train_time_interval is not None


def missing() -> list[str]:
    """The names of :data:`PRIVATE` that the installed Lightning no longer has."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import TQDMProgressBar

    out = []
    if not callable(getattr(TQDMProgressBar, "_should_update", None)):
        out.append("lightning.pytorch.callbacks.TQDMProgressBar._should_update")
    ckpt = ModelCheckpoint()
    for name in ("_every_n_train_steps", "_train_time_interval"):
        if not hasattr(ckpt, name):
            out.append(f"lightning.pytorch.callbacks.ModelCheckpoint.{name}")
    if not hasattr(pl.LightningModule(), "_current_fx_name"):
        out.append("lightning.pytorch.LightningModule._current_fx_name")
    return out
