"""Timing of the disentanglement data and metrics on this machine.

    python -m scgbench.bench.disentanglement                 # render speed + MIG/DCI/SAP on codes
    python -m scgbench.bench.disentanglement --suite study   # + every metric on one model, study settings
    python -m scgbench.bench.disentanglement --suite quick   # + the suite with the quick preset

* render: dSprites (and variants) images per second, ``sample_observations_from_factors`` on 20,000 random
  factor vectors, best of ``--repeats``;
* codes: MIG, DCI and SAP (discrete mode, the study's) on 10,000 points × 10 codes × 5 factors (dSprites'
  factor sizes 3, 6, 40, 32, 32; DCI and SAP also draw the 5,000 test points), codes = a noisy
  D-VAE-like quantised mix of the factors;
* suite: ``evaluate_all`` on procedural dSprites with a stand-in "model" — a fixed random linear map of
  the image to 10 codes quantised to 64 levels in [−1, 1] (the layout of a D-VAE's MAP representation),
  so the time is the metrics' own cost (sampling, rendering, classifiers); a real encoder adds its
  forward passes (BetaVAE encodes 1.92 M images, FactorVAE 0.97 M, the others ≤ 40 k).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ..datamodules.disentanglement import ColorDSprites, DSprites, NoisyDSprites, Circles
from ..metrics.disentanglement import dci_from_codes, evaluate_all, mig_from_codes, sap_from_codes


def _timeit(fn, repeats: int) -> tuple[float, object]:
    """Best wall-clock seconds over ``repeats`` runs (and the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _cpu(fn):
    """(wall seconds, CPU seconds of this process incl. threads, result): CPU time is the load-independent figure
    on a shared machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def bench_render(n: int = 5000, repeats: int = 3) -> dict[str, float]:
    """Images per second (by wall clock and by CPU time) of ``sample_observations_from_factors``."""
    out = {}
    for ds in (DSprites(), ColorDSprites(), NoisyDSprites(), Circles()):
        f = ds.sample_factors(n, np.random.RandomState(0))
        runs = [_cpu(lambda: ds.sample_observations_from_factors(f, np.random.RandomState(1))) for _ in range(repeats)]
        out[ds.name] = (n / min(r[0] for r in runs), n / min(r[1] for r in runs))
    return out


def synthetic_codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 codes from 5 dSprites-sized factors: 5 noisy (partly mixed) factor codes, 5 nuisance codes; quantised
    to 64 levels like a D-VAE."""
    rng = np.random.RandomState(seed)
    sizes = [3, 6, 40, 32, 32]
    f = np.stack([rng.randint(s, size=n) for s in sizes], axis=1)
    u = f / (np.array(sizes) - 1.0)
    codes = np.concatenate([u + 0.1 * rng.randn(n, 5) + 0.2 * np.roll(u, 1, axis=1), rng.randn(n, 5) * 0.3], axis=1)
    levels = np.linspace(-1, 1, 64)
    codes = levels[np.clip(np.round((np.tanh(codes) + 1) / 2 * 63), 0, 63).astype(int)]
    return codes, f


def bench_codes(repeats: int = 1, n_jobs: int = 1) -> dict[str, float]:
    c, f = synthetic_codes(10000, 0)
    ct, ft = synthetic_codes(5000, 1)
    out = {}
    out["mig_s"], out["mig_cpu"], r = _cpu(lambda: mig_from_codes(c, f))
    out["mig"] = r["discrete_mig"]
    out["sap_s"], out["sap_cpu"], r = _cpu(lambda: sap_from_codes(c, f, ct, ft))
    out["sap"] = r["SAP_score"]
    out["sapc_s"], out["sapc_cpu"], r = _cpu(lambda: sap_from_codes(c, f, continuous_factors=True))
    out["sap_continuous"] = r["SAP_score"]
    out["dci_s"], out["dci_cpu"], r = _cpu(lambda: dci_from_codes(c, f, ct, ft, n_jobs=n_jobs))
    out["dci_disentanglement"] = r["disentanglement"]
    return out


def linear_model_representation(seed: int = 0):
    w = np.random.RandomState(seed).randn(64 * 64, 10).astype(np.float32) / 8.0
    levels = np.linspace(-1, 1, 64)

    def rep(obs: np.ndarray) -> np.ndarray:
        z = np.tanh(obs[..., 0].reshape(obs.shape[0], -1) @ w - 0.5)
        return levels[np.round((z + 1) / 2 * 63).astype(int)]

    return rep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["none", "study", "quick"], default="none")
    parser.add_argument("--metrics", default=None, help="comma-separated subset of the suite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel GBT fits (DCI) — same numbers; the CPU seconds printed then miss the workers' time")
    parser.add_argument("--skip-codes", action="store_true")
    args = parser.parse_args(argv)
    print(f"cpus available: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()}")
    for name, (wall, cpu) in bench_render(repeats=args.repeats).items():
        print(f"render {name:16s} {wall:8.0f} images/s wall, {cpu:8.0f} images per CPU-second")
    if not args.skip_codes:
        r = bench_codes(n_jobs=args.n_jobs)
        print("codes 10,000 x 10 codes x 5 factors (wall s / CPU s): "
              + ", ".join(f"{m} {r[k + '_s']:.2f} / {r[k + '_cpu']:.2f}" for m, k in
                          [("MIG", "mig"), ("SAP discrete", "sap"), ("SAP continuous", "sapc"), ("DCI", "dci")])
              + "  scores " + json.dumps({k: round(v, 4) for k, v in r.items() if not k.endswith(("_s", "_cpu"))}))
    if args.suite != "none":
        metrics = args.metrics.split(",") if args.metrics else None
        t0, c0 = time.perf_counter(), time.process_time()
        out = evaluate_all(DSprites(), linear_model_representation(), seed=0, metrics=metrics, preset=args.suite,
                           overrides={"dci": {"n_jobs": args.n_jobs}},
                           log=lambda s: print("  " + s, flush=True))
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"suite ({args.suite}) wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items())
              + f"; total {total:.1f} s wall, {cpu:.1f} s CPU; load average now {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
