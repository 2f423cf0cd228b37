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
  :func:`attached_trainer` asks through the public ``trainer`` property instead;
* the loops' restart state — ``_FitLoop.restarted_on_epoch_end``, ``_TrainingEpochLoop.restarted_on_last``, the
  ``restarting`` setter, ``reset_restart_stage()`` and ``epoch_progress.increment_completed()`` — used by
  :func:`finish_restored_epoch` (called by :class:`scgbench.callbacks.RunCheckpoint` when a run resumes).
  Lightning 2.6 treats every ``max_steps`` run as iteration-based and "restarts" the epoch of a checkpoint saved
  at that epoch's end; unless a validation falls on the epoch's last batch, the restarted epoch loop is not done
  until validation has run, so it trains one more batch inside the finished epoch and calls the epoch-end hooks
  again: the resumed run is one step ahead of the uninterrupted one from then on (an epoch-based run resumes
  from such a checkpoint by starting the next epoch, which is what the function does).

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
    "lightning.pytorch.loops._FitLoop.restarted_on_epoch_end": "property",
    "lightning.pytorch.loops._TrainingEpochLoop.restarted_on_last": "property",
    "lightning.pytorch.loops._Loop.restarting": "property with setter",
    "lightning.pytorch.loops._Loop.reset_restart_stage": "method",
    "lightning.pytorch.loops._FitLoop.epoch_progress": "instance attribute (a _Progress)",
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


def finish_restored_epoch(trainer: pl.Trainer) -> bool:
    """On a resume from a checkpoint saved at an epoch's end (after its last batch and epoch-end hooks), go on
    as Lightning itself does for an epoch-based run in that state ("resumed on epoch end"): count the epoch as
    completed and leave the restart state, so the next epoch starts afresh (its start hooks, a new iterator).
    Returns whether it did (module docstring). Call it from ``on_train_start``, after Lightning set the loops'
    restart stages."""
    from lightning.pytorch.loops import _Loop

    fit = trainer.fit_loop
    if not (fit.restarted_on_epoch_end and fit.epoch_loop.restarted_on_last):
        return False
    fit.epoch_progress.increment_completed()
    # Not `fit.restarting = False`: _FitLoop's setter keeps an iteration-based run restarting. _Loop's own setter
    # clears the flag of the loop and of its child loops.
    _Loop.restarting.fset(fit, False)
    for loop in (fit, fit.epoch_loop, fit.epoch_loop.val_loop):
        loop.reset_restart_stage()
    return True


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
    from lightning.pytorch.loops import _FitLoop, _Loop, _TrainingEpochLoop

    for cls, name in ((_FitLoop, "restarted_on_epoch_end"), (_TrainingEpochLoop, "restarted_on_last"),
                      (_Loop, "restarting")):
        if not isinstance(getattr(cls, name, None), property):
            out.append(f"lightning.pytorch.loops.{cls.__name__}.{name}")
    if _Loop.restarting.fset is None:
        out.append("lightning.pytorch.loops._Loop.restarting (setter)")
    if not callable(getattr(_Loop, "reset_restart_stage", None)):
        out.append("lightning.pytorch.loops._Loop.reset_restart_stage")
    from lightning.pytorch.loops.progress import _Progress

    if not callable(getattr(_Progress, "increment_completed", None)):
        out.append("lightning.pytorch.loops.progress._Progress.increment_completed")
    fit = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False).fit_loop
    if not isinstance(getattr(fit, "epoch_progress", None), _Progress):
        out.append("lightning.pytorch.loops._FitLoop.epoch_progress")
    return out
