"""Timing of the disentanglement data and metrics on this machine.

    python -m scgbench.bench.disentanglement                 # render speed + MIG/DCI/SAP on codes
    python -m scgbench.bench.disentanglement --suite study   # + every metric on one model, study settings
    python -m scgbench.bench.disentanglement --suite quick   # + the suite with the quick preset

* render: dSprites (and variants) images per second, ``sample_observations_from_factors`` on 20,000 random
  factor vectors, best of ``--repeats``;
* codes: MIG, DCI and SAP (discrete mode, the study's) on 10,000 points × 10 codes × 5 factors (dSprites'
  factor sizes 3, 6, 40, 32, 32; DCI and SAP also draw the 5,000 test points), codes = a noisy
  D-VAE-like quantised mix of the factors;
* SAP against the reference: the discrete score matrix with disentanglement_lib's classifier
  (``LinearSVC(C=0.01, class_weight="balanced")``, today's sklearn default ``dual="auto"`` → primal, and the
  ``dual=True`` of the sklearn the reference was written for) against the exact solver of
  :mod:`scgbench.metrics.disentanglement.linear_svc_1d`, interleaved, on quantised (D-VAE-like) and
  continuous (Gaussian-like) codes: best-of wall seconds, the ratio, and the largest difference of the
  score matrices and of the SAP scores;
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
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ..datamodules.disentanglement import ColorDSprites, DSprites, NoisyDSprites, Circles
from ..metrics.disentanglement import dci_from_codes, evaluate_all, mig_from_codes, sap_from_codes
from ..metrics.disentanglement.sap_score import compute_avg_diff_top_two, compute_score_matrix


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


def synthetic_codes(n: int, seed: int, quantised: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """10 codes from 5 dSprites-sized factors: 5 noisy (partly mixed) factor codes, 5 nuisance codes; quantised
    to 64 levels like a D-VAE (else continuous, like a Gaussian VAE's means)."""
    rng = np.random.RandomState(seed)
    sizes = [3, 6, 40, 32, 32]
    f = np.stack([rng.randint(s, size=n) for s in sizes], axis=1)
    u = f / (np.array(sizes) - 1.0)
    codes = np.concatenate([u + 0.1 * rng.randn(n, 5) + 0.2 * np.roll(u, 1, axis=1), rng.randn(n, 5) * 0.3], axis=1)
    if not quantised:
        return codes, f
    levels = np.linspace(-1, 1, 64)
    codes = levels[np.clip(np.round((np.tanh(codes) + 1) / 2 * 63), 0, 63).astype(int)]
    return codes, f


def reference_sap_matrix(mus, ys, mus_test, ys_test, **svc) -> np.ndarray:
    """disentanglement_lib's discrete ``compute_score_matrix`` loop (sap_score.py), sklearn's LinearSVC."""
    score = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            clf = LinearSVC(C=0.01, class_weight="balanced", **svc)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(mus[i, :, np.newaxis], ys[j, :])
            score[i, j] = np.mean(clf.predict(mus_test[i, :, np.newaxis]) == ys_test[j, :])
    return score


def bench_sap(repeats: int = 3, seeds=(0, 1, 2)) -> list[dict]:
    """Per code set: seconds of the reference (dual auto / dual True) and of ours, interleaved, best of
    ``repeats``; the largest |Δ| of score-matrix entries and of SAP."""
    rows = []
    for quantised in (True, False):
        for seed in seeds:
            c, f = synthetic_codes(10000, 2 * seed, quantised)
            ct, ft = synthetic_codes(5000, 2 * seed + 1, quantised)
            args = (c.T, f.T, ct.T, ft.T)
            solvers = {"ours": lambda: compute_score_matrix(*args, continuous_factors=False),
                       "dlib_auto": lambda: reference_sap_matrix(*args),
                       "dlib_dual": lambda: reference_sap_matrix(*args, dual=True, random_state=0)}
            best, mats = {k: float("inf") for k in solvers}, {}
            for _ in range(repeats):
                for name, fn in solvers.items():
                    t0 = time.perf_counter()
                    mats[name] = fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
            sap = {k: compute_avg_diff_top_two(m) for k, m in mats.items()}
            row = {"codes": "quantised" if quantised else "continuous", "seed": seed,
                   **{f"{k}_s": v for k, v in best.items()}, **{f"sap_{k}": v for k, v in sap.items()}}
            for ref in ("dlib_auto", "dlib_dual"):
                row[f"speedup_vs_{ref}"] = best[ref] / best["ours"]
                row[f"max_matrix_diff_{ref}"] = float(np.abs(mats["ours"] - mats[ref]).max())
                row[f"sap_diff_{ref}"] = abs(sap["ours"] - sap[ref])
            rows.append(row)
    return rows


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
    parser.add_argument("--sap", action="store_true", help="only the SAP comparison with the reference's solver")
    args = parser.parse_args(argv)
    print(f"cpus available: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()}")
    for r in bench_sap(repeats=args.repeats):
        print(f"SAP discrete, {r['codes']:10s} codes seed {r['seed']}: ours {r['ours_s']:.2f} s, disentanglement_lib "
              f"{r['dlib_auto_s']:.2f} s (dual auto, {r['speedup_vs_dlib_auto']:.1f}x) / {r['dlib_dual_s']:.2f} s "
              f"(dual True, {r['speedup_vs_dlib_dual']:.1f}x); SAP {r['sap_ours']:.5f} vs {r['sap_dlib_auto']:.5f} / "
              f"{r['sap_dlib_dual']:.5f}; max |dS| {r['max_matrix_diff_dlib_auto']:.5f} / "
              f"{r['max_matrix_diff_dlib_dual']:.5f}", flush=True)
    if args.sap:
        return 0
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
