"""Disentanglement metrics with the numerical definitions of google-research/disentanglement_lib
(SPEC §2.5; thesis §6.2, Locatello et al. 2019) — without TensorFlow.

Every metric has two entry points:

* ``compute_<metric>(ground_truth_data, representation_function, random_state, **params)`` samples its
  own points from a :class:`~scgbench.specs.disentanglement.GroundTruthData`, consuming a
  ``np.random.RandomState`` in the reference's order; defaults are the unsupervised-study settings;
* ``<metric>_from_codes(codes, factors, ...)`` scores given arrays (codes ``[n, num_codes]``, integer
  factors ``[n, num_factors]``).

``representation_function`` maps float32 observations ``[n, 64, 64, C]`` to codes ``[n, num_codes]``
(numpy or torch); :func:`torch_representation` wraps an encoder ``nn.Module`` for use from a callback.
:func:`evaluate_all` runs the suite, each metric with a fresh ``RandomState(seed)`` (the study's
``evaluation.random_seed``), and reports seconds per metric; :mod:`.callback` wraps it as a Lightning
callback and :mod:`scgbench.bench.disentanglement` times it.

Verification: on procedural dSprites, color-dSprites and noisy-dSprites with a fixed quantised
random-projection representation (and a collapsed code), every ``compute_*`` function here returned the
same numbers (max abs difference 4e-16) as a line-by-line transcription of the reference functions with
gin/TensorFlow removed, driven by the same ``RandomState(0)`` — MIG, SAP (both modes), BetaVAE, FactorVAE,
modularity/explicitness, DCI and downstream (LR and GBT, tree ``random_state`` pinned on both sides),
unsupervised scores (DCI and downstream then still used sklearn's GBT; the histogram GBT that both use now
equals sklearn's up to the tie-breaking sklearn leaves to its ``random_state``, see :mod:`.gbt`; discrete SAP
then used sklearn's LinearSVC, whose one-feature problems :mod:`.linear_svc_1d` now solves exactly). The deliberate deviations
(documented per module) only concern inputs on which the reference crashes or returns NaN (constant
codes, classes missing from a test sample) and pinned solver seeds where the reference used the global
numpy state.

Cost: the study settings are heavy by design. BetaVAE encodes 2 · 64 · 15,000 = 1.92 M images and
FactorVAE 0.97 M, so with a real encoder their time is dominated by its forward passes; DCI and the GBT
downstream task fit one ``GradientBoostingClassifier`` (100 stages × #classes trees) per factor on 10,000
points — minutes of sklearn for dSprites' 40- and 32-valued factors; both use the equivalent histogram
implementation :class:`~.gbt.QuantisedGBT` for quantised codes (DCI ~14 CPU-s). The six-metric suite on
the bench's stand-in model takes ~65 s on 2 cores (``python -m scgbench.bench.disentanglement``).
Use ``preset="quick"`` for monitoring.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .beta_vae import beta_vae_from_features, compute_beta_vae_sklearn
from .dci import completeness, compute_dci, dci_from_codes, disentanglement
from .downstream_task import compute_downstream_task, downstream_from_codes
from .factor_vae import compute_factor_vae
from .mig import compute_mig, mig_from_codes
from .modularity_explicitness import (compute_modularity_explicitness, modularity,
                                      modularity_explicitness_from_codes)
from .sap_score import compute_sap, sap_from_codes
from .unsupervised_metrics import (compute_unsupervised_metrics, gaussian_total_correlation,
                                   gaussian_wasserstein_correlation, unsupervised_from_codes)
from .utils import generate_batch_factor_code, histogram_discretize

#: metric name → (function, study-setting parameters, quick-setting parameters)
METRICS: dict[str, tuple[Callable[..., dict], dict[str, Any], dict[str, Any]]] = {
    "beta_vae": (compute_beta_vae_sklearn, dict(batch_size=64, num_train=10000, num_eval=5000),
                 dict(batch_size=64, num_train=1000, num_eval=500)),
    "factor_vae": (compute_factor_vae,
                   dict(batch_size=64, num_train=10000, num_eval=5000, num_variance_estimate=10000,
                        prune_threshold=0.05),
                   dict(batch_size=64, num_train=1000, num_eval=500, num_variance_estimate=2000,
                        prune_threshold=0.05)),
    "mig": (compute_mig, dict(num_train=10000, num_bins=20), dict(num_train=10000, num_bins=20)),
    "dci": (compute_dci, dict(num_train=10000, num_test=5000), dict(num_train=1000, num_test=500)),
    "modularity_explicitness": (compute_modularity_explicitness, dict(num_train=10000, num_test=5000, num_bins=20),
                                dict(num_train=10000, num_test=5000, num_bins=20)),
    "sap": (compute_sap, dict(num_train=10000, num_test=5000, continuous_factors=False),
            dict(num_train=10000, num_test=5000, continuous_factors=False)),
    "downstream_logistic_regression": (compute_downstream_task,
                                       dict(num_train=(100, 10000), num_test=5000, predictor="logistic_regression"),
                                       dict(num_train=(100, 1000), num_test=1000, predictor="logistic_regression")),
    "downstream_gradient_boosting": (compute_downstream_task,
                                     dict(num_train=(100, 10000), num_test=5000, predictor="gradient_boosting"),
                                     dict(num_train=(100, 1000), num_test=1000, predictor="gradient_boosting")),
    "unsupervised": (compute_unsupervised_metrics, dict(num_train=10000, num_bins=20),
                     dict(num_train=10000, num_bins=20)),
}

#: the six metrics of thesis Table 6.8 / Fig. 6.1
SIX_METRICS = ("beta_vae", "factor_vae", "mig", "dci", "modularity_explicitness", "sap")


def evaluate_all(ground_truth_data, representation_function, seed: int = 0, metrics=None, preset: str = "study",
                 overrides: dict[str, dict] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run several metrics; returns ``{metric: scores, "seconds": {metric: s}}``.

    ``preset="study"`` uses the unsupervised-study settings (what the reference computes); ``"quick"``
    keeps the definitions but uses fewer points for the slow, sampling-heavy metrics (BetaVAE,
    FactorVAE, DCI's trees, downstream 10,000) — for monitoring during training, not for reporting."""
    if preset not in ("study", "quick"):
        raise ValueError(f"preset must be 'study' or 'quick', got {preset!r}")
    names = list(metrics) if metrics is not None else list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise KeyError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    out: dict[str, Any] = {"seconds": {}}
    for name in names:
        fn, study, quick = METRICS[name]
        params = dict(study if preset == "study" else quick)
        params.update((overrides or {}).get(name, {}))
        t0 = time.perf_counter()
        out[name] = fn(ground_truth_data, representation_function, np.random.RandomState(seed), **params)
        out["seconds"][name] = time.perf_counter() - t0
        if log is not None:
            log(f"{name}: {out[name]} ({out['seconds'][name]:.1f} s)")
    return out


def torch_representation(encoder, device=None, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a torch encoder (NCHW float input → [n, num_codes] output, e.g. the MAP code of a D-VAE) as a
    numpy representation function on NHWC observations; runs in eval mode without gradients and restores
    the module's training flag afterwards."""
    import torch

    def fn(obs: np.ndarray) -> np.ndarray:
        was_training = encoder.training
        encoder.eval()
        dev = device if device is not None else next(encoder.parameters()).device
        outs = []
        try:
            with torch.no_grad():
                for s in range(0, obs.shape[0], batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(obs[s:s + batch_size].transpose(0, 3, 1, 2))).to(dev)
                    outs.append(encoder(x).float().cpu().numpy())
        finally:
            encoder.train(was_training)
        return np.concatenate(outs, axis=0)

    return fn


__all__ = [
    "METRICS", "SIX_METRICS", "evaluate_all", "torch_representation", "generate_batch_factor_code",
    "histogram_discretize", "compute_beta_vae_sklearn", "beta_vae_from_features", "compute_factor_vae",
    "compute_mig", "mig_from_codes", "compute_dci", "dci_from_codes", "disentanglement", "completeness",
    "compute_modularity_explicitness", "modularity_explicitness_from_codes", "modularity", "compute_sap",
    "sap_from_codes", "compute_downstream_task", "downstream_from_codes", "compute_unsupervised_metrics",
    "unsupervised_from_codes", "gaussian_total_correlation", "gaussian_wasserstein_correlation",
]
