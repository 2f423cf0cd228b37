"""Exact, vectorised re-implementation of sklearn's ``GradientBoostingClassifier()`` for quantised features.

DCI (and disentanglement_lib) fits one ``GradientBoostingClassifier()`` per ground-truth factor; with
dSprites' 3-, 6-, 40-, 32- and 32-valued factors that is 100 stages × 113 depth-3 regression trees on
10,000 points — ~150 CPU-s of sklearn's sample-by-sample splitter. :class:`QuantisedGBT` computes the same
model from histograms: the codes of a D-VAE (and of most representations worth scoring) take few distinct
values per dimension, so the best split of a node is found exactly from per-(node, tree, feature,
distinct value) sums of residuals and counts. One stage's K class trees only depend on the stage's
gradient, so they are grown together, one depth level at a time; a level's histograms for all nodes × K
trees come out of one sparse product ``onehot(X)ᵀ @ R`` (R: residuals, resp. float32 indicators, of the
left children; right children = parent − left). ~10× less CPU than sklearn on the DCI codes of
``scgbench.bench.disentanglement``.

What is reproduced (sklearn 1.9.1 ``ensemble/_gb.py``, ``tree/_splitter.pyx``, ``_criterion.pyx``,
``_tree.pyx``, ``_partitioner.pyx``), for ``loss="log_loss"``, ``subsample=1``, ``min_samples_split=2``,
``min_samples_leaf=1``, ``min_impurity_decrease=0``, ``max_features=None``, no sample weights, and the
``n_estimators``, ``learning_rate``, ``max_depth`` (≤ 6) given:

* X is cast to float32; labels are encoded by ``np.unique``; binary problems get one tree per stage
  (``HalfBinomialLoss``), K ≥ 3 classes K trees (``HalfMultinomialLoss``);
* initial raw predictions: the ``DummyClassifier(strategy="prior")`` probabilities through the loss' link
  (sklearn's own ``_init_raw_predictions``); each stage's negative gradient comes from sklearn's loss
  object, computed once for all K trees;
* regression trees (the ``criterion="squared_error"`` trees of sklearn ≥ 1.9; older versions' Friedman
  MSE proxy ``n·(this proxy) − S²`` ranks a node's splits the same way), best splitter, to ``max_depth``:
  a node is a leaf at max depth, with < 2 samples, or when its impurity (variance ``Σg²/n − (Σg/n)²``) is
  ≤ ``EPSILON`` (float64 eps); otherwise it takes the split maximising ``S_L²/n_L + S_R²/n_R`` over all
  features and all boundaries between consecutive distinct values present in the node, with threshold
  ``v_left/2 + v_right/2`` (float64 of the float32 values); a feature constant in the node offers no
  split. ``min_impurity_decrease=0`` never stops a split (the gain is ≥ 0 up to rounding; sklearn allows
  ``−EPSILON``);
* leaf values: one Newton step ``mean(g) / mean(p(1 − p))`` with ``p = y − g`` (g the negative gradient),
  times ``(K − 1)/K`` for multiclass, 0 when the denominator is < 1e-150; raw predictions += learning
  rate · leaf value, stage by stage (also in ``predict``, as sklearn's ``predict_stages``);
* ``feature_importances_``: per tree Σ over splits of ``n_t·imp_t − n_L·imp_L − n_R·imp_R``, / n,
  averaged over the trees whose root was split, normalised to sum 1 (zeros if none was);
* ``predict``: argmax of the raw predictions (binary: raw ≥ 0); ``decision_function``: the raw predictions.

Equality: on data without tied splits the trees are sklearn's and importances / raw predictions agree to
~1e-14 (sums are accumulated in another order, so not bit for bit); predictions are identical
(``tests/test_disentanglement_gbt.py``). Two things are not reproducible by any re-implementation:

* exact ties — several candidate splits with the same proxy (within a bound on both implementations'
  summation rounding): two codes isolating the same few points of a tiny node, duplicated codes, or
  at stage 0 (two-valued residuals) different points with the same class. sklearn keeps the first one in
  its random feature order (``random_state``) — or whichever rounding favours — so its own result moves
  with the seed; here the tie is broken by a random feature order drawn from ``random_state`` (then the
  lowest threshold). Same-partition ties (the common kind in later stages) leave the fit on the training
  data unchanged and only move a tiny node's importance between codes (and may send held-out points that
  fall between the two codes' thresholds elsewhere). ``tied_nodes_`` [stage, tree] counts them. On
  the codes of ``scgbench.bench.disentanglement`` ~20% of the 40-class trees have one; the DCI importance
  matrix then differs from sklearn's (``random_state=0``) by ≤ 2.5e-3 and the DCI score by 1.3e-4 — sklearn with
  ``random_state=1`` instead differs by 2.4e-3 and 1.3e-3;
* pure nodes: a node whose residuals are all equal has impurity 0, where sklearn may compute ±1e-13 (its
  right-child Σg² is a difference of the parent's and left child's) and split it on rounding noise —
  same fitted values, importance ~1e-16.

Fallback: features with more than ``max_bins`` (256) distinct float32 values, distinct values within
sklearn's ``FEATURE_THRESHOLD`` (1e-7, which its splitter never separates), non-finite X,
non-classification y, fewer than 1,000 samples, ``max_depth`` > 6, more than 2^24 samples, or a sklearn without the private loss
helpers make ``fit`` use sklearn's ``GradientBoostingClassifier`` with the same hyperparameters
(``fallback_reason_`` says why; ``None`` on the fast path).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.utils import check_random_state

try:  # private helpers of the installed sklearn: the same init and gradients, bit for bit
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble._gb import _init_raw_predictions
    from sklearn.utils.multiclass import type_of_target
    _SKLEARN_HELPERS = True
except ImportError:  # pragma: no cover - other sklearn layouts: always fall back
    _SKLEARN_HELPERS = False

FEATURE_THRESHOLD = np.float32(1e-7)  # sklearn tree/_partitioner.pxd
EPSILON = np.finfo(np.float64).eps  # sklearn tree/_tree.pyx
MAX_BINS = 256
# Below this many samples sklearn is fitted itself: it is fast there, and tiny training sets (the downstream
# task's 10- and 100-point fits) are full of exact ties whose outcome follows sklearn's summation rounding —
# e.g. at 10 points sklearn picks the same one of two tied codes for every seed, a random order would not.
MIN_FAST_SAMPLES = 1000
MAX_DEPTH = 6  # the level histograms have 2^depth · K columns
RIGHT_TABLE_BYTES = 1 << 27


class QuantisedGBT:
    """``GradientBoostingClassifier(n_estimators, learning_rate, max_depth, random_state)`` (other
    hyperparameters at their defaults) computed from value histograms when every feature has at most
    ``max_bins`` distinct values; otherwise sklearn's estimator is fitted (see the module docstring).

    ``random_state`` (int, RandomState or None as in sklearn) draws the feature orders that break exactly
    tied splits — the only use sklearn makes of it with these settings. Attributes after ``fit``:
    ``classes_``, ``feature_importances_``, ``train_raw_predictions_`` (= ``decision_function(X_train)``
    in sklearn's 2-d layout, kept from the fit), ``fallback_reason_``, ``tied_nodes_`` / ``n_tied_nodes_``
    (``None`` on the fallback).
    """

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.1, max_depth: int = 3,
                 random_state=None, max_bins: int = MAX_BINS):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.random_state = random_state
        self.max_bins = max_bins

    # ------------------------------------------------------------------------------------------ fit
    def _sklearn(self) -> GradientBoostingClassifier:
        return GradientBoostingClassifier(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                          max_depth=self.max_depth, random_state=self.random_state)

    def _bins(self, X32: np.ndarray):
        """(codes [n, F] int, values [F, max_bins_used] float64) or a reason string for the fallback."""
        n, F = X32.shape
        codes = np.empty((n, F), dtype=np.intp)
        uniques = []
        for j in range(F):
            u, inv = np.unique(X32[:, j], return_inverse=True)
            if u.size > self.max_bins:
                return f"feature {j} has {u.size} > max_bins={self.max_bins} distinct values"
            if u.size > 1 and not np.all(u[1:] > u[:-1] + FEATURE_THRESHOLD):  # float32 arithmetic as sklearn
                return f"feature {j} has distinct values closer than FEATURE_THRESHOLD"
            codes[:, j] = inv.reshape(-1)
            uniques.append(u)
        width = max(u.size for u in uniques)
        values = np.zeros((F, width), dtype=np.float64)
        for j, u in enumerate(uniques):
            values[j, :u.size] = u
        return codes, values

    def fit(self, X, y) -> QuantisedGBT:
        self.fallback_reason_ = reason = self._check(X, y)
        if reason is None:
            X32 = np.asarray(X, dtype=np.float32)
            if not np.all(np.isfinite(X32)):
                reason = "X has non-finite values (as float32)"
            else:
                bins = self._bins(X32)
                if isinstance(bins, str):
                    reason = bins
        if reason is not None:
            self.fallback_reason_ = reason
            self.n_tied_nodes_ = self.tied_nodes_ = None
            self._sk = self._sklearn().fit(X, y)
            self.classes_ = self._sk.classes_
            self.n_features_in_ = self._sk.n_features_in_
            self.feature_importances_ = self._sk.feature_importances_
            self.train_raw_predictions_ = self._sk._raw_predict(np.asarray(X, dtype=np.float32))
            return self
        self._sk = None
        self._fit_fast(X32, np.asarray(y), *bins)
        return self

    def _check(self, X, y):
        if not _SKLEARN_HELPERS:
            return "sklearn private helpers unavailable"
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0 or X.shape[1] == 0:
            return "not a 2-d X with a matching 1-d y"
        if X.shape[0] >= 2 ** 24 or X.shape[0] * (X.shape[1] * self.max_bins + 1) >= 2 ** 31:
            return "too many samples (float32 counts, int32 indices)"
        if X.shape[0] < MIN_FAST_SAMPLES:
            return f"{X.shape[0]} < {MIN_FAST_SAMPLES} samples (sklearn is quick there and its ties are its own)"
        if X.dtype.kind not in "biuf":
            return "X is not numeric"
        if type_of_target(y) not in ("binary", "multiclass") or np.unique(y).size < 2:
            return "y is not a classification target with >= 2 classes"
        if not (isinstance(self.max_depth, (int, np.integer)) and 1 <= self.max_depth <= MAX_DEPTH) \
                or self.n_estimators < 1:
            return f"unsupported hyperparameters (fast path: 1 <= max_depth <= {MAX_DEPTH})"
        return None

    def _fit_fast(self, X32: np.ndarray, y: np.ndarray, codes: np.ndarray, values: np.ndarray) -> None:
        n, F = X32.shape
        self.n_features_in_ = F
        self.classes_, yenc = np.unique(y, return_inverse=True)
        yenc = yenc.reshape(-1)
        n_classes = self.classes_.size
        K = 1 if n_classes == 2 else n_classes
        yf = yenc.astype(np.float64)
        self._loss = HalfBinomialLoss() if K == 1 else HalfMultinomialLoss(n_classes=n_classes)
        self._init = DummyClassifier(strategy="prior").fit(X32, yf)
        raw = np.array(_init_raw_predictions(X32, self._init, self._loss, True), dtype=np.float64, order="C")
        # targets y_k of the K trees (the 0/1 class indicators; the encoded labels for binary)
        Y = yf[:, None] if K == 1 else (yenc[:, None] == np.arange(K)[None, :]).astype(np.float64)

        D, MB = self.max_depth, values.shape[1]
        M = 2 ** (D + 1) - 1  # heap slots of a complete depth-D tree: children of s are 2s+1, 2s+2
        B = F * MB
        rows = (np.arange(F)[None, :] * MB + codes).reshape(-1)
        onehot_t = sp.csr_matrix((np.ones(n * F), (rows, np.repeat(np.arange(n), F))), shape=(B, n))
        onehot_t.sum_duplicates()
        right = None  # [n, B] table of [code_ij > b] at column j·MB + b, when it is small enough
        if n * B <= RIGHT_TABLE_BYTES:
            right = (codes[:, :, None] > np.arange(MB)[None, None, :]).reshape(-1)
        ctx = dict(n=n, F=F, K=K, D=D, M=M, MB=MB, B=B, values=values, onehot_t=onehot_t,
                   onehot_t32=onehot_t.astype(np.float32),
                   counts0=np.bincount(rows, minlength=B).astype(np.float32),
                   codes_flat=codes.reshape(-1).astype(np.int32),
                   code_off=(np.arange(n, dtype=np.int32) * F)[:, None],
                   right=right, right_off=(np.arange(n, dtype=np.int32) * B)[:, None] if right is not None else None,
                   tmp=(np.empty((n, K), dtype=np.int32), np.empty((n, K), dtype=np.int32)),
                   ar_k=np.arange(K, dtype=np.int32), buf=np.empty(n * 2 ** (D - 2) * K) if D > 1 else None,
                   buf32=np.empty(n * 2 ** (D - 2) * K, dtype=np.float32) if D > 1 else None,
                   rng=check_random_state(self.random_state))

        S = self.n_estimators
        feat = np.full((S, K, M), -1, dtype=np.int32)
        thr = np.full((S, K, M), np.inf)
        split = np.zeros((S, K, M), dtype=bool)
        value = np.zeros((S, K, M))
        imp_sum, n_relevant = np.zeros(F), 0
        self.tied_nodes_ = np.zeros((S, K), dtype=np.intp)  # nodes whose best split was tied, per tree
        mc = (K - 1) / K
        for s in range(S):
            neg_g = -self._loss.gradient(y_true=yf, raw_prediction=raw, sample_weight=None)
            g = np.ascontiguousarray(neg_g.reshape(n, K))
            ctx["tied"] = self.tied_nodes_[s]
            key, node_n, node_s, imps = self._grow(ctx, g, feat[s], thr[s], split[s])
            # leaf values: one Newton step per leaf (sklearn's _update_terminal_regions)
            prob = Y - g
            hess = np.bincount(key.reshape(-1), (prob * (1 - prob)).reshape(-1), minlength=M * K).reshape(M, K)
            with np.errstate(divide="ignore", invalid="ignore"):
                num = node_s / node_n
                if K > 1:
                    num *= mc
                den = hess / node_n
                val = np.where((node_n > 0) & (np.abs(den) >= 1e-150), num / den, 0.0)
            value[s] = val.T
            raw += self.learning_rate * np.take(val, key)
            rel = split[s, :, 0]
            imp_sum += imps[rel].sum(axis=0)
            n_relevant += int(rel.sum())
        self._trees = (feat, thr, split, value)
        self.n_tied_nodes_ = int(self.tied_nodes_.sum())
        self.train_raw_predictions_ = raw
        if n_relevant == 0:
            self.feature_importances_ = np.zeros(F)
        else:
            avg = imp_sum / n_relevant
            self.feature_importances_ = avg / np.sum(avg)
        self._prepare_predict()

    def _grow(self, c: dict, g: np.ndarray, feat, thr, split):
        """Grow the K regression trees of one stage on the negative gradients ``g`` [n, K], level by level.
        Fills ``feat``/``thr``/``split`` [K, M] (heap slots) and returns (node key ``slot·K + k`` of every
        sample in every tree [n, K], leaf sample counts and residual sums [M, K] — zero for split nodes —,
        unnormalised importances [K, F]). Node arrays are slot-major [M, K] so that the long axis of the
        [n, ·, K] temporaries is innermost."""
        n, F, K, D, M, MB, B = c["n"], c["F"], c["K"], c["D"], c["M"], c["MB"], c["B"]
        values, onehot_t, ar_k = c["values"], c["onehot_t"], c["ar_k"]
        key = np.broadcast_to(ar_k, (n, K))  # slot 0
        gg = g * g
        node_n = np.zeros((M, K))
        node_s = np.zeros((M, K))
        node_q = np.zeros((M, K))
        node_imp = np.zeros((M, K))
        node_n[0] = n
        node_s[0] = g.sum(axis=0)  # sequential over the samples, like sklearn's root
        node_q[0] = gg.sum(axis=0)
        node_imp[0] = node_q[0] / n - (node_s[0] / n) ** 2
        r_max = np.abs(g).max(axis=0)
        a_root = np.sqrt(n * node_q[0])  # ≥ Σ|g| (Cauchy–Schwarz)
        importances = np.zeros((K, F))
        is_split = np.zeros((M, K), dtype=bool)
        hist_s = hist_c = None
        for d in range(D):
            lo, L = 2 ** d - 1, 2 ** d
            lvl = slice(lo, lo + L)
            nn = node_n[lvl]  # [L, K]
            active = (nn >= 2) & (node_imp[lvl] > EPSILON)
            if not active.any():
                break
            # ---- histograms [B, L, K] of residual sums and sample counts
            if d == 0:
                hist_s = (onehot_t @ g)[:, None, :]
                hist_c = c["counts0"][:, None, None]
            else:
                half = L // 2
                # left children: residuals (float64) and indicators (float32: exact counts, half the traffic)
                Rs = c["buf"][:n * half * K].reshape(n, half, K)
                Rc = c["buf32"][:n * half * K].reshape(n, half, K)
                target = (lo + 2 * np.arange(half, dtype=np.int32))[:, None] * K + ar_k
                for p in range(half):
                    np.equal(key, target[p], out=Rc[:, p], casting="unsafe")
                    np.multiply(g, Rc[:, p], out=Rs[:, p])
                Hs = (onehot_t @ Rs.reshape(n, -1)).reshape(B, half, K)
                Hc = (c["onehot_t32"] @ Rc.reshape(n, -1)).reshape(B, half, K)
                new_s = np.empty((B, L, K))
                new_c = np.empty((B, L, K), dtype=np.float32)
                new_s[:, 0::2] = Hs
                np.subtract(hist_s, Hs, out=new_s[:, 1::2])
                new_c[:, 0::2] = Hc
                np.subtract(hist_c, Hc, out=new_c[:, 1::2])
                hist_s, hist_c = new_s, new_c
            # ---- best split of every (node, tree) column
            C = L * K
            cols = np.arange(C)
            hs = hist_s.reshape(F, MB, C)
            hc = hist_c.reshape(F, MB, -1)
            sum_l = np.cumsum(hs, axis=1)
            n_l = np.cumsum(hc, axis=1)
            n_r = nn.reshape(C) - n_l
            sum_r = node_s[lvl].reshape(C) - sum_l
            valid = (hc > 0) & (n_r > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                proxy = sum_l * sum_l / n_l + sum_r * sum_r / n_r
            proxy = np.where(valid, proxy, -np.inf).reshape(B, C)
            best = np.argmax(proxy, axis=0)  # first maximum: lowest feature, then lowest threshold
            bp = proxy[best, cols]
            do = active.reshape(C) & np.isfinite(bp)
            if not do.any():
                break
            # ---- exact ties (up to a bound on both implementations' rounding): sklearn keeps the first one
            # in its random feature order (then the lowest threshold); a seeded random order here
            with np.errstate(invalid="ignore"):
                tau = 32 * EPSILON * np.tile(r_max, L) * ((nn.reshape(C) + 2) * np.sqrt(nn * node_q[lvl]).reshape(C)
                                                          + (4 * np.tile(a_root, L) if d else 0)) \
                    + 16 * EPSILON * np.abs(bp)
            near = proxy >= (bp - tau)[None, :]
            for col in np.flatnonzero(do & (near.sum(axis=0) > 1)):
                cand = np.flatnonzero(near[:, col])
                rank = np.argsort(c["rng"].permutation(F))  # visiting position of each feature
                best[col] = cand[np.lexsort((cand, rank[cand // MB]))[0]]
                c["tied"][col % K] += 1
            do = np.flatnonzero(do)
            bd = best[do]
            j, b = np.divmod(bd, MB)
            present = (hc[j, :, do if hc.shape[2] > 1 else 0] > 0) & (np.arange(MB)[None, :] > b[:, None])
            b_next = np.argmax(present, axis=1)
            l_do, k_do = np.divmod(do, K)
            s_do = lo + l_do
            feat[k_do, s_do] = j
            thr[k_do, s_do] = values[j, b] / 2.0 + values[j, b_next] / 2.0
            split[k_do, s_do] = True
            is_split[s_do, k_do] = True
            cl, cr = 2 * s_do + 1, 2 * s_do + 2
            n_left = n_l.reshape(B, -1)[bd, do if hc.shape[2] > 1 else 0]
            s_left = sum_l.reshape(B, C)[bd, do]
            node_n[cl, k_do], node_n[cr, k_do] = n_left, node_n[s_do, k_do] - n_left
            node_s[cl, k_do], node_s[cr, k_do] = s_left, node_s[s_do, k_do] - s_left
            # ---- send the samples of split nodes to the children: key = slot·K + k becomes
            # (2·slot + 1 + right)·K + k = key + (key − k + K) + K·right there, and stays elsewhere
            test_tab = np.full((M, K), -1, dtype=np.int32)
            test_tab[s_do, k_do] = j * MB + b
            t1, t2 = c["tmp"]
            np.take(test_tab, key, out=t1)
            moving = t1 >= 0
            if c["right"] is not None:  # right = [code_j > b] from the per-fit table
                t1 += c["right_off"]
                right = np.take(c["right"], t1)
            else:
                bin_tab = np.full((M, K), MB, dtype=np.int32)
                bin_tab[s_do, k_do] = b
                feat_tab = np.zeros((M, K), dtype=np.int32)
                feat_tab[s_do, k_do] = j
                np.take(feat_tab, key, out=t1)
                t1 += c["code_off"]
                np.take(c["codes_flat"], t1, out=t2)
                right = t2 > np.take(bin_tab, key, out=t1)
            step = key - ar_k
            step += K
            step *= moving
            step += key
            step += K * right
            key = step
            # ---- children impurities (Σg² by bincount) and the importance of the splits
            q = np.bincount(key.reshape(-1), gg.reshape(-1), minlength=M * K).reshape(M, K)
            for ch in (cl, cr):
                node_q[ch, k_do] = q[ch, k_do]
                node_imp[ch, k_do] = q[ch, k_do] / node_n[ch, k_do] - (node_s[ch, k_do] / node_n[ch, k_do]) ** 2
            gain = (node_n[s_do, k_do] * node_imp[s_do, k_do] - node_n[cl, k_do] * node_imp[cl, k_do]
                    - node_n[cr, k_do] * node_imp[cr, k_do])
            np.add.at(importances, (k_do, j), gain)
        node_n[is_split] = 0  # only leaves keep samples
        return key, node_n, node_s, importances / n

    # -------------------------------------------------------------------------------------- predict
    def _prepare_predict(self) -> None:
        """Index the distinct (feature, threshold) tests of all trees, and complete every tree to depth D: a
        leaf above depth D becomes a node whose test is always false (everything goes left) and hands its
        value down, so a sample's leaf is the D-bit path of its test outcomes."""
        feat, thr, split, value = (a.copy() for a in self._trees)
        D = self.max_depth
        n_int = 2 ** D - 1
        for s in range(n_int):
            leaf = ~split[:, :, s]
            for child in (2 * s + 1, 2 * s + 2):
                value[:, :, child] = np.where(leaf, value[:, :, s], value[:, :, child])
        f, t, sp_ = feat[:, :, :n_int], thr[:, :, :n_int], split[:, :, :n_int]
        tests, inverse = np.unique(np.stack([f[sp_].astype(np.float64), t[sp_]], axis=1), axis=0,
                                  return_inverse=True)
        test_id = np.full(f.shape, tests.shape[0], dtype=np.intp)  # the last row: the always-false test
        test_id[sp_] = inverse.reshape(-1)
        self._pred_trees = (tests[:, 0].astype(np.intp), tests[:, 1], test_id, value[:, :, n_int:])

    def decision_function(self, X) -> np.ndarray:
        if self._sk is not None:
            return self._sk.decision_function(X)
        raw = self._raw_predict(X)
        return raw[:, 0] if raw.shape[1] == 1 else raw

    def _raw_predict(self, X) -> np.ndarray:
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape [n, {self.n_features_in_}], got {X32.shape}")
        raw = np.array(_init_raw_predictions(X32, self._init, self._loss, True), dtype=np.float64)
        test_feat, test_thr, test_id, leaf_value = self._pred_trees
        S, K = test_id.shape[:2]
        D, lr = self.max_depth, self.learning_rate
        n_leaf = 2 ** D
        for i0 in range(0, X32.shape[0], 16384):  # sample chunks bound the [tests, samples] table
            XT = np.ascontiguousarray(X32[i0:i0 + 16384].T)
            m = XT.shape[1]
            outcome = np.zeros((test_feat.size + 1, m), dtype=bool)
            np.greater(XT[test_feat], test_thr[:, None], out=outcome[:-1])  # float32 x vs float64 t, as sklearn
            raw_t = np.ascontiguousarray(raw[i0:i0 + m].T)  # [K, m]; the same sums per element
            chunk = max(1, (1 << 20) // (m * K))
            for s0 in range(0, S, chunk):
                s1 = min(S, s0 + chunk)
                ids = test_id[s0:s1].reshape((s1 - s0) * K, -1)
                bits = []  # test outcome along each sample's path, level by level
                for d in range(D):
                    lo, L = 2 ** d - 1, 2 ** d
                    bits.append(_select([outcome[ids[:, lo + p]] for p in range(L)], bits))
                leaf = np.zeros(((s1 - s0) * K, m), dtype=np.int32)
                for b in bits:
                    leaf <<= 1
                    leaf |= b
                leaf += (np.arange(leaf.shape[0], dtype=np.int32) * n_leaf)[:, None]
                v = np.take(leaf_value[s0:s1].reshape(-1), leaf).reshape(s1 - s0, K, m)
                for s in range(s1 - s0):  # stage by stage, like sklearn's predict_stages
                    raw_t += lr * v[s]
            raw[i0:i0 + m] = raw_t.T
        return raw

    def predict(self, X) -> np.ndarray:
        if self._sk is not None:
            return self._sk.predict(X)
        return self.classes_[_encoded_prediction(self._raw_predict(X))]

    def train_predict(self) -> np.ndarray:
        """``predict(X_train)`` from the raw predictions kept at the end of ``fit``."""
        return self.classes_[_encoded_prediction(self.train_raw_predictions_)]


def _select(cand: list, bits: list) -> np.ndarray:
    """``cand[int(bits, base 2)]`` elementwise (boolean bits, most significant first), by a tree of
    bitwise selects ``a ^ (bit & (a ^ b))``."""
    for bit in bits[::-1]:
        cand = [cand[2 * i] ^ (bit & (cand[2 * i] ^ cand[2 * i + 1])) for i in range(len(cand) // 2)]
    return cand[0]


def _encoded_prediction(raw: np.ndarray) -> np.ndarray:
    if raw.shape[1] == 1:
        return (raw[:, 0] >= 0).astype(int)
    return np.argmax(raw, axis=1)
