"""Every private Lightning attribute and every jsonargparse internal the suite relies on, in one place.

Lightning's public API does not cover three small costs the suite removes from a training step, so it touches
these private names. ``tests/test_lightning_private.py`` checks each of them against the installed Lightning and
fails naming the one that disappeared; ``pyproject.toml`` bounds ``lightning`` to the tested minor versions.

* ``TQDMProgressBar._should_update(current, total)`` — the bar's redraw decision, overridden by
  :class:`scgbench.callbacks.ProgressBar` to redraw by time;
* ``ModelCheckpoint._every_n_train_steps`` / ``_train_time_interval`` — read by
  :class:`scgbench.callbacks.SelectionCheckpoint` to skip Lightning's per-step checks when it saves at validation
  end only;
* ``LightningModule._current_fx_name`` — set by Lightning around every hook call;
  :class:`scgbench.models.base.SCGModule` stores it without ``nn.Module.__setattr__``'s checks;
* ``LightningModule._trainer`` — ``None`` until the module is attached to a trainer; read directly in
  ``scgbench/models/base.py`` (the training step's hot path) and ``scgbench/models/listops.py``; everywhere else
  :func:`attached_trainer` asks through the public ``trainer`` property instead.

jsonargparse reports a bad option only as text: :func:`scgbench.config.explain` reads the key, the value and the
expected type out of the messages in :data:`JSONARGPARSE_MESSAGES` to print one line naming the option and the
fix. ``tests/test_jsonargparse_messages.py`` triggers each message through the suite's own parser and fails
naming the one whose text changed; ``pyproject.toml`` bounds ``jsonargparse`` to the tested major version.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

PRIVATE = {
    "lightning.pytorch.callbacks.TQDMProgressBar._should_update": "method",
    "lightning.pytorch.callbacks.ModelCheckpoint._every_n_train_steps": "instance attribute",
    "lightning.pytorch.callbacks.ModelCheckpoint._train_time_interval": "instance attribute",
    "lightning.pytorch.LightningModule._current_fx_name": "instance attribute",
    "lightning.pytorch.LightningModule._trainer": "instance attribute",
}

#: jsonargparse's error texts that :func:`scgbench.config.explain` parses: name → regular expression (groups are
#: what explain reads out of the text)
JSONARGPARSE_MESSAGES = {
    "unrecognized": r"unrecognized arguments: (--?[\w.\-]+)",            # an unknown --key on the command line
    "group_option": r"Group '(\w+)' does not accept option '([\w.]+)'",  # an unknown key in a --config file
    "linked": r"Linked \"([\w.]+)\" must be given via \"([\w.]+)\"",    # a link target set by hand
    "parser_key": r'Parser key "([\w.]+)":',                             # which key a type error is about
    "not_accepted": r"Option '(\w+)' is not accepted",                   # an unknown init arg of a trick
    "expected": r"Expected a <class '([\w.]+)'>",                        # the expected type(s)
    "given": r"(?:Given value|Got value): (.*)",                          # the value given
    "union": r"Union subtypes",                                           # a Union's errors, one "- " line each
    "class_path": r"Problem with given class_path",                       # a subclass that did not validate
}


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer ``module`` is attached to, or ``None`` (a bare module: Lightning's public ``trainer`` property
    raises ``RuntimeError`` then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def checkpoint_saves_on_steps(ckpt: ModelCheckpoint) -> bool:
    """Whether a ``ModelCheckpoint`` saves on training steps or time (else only at validation/epoch end)."""
    return ckpt._every_n_train_steps >= 1 or ckpt._train_time_interval is not None


def missing() -> list[str]:
    """The names of :data:`PRIVATE` that the installed Lightning no longer has."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    out = []
    if not callable(getattr(TQDMProgressBar, "_should_update", None)):
        out.append("lightning.pytorch.callbacks.TQDMProgressBar._should_update")
    ckpt = ModelCheckpoint()
    for name in ("_every_n_train_steps", "_train_time_interval"):
        if not hasattr(ckpt, name):
            out.append(f"lightning.pytorch.callbacks.ModelCheckpoint.{name}")
    module = pl.LightningModule()
    for name in ("_current_fx_name", "_trainer"):
        if not hasattr(module, name):
            out.append(f"lightning.pytorch.LightningModule.{name}")
    return out
