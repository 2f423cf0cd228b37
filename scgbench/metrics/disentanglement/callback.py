"""Lightning callback that scores a model's representation with the disentanglement metrics.

The model exposes its (MAP / mean) representation either as a method ``representation(x)`` (x: float
``[B, C, 64, 64]`` in [0, 1] → ``[B, num_codes]``) or through ``representation_fn=`` given here. The
ground-truth data come from the datamodule (:class:`~scgbench.datamodules.disentanglement.
DisentanglementDataModule`) unless ``data=`` is given. Metrics run on global rank 0 only (they sample
their own points, so no data is sharded) and the scalar results are logged as ``disent/<metric>/<key>``
and kept in ``self.results``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import numpy as np

from . import SIX_METRICS, evaluate_all, torch_representation


class DisentanglementMetrics(pl.Callback):
    def __init__(self, metrics: Sequence[str] = ("mig",), preset: str = "study", seed: int = 0,
                 every_n_epochs: int = 0, on_test: bool = True, data: Any = None,
                 representation_fn: Callable | None = None, overrides: dict | None = None) -> None:
        """``every_n_epochs`` > 0 also scores after every n-th validation epoch; ``metrics="six"`` selects the
        six metrics of thesis Table 6.8."""
        self.metrics = list(SIX_METRICS) if metrics == "six" else list(metrics)
        self.preset, self.seed, self.every_n_epochs, self.on_test = preset, seed, every_n_epochs, on_test
        self.data, self.representation_fn, self.overrides = data, representation_fn, overrides or {}
        self.results: dict[str, Any] = {}

    def _ground_truth(self, trainer):
        if self.data is not None:
            return self.data
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "ground_truth"):
            raise RuntimeError("DisentanglementMetrics needs data=GroundTruthData or a DisentanglementDataModule")
        return dm.ground_truth()

    def _representation(self, pl_module):
        if self.representation_fn is not None:
            return self.representation_fn
        if not hasattr(pl_module, "representation"):
            raise RuntimeError("DisentanglementMetrics: the model has no representation(x) method; pass "
                               "representation_fn=...")

        class _Enc:  # adapts the bound method to the nn.Module-like interface torch_representation expects
            training = pl_module.training

            def eval(self):
                pl_module.eval()

            def train(self, mode):
                pl_module.train(mode)

            def parameters(self):
                return pl_module.parameters()

            def __call__(self, x):
                return pl_module.representation(x)

        return torch_representation(_Enc())

    def compute(self, trainer, pl_module) -> dict[str, Any]:
        out = evaluate_all(self._ground_truth(trainer), self._representation(pl_module), seed=self.seed,
                           metrics=self.metrics, preset=self.preset, overrides=self.overrides)
        self.results = out
        return out

    def _run(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        out = self.compute(trainer, pl_module)
        for name in self.metrics:
            for key, value in out[name].items():
                if np.isscalar(value):
                    pl_module.log(f"disent/{name}/{key}", float(value), rank_zero_only=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._run(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.on_test:
            self._run(trainer, pl_module)
