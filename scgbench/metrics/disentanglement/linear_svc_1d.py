"""Exact one-feature ``LinearSVC`` for the discrete SAP score (Kumar et al. 2018, §3): every classifier of
the score matrix sees a single code, so its liblinear problem has two unknowns.

The problem is sklearn's ``LinearSVC(C, class_weight="balanced")`` (liblinear solver 1/2: L2 penalty,
squared hinge, one-vs-rest, the intercept a regularised weight on a constant feature 1 —
``intercept_scaling=1``). For class k with weights (w, b), positives P = {y = k}, negatives N:

    f(w, b) = ½ (w² + b²) + Σ_{i∈P} c⁺ max(0, 1 − (w xᵢ + b))² + Σ_{i∈N} c⁻ᵢ max(0, 1 + w xᵢ + b)²,

c⁺ = C·cw_k, c⁻ᵢ = C (liblinear's one-vs-rest weights only the positive class); with two classes one
problem, positive = the larger label, c⁺ = C·cw₁, c⁻ = C·cw₀; cw = n / (K · n_k) ("balanced").
f is convex, piecewise quadratic and C¹; its active sets are a prefix or a suffix of the sorted codes,
so with prefix sums of (1, x, x²) over all points and over each class's points a generalised-Newton step
with backtracking costs O(K log n) and the minimiser is found exactly (to rounding), where liblinear stops
at ``tol`` — the reason the scores equal sklearn's (primal and dual) only up to test points within the
solvers' tolerance of a decision boundary. Prediction: argmax of w x + b over classes (first on ties),
for two classes the larger label where w x + b > 0 — as ``LinearSVC.predict``.
"""

from __future__ import annotations

import numpy as np

_MAX_NEWTON = 100
_MAX_HALVINGS = 60


class _Problems:
    """The problems of one code: points sorted once; every problem's positives as keys q·(n+1) + position
    in one sorted array with prefix sums, so a range of positions sums in two ``searchsorted`` calls."""

    def __init__(self, xs: np.ndarray, member_q: np.ndarray, member_pos: np.ndarray, cp: np.ndarray,
                 cn: np.ndarray):
        n = xs.shape[0]
        self.xs, self.cp, self.cn = xs, cp, cn
        feats = np.stack([np.ones_like(xs), xs, xs * xs], axis=1)
        zero = np.zeros((1, 3))
        self.cum_all = np.concatenate([zero, np.cumsum(feats, axis=0)])
        keys = member_q.astype(np.int64) * (n + 1) + member_pos
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.cum_mem = np.concatenate([zero, np.cumsum(feats[member_pos[order]], axis=0)])
        self.offset = np.arange(cp.shape[0], dtype=np.int64) * (n + 1)

    def _members(self, lo, hi):
        a = np.searchsorted(self.keys, self.offset + lo)
        b = np.searchsorted(self.keys, self.offset + hi)
        return self.cum_mem[b] - self.cum_mem[a]

    def sums(self, w, b):
        """Weighted (1, x, x²) sums [P, 3] over the active positives and the active negatives."""
        lo, hi = _active(self.xs, w, b, 1.0)
        pos = self.cp[:, None] * self._members(lo, hi)
        lo, hi = _active(self.xs, w, b, -1.0)
        neg = self.cn[:, None] * (self.cum_all[hi] - self.cum_all[lo] - self._members(lo, hi))
        return pos, neg


def _active(xs: np.ndarray, w: np.ndarray, b: np.ndarray, level: float):
    """Sorted-position ranges [lo, hi) where ``s·(w x + b) < 1`` with s = +1 (level = 1, positives) or
    s = −1 (level = −1, negatives): w x < level − b for positives, w x > level − b for negatives."""
    n = xs.shape[0]
    sign = 1.0 if level > 0 else -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w != 0, (level - b) / w, 0.0)
    below = np.searchsorted(xs, t, side="left")   # #x < t
    above = np.searchsorted(xs, t, side="right")  # first x > t
    prefix = (sign * w) > 0  # the active side is x < t
    lo = np.where(prefix, 0, above)
    hi = np.where(prefix, below, n)
    flat = w == 0  # all active or none, by the sign of level − b
    lo = np.where(flat, 0, lo)
    hi = np.where(flat, np.where(sign * (level - b) > 0, n, 0), hi)
    return lo, hi


def _objective(problems: _Problems, w, b):
    P, N = problems.sums(w, b)
    one_m_b, one_p_b = 1.0 - b, 1.0 + b
    f = (0.5 * (w * w + b * b)
         + one_m_b * one_m_b * P[:, 0] - 2 * one_m_b * w * P[:, 1] + w * w * P[:, 2]
         + one_p_b * one_p_b * N[:, 0] + 2 * one_p_b * w * N[:, 1] + w * w * N[:, 2])
    return f, P, N


def _solve(problems: _Problems) -> tuple[np.ndarray, np.ndarray]:
    """Minimise every problem's f; returns (w, b) [P]."""
    num = problems.cp.shape[0]
    w, b = np.zeros(num), np.zeros(num)
    f, P, N = _objective(problems, w, b)
    todo = np.ones(num, dtype=bool)
    for _ in range(_MAX_NEWTON):
        gw = w - 2 * (P[:, 1] - w * P[:, 2] - b * P[:, 1]) + 2 * (N[:, 1] + w * N[:, 2] + b * N[:, 1])
        gb = b - 2 * (P[:, 0] - w * P[:, 1] - b * P[:, 0]) + 2 * (N[:, 0] + w * N[:, 1] + b * N[:, 0])
        hww = 1 + 2 * (P[:, 2] + N[:, 2])
        hwb = 2 * (P[:, 1] + N[:, 1])
        hbb = 1 + 2 * (P[:, 0] + N[:, 0])
        det = hww * hbb - hwb * hwb  # ≥ 1: the Hessian is I + PSD
        dw = -(hbb * gw - hwb * gb) / det
        db = -(hww * gb - hwb * gw) / det
        decrease = gw * dw + gb * db  # < 0 unless at the minimiser
        # Newton decrement below rounding: this problem is solved
        todo &= -decrease > 1e-13 * np.maximum(1.0, np.abs(f))
        if not todo.any():
            break
        step = np.where(todo, 1.0, 0.0)
        accepted = ~todo
        nw, nb, nf, nP, nN = w, b, f, P, N
        for _ in range(_MAX_HALVINGS):  # backtracking (Armijo) on the problems not yet accepted
            tw, tb = w + step * dw, b + step * db
            tf, tP, tN = _objective(problems, tw, tb)
            ok = ~accepted & (tf <= f + 1e-4 * step * decrease)
            nw, nb, nf = np.where(ok, tw, nw), np.where(ok, tb, nb), np.where(ok, tf, nf)
            nP, nN = np.where(ok[:, None], tP, nP), np.where(ok[:, None], tN, nN)
            accepted |= ok
            if accepted.all():
                break
            step = np.where(accepted, step, step * 0.5)
        todo &= accepted  # a problem whose step cannot decrease f further is at its minimiser (to rounding)
        w, b, f, P, N = nw, nb, nf, nP, nN
    return w, b


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, C: float = 0.01) -> np.ndarray:
    """For every column j of ``y_train`` [n, F]: ``LinearSVC(C=C, class_weight="balanced").fit(x_train[:, None],
    y_train[:, j]).predict(x_test[:, None])``, solved exactly; returns the predictions [m, F]."""
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    y_train = np.asarray(y_train)
    order = np.argsort(x_train, kind="stable")
    xs, n = x_train[order], x_train.shape[0]
    positions = np.arange(n)
    member_q, member_pos, cp, cn, factors = [], [], [], [], []
    for j in range(y_train.shape[1]):
        classes, y_idx = np.unique(y_train[:, j], return_inverse=True)
        k = classes.size
        if k < 2:
            raise ValueError(f"SAP (discrete): a classifier needs samples of at least 2 classes; factor {j} takes "
                             f"the single value {classes[0]!r} in the training sample (draw more points)")
        cw = n / (k * np.bincount(y_idx, minlength=k))  # class_weight="balanced"
        ys = y_idx[order]
        first = len(cp)
        if k == 2:  # one problem: positives classes[1], negatives classes[0], both weighted
            keep = ys == 1
            member_q.append(np.full(int(keep.sum()), first))
            member_pos.append(positions[keep])
            cp.append(C * cw[1])
            cn.append(C * cw[0])
        else:  # one-vs-rest; liblinear weights the positive class only
            member_q.append(first + ys)
            member_pos.append(positions)
            cp.extend(C * cw)
            cn.extend([C] * k)
        factors.append((classes, first, 1 if k == 2 else k))
    problems = _Problems(xs, np.concatenate(member_q), np.concatenate(member_pos), np.asarray(cp), np.asarray(cn))
    w, b = _solve(problems)
    decision = x_test[:, None] * w[None, :] + b[None, :]
    preds = []
    for classes, first, width in factors:
        d = decision[:, first:first + width]
        preds.append(classes[(d[:, 0] > 0).astype(int)] if width == 1 else classes[np.argmax(d, axis=1)])
    return np.stack(preds, axis=1)
