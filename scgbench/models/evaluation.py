"""Evaluation helpers shared by the task modules: keyed sampling noise and logging of reduced metrics.

* :func:`eval_noise` keys the sampled-decoding noise of one evaluation batch by example, so that sampled
  metrics are a function of (run seed, evaluation set, example, node, call) only and do not depend on batch
  size, batch order, rank or world size (:mod:`scgbench.estimators.noise`).
* :func:`log_reduced` logs values that torchmetrics already reduced across DDP ranks.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from ..estimators import eval_noise_key, keyed_noise

#: evaluation stages, the first key of the evaluation-noise stream
VAL, TEST = 0, 1


def eval_noise(module: nn.Module, index: torch.Tensor, stage: int, dataloader_idx: int = 0):
    """Context: example ``index[b]`` of evaluation set (``stage``, ``dataloader_idx``) gets the same Gumbel
    noise in every estimator of ``module`` in any batch on any rank (run seed from ``PL_GLOBAL_SEED``). Wrap
    every evaluation forward in it; MAP decoding draws no noise."""
    return keyed_noise(module, index, eval_noise_key(stage, dataloader_idx))


def log_reduced(module: pl.LightningModule, values: dict, **kwargs) -> None:
    """Log values that are already reduced across DDP ranks (``torchmetrics`` ``compute()``: every rank holds
    the global value). ``sync_dist`` with ``max`` leaves identical values exact for any world size (a mean
    would recompute W·v / W) and tells Lightning the value is synced, so it does not warn."""
    for name, value in values.items():
        module.log(name, value, sync_dist=True, reduce_fx="max", **kwargs)
