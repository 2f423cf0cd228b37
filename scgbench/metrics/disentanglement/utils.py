"""Shared pieces of the disentanglement metrics: sampling codes in disentanglement_lib's random order,
input validation, histogram discretisation and discrete mutual information.

Ported from google-research/disentanglement_lib ``evaluation/metrics/utils.py`` (Apache-2.0) with the
same numerical definitions; the per-sample Python loops of the reference are replaced by batched
rendering and ``bincount``-based contingency tables. Array layout follows the reference internally:
codes ``mus`` are ``[num_codes, num_points]`` and factors ``ys`` are ``[num_factors, num_points]``; the
public ``*_from_codes`` functions take the natural ``[num_points, num_codes]`` layout instead.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...specs.disentanglement import GroundTruthData, as_random_state, concat_nuisance

RepresentationFn = Callable[[np.ndarray], Any]

#: images rendered and encoded per call of the representation function
DEFAULT_CHUNK = 1024


# ------------------------------------------------------------------------------------------ validation
def check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Finite float64 array ``[num_points, num_codes]``; NaN/Inf or a wrong rank is an error."""
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_points, num_codes], got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least 2 points and 1 code, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(f"{name} contain {int(bad.sum())} NaN/Inf values (first at point {rows[0]}, code "
                         f"{cols[0]}); the representation is broken, refusing to score it")
    return arr


def check_factors(factors: Any, num_points: int | None = None, name: str = "factors") -> np.ndarray:
    """Integer factor indices ``[num_points, num_factors]``."""
    if hasattr(factors, "detach"):
        factors = factors.detach().cpu().numpy()
    arr = np.asarray(factors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_points, num_factors] of integer indices, got shape "
                         f"{arr.shape}")
    if num_points is not None and arr.shape[0] != num_points:
        raise ValueError(f"{name} have {arr.shape[0]} points but the codes have {num_points}; pass arrays of shape "
                         f"[num_points, num_factors] and [num_points, num_codes]")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be integer factor indices (as sample_factors returns), got non-integer "
                             f"values of dtype {arr.dtype}")
    return arr.astype(np.int64)


def check_nonconstant_factors(ys: np.ndarray, what: str) -> None:
    """Metrics that normalise by a factor's entropy or variance are undefined for a constant factor."""
    const = [j for j in range(ys.shape[0]) if np.all(ys[j] == ys[j, 0])]
    if const:
        raise ValueError(f"{what}: factor(s) {const} take a single value in the sample, so the score is undefined "
                         f"(division by zero entropy/variance); use more points or drop those factors")


# ----------------------------------------------------------------------------------------- sampling
def draw_factor_batches(data: GroundTruthData, num_points: int, rng: np.random.RandomState,
                        batch_size: int) -> tuple[np.ndarray, list[Any]]:
    """Draw factors and observation randomness in mini-batches of ``batch_size`` exactly as
    ``generate_batch_factor_code`` consumes the random stream (one ``sample`` call per batch)."""
    factors, nuisance = [], []
    i = 0
    while i < num_points:
        k = min(num_points - i, batch_size)
        f = data.sample_factors(k, rng)
        factors.append(f)
        nuisance.append(data.draw_nuisance(f, rng))
        i += k
    return np.concatenate(factors, axis=0), nuisance


def _slice_nuisance(nuis: Any, start: int, stop: int) -> Any:
    if nuis is None:
        return None
    if isinstance(nuis, tuple):
        return tuple(_slice_nuisance(p, start, stop) for p in nuis)
    return nuis[start:stop]


def represent(data: GroundTruthData, representation_function: RepresentationFn, factors: np.ndarray,
              nuisance: Any, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Render ``factors`` (with their drawn ``nuisance``) and encode them ``chunk`` images at a time;
    returns validated codes ``[n, num_codes]``."""
    n = factors.shape[0]
    out = []
    for s in range(0, n, chunk):
        obs = data.render(factors[s:s + chunk], _slice_nuisance(nuisance, s, s + chunk))
        rep = representation_function(obs)
        if hasattr(rep, "detach"):
            rep = rep.detach().cpu().numpy()
        rep = np.asarray(rep)
        if rep.ndim != 2 or rep.shape[0] != obs.shape[0]:
            raise ValueError(f"representation_function must map [n, 64, 64, C] observations to [n, num_codes], got "
                             f"{rep.shape} for {obs.shape[0]} observations")
        out.append(rep)
    return check_codes(np.concatenate(out, axis=0), "representations")


def generate_batch_factor_code(data: GroundTruthData, representation_function: RepresentationFn, num_points: int,
                               random_state: Any, batch_size: int = 16,
                               chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[num_codes, num_points]`` and factors ``[num_factors, num_points]`` of ``num_points`` samples,
    the random stream consumed in ``batch_size`` steps like the reference."""
    rng = as_random_state(random_state)
    factors, nuisance = draw_factor_batches(data, int(num_points), rng, int(batch_size))
    codes = represent(data, representation_function, factors, concat_nuisance(nuisance), chunk)
    return codes.T, factors.T


# ------------------------------------------------------------------------------- discretisation / MI
def histogram_discretize(target: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per row: ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` — bins 1..num_bins of equal width
    between the row's min and max (reference ``_histogram_discretize``; same dtype as the input)."""
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):  # one histogram per code
        edges = np.histogram_bin_edges(target[i, :], num_bins)
        discretized[i, :] = np.digitize(target[i, :], edges[:-1])
    return discretized


def _labels(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense label ids per row and the number of distinct labels of each row."""
    ids = np.empty(rows.shape, dtype=np.int64)
    counts = np.empty(rows.shape[0], dtype=np.int64)
    for i in range(rows.shape[0]):
        uniq, inv = np.unique(rows[i], return_inverse=True)
        ids[i] = inv.reshape(-1)
        counts[i] = uniq.size
    return ids, counts


def _mi_from_contingency(joint: np.ndarray) -> float:
    """Mutual information (nats) of a contingency table, computed like sklearn's ``mutual_info_score``."""
    total = joint.sum()
    pi = joint.sum(axis=1)
    pj = joint.sum(axis=0)
    if pi.size == 1 or pj.size == 1 or (pi > 0).sum() == 1 or (pj > 0).sum() == 1:
        return 0.0
    nzx, nzy = np.nonzero(joint)
    nz = joint[nzx, nzy].astype(np.float64)
    log_nz = np.log(nz)
    c = nz / total
    outer = pi[nzx].astype(np.float64) * pj[nzy].astype(np.float64)
    log_outer = -np.log(outer) + np.log(pi.sum()) + np.log(pj.sum())
    mi = c * (log_nz - np.log(total)) + c * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def discrete_mutual_info(mus: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``m[i, j] = I(mus_i; ys_j)`` in nats for discrete rows (reference ``discrete_mutual_info``), with
    contingency tables from one ``bincount`` per pair instead of per-sample loops."""
    a, ka = _labels(mus)
    b, kb = _labels(ys)
    m = np.zeros((mus.shape[0], ys.shape[0]))
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            joint = np.bincount(a[i] * kb[j] + b[j], minlength=ka[i] * kb[j]).reshape(ka[i], kb[j])
            m[i, j] = _mi_from_contingency(joint)
    return m


def discrete_entropy(ys: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row, i.e. ``I(y; y)`` (reference ``discrete_entropy``)."""
    b, kb = _labels(ys)
    h = np.zeros(ys.shape[0])
    for j in range(ys.shape[0]):
        h[j] = _mi_from_contingency(np.diag(np.bincount(b[j], minlength=kb[j])))
    return h


def normalize_data(data: np.ndarray, mean: np.ndarray | None = None, stddev: np.ndarray | None = None):
    """Standardise rows (reference ``normalize_data``). A constant code (std 0) would divide 0 by 0 in the
    reference; here its standardised value is 0 (std treated as 1) and it carries no information."""
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
    safe = np.where(stddev > 0, stddev, 1.0)
    return (data - mean[:, np.newaxis]) / safe[:, np.newaxis], mean, stddev


def codes_to_reference_layout(codes: Any, factors: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``[n, d]`` codes and ``[n, F]`` factors; return reference layout ``[d, n]``, ``[F, n]``."""
    c = check_codes(codes, f"{what}: codes")
    f = check_factors(factors, c.shape[0], f"{what}: factors")
    return c.T, f.T
