"""Seeded, deterministic ListOps generator (SPEC §2.2; thesis §6.1.1, Appendix A.1.1).

Expressions are prefix lists of operations over MIN, MAX and MED with values 0–9 and 2–5 arguments per
operator, written with the 14-token vocabulary ``0 … 9 [MIN [MAX [MED ]``. Depth = operator nesting
(``[MAX 2 9 ]`` has depth 1).

Sampling process ("all other settings are those of the original code", thesis §6.1.1): the ListOps
generator of Nangia & Bowman (2018) draws each argument as an operator with probability
``VALUE_P = 0.25`` (else a uniform digit), each operator with a uniform 2..``MAX_ARGS = 5`` arguments and
a uniform operator. We sample that process **conditioned on the tree depth being exactly d** (exact
conditioning of the Galton–Watson process, no rejection needed) and reject trees longer than the length
cap (50 tokens for d ≤ 5; 100 tokens for the extrapolation depths, our choice — the thesis leaves it
open). This gives depth-balanced splits whose per-depth distribution equals rejection sampling from the
original generator.

Determinism: every (split, depth) stream is ``np.random.Generator(PCG64(SeedSequence([seed, split_id,
depth])))``; only uniform doubles from ``Generator.random`` are consumed, and every probability table is
built with IEEE multiplications/additions (no ``pow``/``exp``), so the same seed yields byte-identical
splits on any machine. Duplicate detection uses a set of ``bytes`` keys that is only probed, never
iterated.

Deduplication: evaluation splits are generated first (val, test, test_d8, test_d10) and are unique
within and across themselves; the training split excludes every evaluation expression. Training may
contain repeats (i.i.d. sampling as in the original generator; at depth 1 there are only 300 distinct
2-argument expressions). Because evaluation streams do not depend on the training size, the quick and
paper profiles share identical evaluation splits, and a smaller training split is a prefix (per depth)
of a larger one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scgbench.io import Progress
from scgbench.specs.listops import CLOSE_ID, MAX_ID, MED_ID, MIN_ID, OPERATORS, VOCAB

#: bump whenever the sampling changes in any way: caches record it and are regenerated on mismatch
GENERATOR_VERSION = 1

NO_PARENT = -1

#: split name -> integer used in the seed sequence (fixed forever; do not renumber)
SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "test_d8": 3, "test_d10": 4}


@dataclass(frozen=True)
class ListOpsConfig:
    """Generation parameters; the defaults are the paper dataset (thesis §6.1.1)."""

    seed: int = 0
    train_per_depth: int = 20_000
    val_per_depth: int = 2_000
    test_per_depth: int = 2_000
    extrap_per_depth: int = 2_000
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    extrap_depths: tuple[int, ...] = (8, 10)
    max_len: int = 50
    #: length cap of the extrapolation sets (our choice; ≈90 % of depth-8 and ≈62 % of depth-10 trees fit)
    extrap_max_len: int = 100
    value_p: float = 0.25  # probability that an argument is an operator (original code's VALUE_P)
    min_args: int = 2
    max_args: int = 5

    def params(self) -> dict:
        """The parameters that define the sampled distribution (recorded in cache headers)."""
        return {"value_p": self.value_p, "min_args": self.min_args, "max_args": self.max_args,
                "operators": OPERATORS, "max_len": self.max_len, "extrap_max_len": self.extrap_max_len,
                "depths": list(self.depths), "extrap_depths": list(self.extrap_depths)}

    def split_plan(self) -> dict[str, tuple[list[int], int, int]]:
        """split -> (depths, examples per depth, length cap), in generation order (eval first)."""
        plan = {"val": (list(self.depths), self.val_per_depth, self.max_len),
                "test": (list(self.depths), self.test_per_depth, self.max_len)}
        for d in self.extrap_depths:
            plan[f"test_d{d}"] = ([d], self.extrap_per_depth, self.extrap_max_len)
        plan["train"] = (list(self.depths), self.train_per_depth, self.max_len)
        return plan


# ---------------------------------------------------------------------------------------------------
# semantics


def apply_op(op_id: int, args: list[int]) -> int:
    """MIN / MAX / MED of digit arguments; MED of an even-length list = floor of the mean of the two
    middle values (SPEC §2.2), i.e. ``int(np.median)`` of the original code for non-negative digits."""
    if op_id == MIN_ID:
        return min(args)
    if op_id == MAX_ID:
        return max(args)
    if op_id == MED_ID:
        s = sorted(args)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2
    raise ValueError(f"token id {op_id} is not an operator")


class ListOpsSyntaxError(ValueError):
    """An expression that is not a well-formed ListOps prefix expression."""


def analyse(tokens: list[int]) -> tuple[list[int], list[int], int, int]:
    """Parse one expression (token ids) into (parents, values, label, depth).

    * ``parents[i]``: position of the operator that token i is an argument of; a ``]`` points to the
      operator it closes; the root operator (position 0) has ``NO_PARENT``.
    * ``values[i]``: value of the sub-expression at operator tokens, the digit at digit tokens, -1 at ``]``.
    Raises :class:`ListOpsSyntaxError` naming the problem (unbalanced brackets, too few arguments, ...).
    """
    n = len(tokens)
    if n == 0:
        raise ListOpsSyntaxError("empty expression")
    if tokens[0] < MIN_ID or tokens[0] > MED_ID:
        raise ListOpsSyntaxError("an expression must start with an operator ([MIN, [MAX or [MED)")
    parents = [NO_PARENT] * n
    values = [-1] * n
    stack: list[int] = []           # open operator positions
    args: list[list[int]] = []      # argument values of each open operator
    depth = 0
    for i, t in enumerate(tokens):
        if stack:
            parents[i] = stack[-1]
        elif i > 0:
            raise ListOpsSyntaxError(f"token {i + 1} ({VOCAB[t]}) follows the end of the expression "
                                     "(unbalanced brackets: too many ']')")
        if t < 10:
            values[i] = t
            args[-1].append(t)
        elif t == CLOSE_ID:
            if not stack:
                raise ListOpsSyntaxError(f"token {i + 1}: ']' without an open operator")
            op_pos = stack.pop()
            a = args.pop()
            if len(a) < 2:
                raise ListOpsSyntaxError(f"token {i + 1}: operator at token {op_pos + 1} has {len(a)} "
                                         "argument(s); ListOps operators take at least 2")
            v = apply_op(tokens[op_pos], a)
            values[op_pos] = v
            if args:
                args[-1].append(v)
        elif MIN_ID <= t <= MED_ID:
            stack.append(i)
            args.append([])
            depth = max(depth, len(stack))
        else:
            raise ListOpsSyntaxError(f"token {i + 1}: unknown token id {t}")
    if stack:
        raise ListOpsSyntaxError(f"unbalanced brackets: {len(stack)} operator(s) not closed by ']'")
    return parents, values, values[0], depth


# ---------------------------------------------------------------------------------------------------
# sampling


class _Uniforms:
    """Buffered U[0,1) doubles from a PCG64 stream (one numpy call per 8192 draws for speed)."""

    def __init__(self, seed_words: list[int]) -> None:
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed_words)))
        self.buf: list[float] = []
        self.i = 0

    def __call__(self) -> float:
        if self.i >= len(self.buf):
            self.buf = self.rng.random(8192).tolist()
            self.i = 0
        u = self.buf[self.i]
        self.i += 1
        return u


def _ipow(x: float, n: int) -> float:
    """x**n by repeated multiplication (correctly rounded IEEE ops: identical on every platform)."""
    r = 1.0
    for _ in range(n):
        r *= x
    return r


def _cumulative(weights: list[float]) -> list[float]:
    total = 0.0
    for w in weights:
        total += w
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0
    return out


def _pick(cum: list[float], u: float) -> int:
    for k, c in enumerate(cum):
        if u < c:
            return k
    return len(cum) - 1


class _Sampler:
    """Exact sampler of the original generator's trees conditioned on depth (operator height) = h.

    ``P[k]`` = P(an argument's subtree has height ≤ k) (a digit has height 0):
    P[0] = 1 − value_p, P[k] = (1 − value_p) + value_p · E_n[P[k−1]^n], n ~ U{min_args..max_args}.
    An operator of height exactly h has n arguments with probability ∝ P[h−1]^n − P[h−2]^n; the first
    argument of height h−1 is at index i with probability ∝ a^i (a = P[h−2]/P[h−1]); arguments before it
    have height ≤ h−2, those after it ≤ h−1, each from the truncated height distribution.
    """

    def __init__(self, cfg: ListOpsConfig, max_height: int) -> None:
        self.cfg = cfg
        ns = list(range(cfg.min_args, cfg.max_args + 1))
        self.ns = ns
        q = 1.0 - cfg.value_p
        P = [q]
        for _ in range(max_height):
            s = 0.0
            for n in ns:
                s += _ipow(P[-1], n)
            P.append(q + cfg.value_p * (s / len(ns)))
        self.P = P
        # height distribution of an argument truncated to ≤ top
        self.height_cum = {top: _cumulative([P[0]] + [P[j] - P[j - 1] for j in range(1, top + 1)])
                           for top in range(max_height + 1)}
        self.nargs_cum, self.first_cum = {}, {}
        for h in range(1, max_height + 1):
            hi, lo = P[h - 1], (P[h - 2] if h >= 2 else 0.0)
            self.nargs_cum[h] = _cumulative([_ipow(hi, n) - _ipow(lo, n) for n in ns])
            a = lo / hi
            for n in ns:
                self.first_cum[h, n] = _cumulative([_ipow(a, i) for i in range(n)])
        self.op_cum = _cumulative([1.0] * len(OPERATORS))

    def tree(self, h: int, u: _Uniforms, out: list[int]) -> None:
        """Append the tokens of an operator subtree of height exactly h to ``out``."""
        out.append(MIN_ID + _pick(self.op_cum, u()))
        n = self.ns[_pick(self.nargs_cum[h], u())]
        if h == 1:
            for _ in range(n):
                out.append(int(u() * 10))
        else:
            first = _pick(self.first_cum[h, n], u())
            for i in range(n):
                if i == first:
                    self.tree(h - 1, u, out)
                    continue
                j = _pick(self.height_cum[h - 2 if i < first else h - 1], u())
                if j == 0:
                    out.append(int(u() * 10))
                else:
                    self.tree(j, u, out)
        out.append(CLOSE_ID)


# ---------------------------------------------------------------------------------------------------
# splits


@dataclass
class ListOpsSplit:
    """A split held as flat arrays (ragged, CSR-style ``offsets``) for compact storage and fast batching.

    Example i owns ``tokens[offsets[i]:offsets[i+1]]`` and the same slice of ``parents`` and ``values``.
    """

    name: str
    tokens: np.ndarray   # int8, token ids
    offsets: np.ndarray  # int64, length n+1
    parents: np.ndarray  # int16, gold parent position per token (-1 at the root)
    values: np.ndarray   # int8, sub-expression value at operator tokens, digit at digits, -1 at ']'
    labels: np.ndarray   # int64, value of the whole expression
    depths: np.ndarray   # int16
    header: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def example(self, i: int) -> dict:
        a, b = self.offsets[i], self.offsets[i + 1]
        return {"tokens": self.tokens[a:b], "parents": self.parents[a:b], "values": self.values[a:b],
                "label": int(self.labels[i]), "depth": int(self.depths[i])}

    def token_lists(self) -> list[list[int]]:
        t = self.tokens.tolist()
        o = self.offsets.tolist()
        return [t[o[i]:o[i + 1]] for i in range(len(self))]

    @classmethod
    def from_token_lists(cls, name: str, seqs: list[list[int]], header: dict | None = None) -> "ListOpsSplit":
        """Analyse every expression (raises :class:`ListOpsSyntaxError` on malformed input)."""
        flat_t: list[int] = []
        flat_p: list[int] = []
        flat_v: list[int] = []
        labels, depths, offsets = [], [], [0]
        for s in seqs:
            p, v, y, d = analyse(s)
            flat_t += s
            flat_p += p
            flat_v += v
            labels.append(y)
            depths.append(d)
            offsets.append(offsets[-1] + len(s))
        return cls(name, np.asarray(flat_t, np.int8), np.asarray(offsets, np.int64),
                   np.asarray(flat_p, np.int16), np.asarray(flat_v, np.int8),
                   np.asarray(labels, np.int64), np.asarray(depths, np.int16), dict(header or {}))


def generate_split_tokens(cfg: ListOpsConfig, split: str, seen: set[bytes] | None = None,
                          unique: bool = True, progress=None) -> list[list[int]]:
    """Token lists of one split, depth-ordered. ``seen`` holds keys of expressions other splits own;
    with ``unique`` the split's own expressions are added to it (evaluation splits). ``progress`` (a
    :class:`scgbench.io.Progress`) is advanced once per accepted expression; it draws no random numbers,
    so the output is the same with or without it."""
    depths, per_depth, cap = cfg.split_plan()[split]
    sampler = _Sampler(cfg, max(depths))
    seen = set() if seen is None else seen
    out: list[list[int]] = []
    for d in depths:
        u = _Uniforms([cfg.seed, SPLIT_IDS[split], d])
        got, tries = 0, 0
        while got < per_depth:
            tries += 1
            if tries > 200 * per_depth + 10_000:
                raise RuntimeError(f"ListOps {split} depth {d}: could not find {per_depth} distinct "
                                   f"expressions with at most {cap} tokens (got {got}); lower the count")
            seq: list[int] = []
            sampler.tree(d, u, seq)
            if len(seq) > cap:
                continue
            key = bytes(seq)
            if key in seen:
                continue
            if unique:
                seen.add(key)
            out.append(seq)
            got += 1
            if progress is not None:
                progress.update(1, f"{split} depth {d}")
    return out


def generate(cfg: ListOpsConfig, splits: list[str] | None = None, progress: bool | Progress = True
             ) -> dict[str, ListOpsSplit]:
    """All splits of ``cfg`` (evaluation splits first so that training excludes them). The paper-sized
    dataset takes tens of seconds: with ``progress`` (true, or a :class:`~scgbench.io.Progress`) a line
    goes to stderr every few seconds."""

    plan = cfg.split_plan()
    wanted = list(plan) if splits is None else splits
    for s in wanted:
        if s not in plan:
            raise KeyError(f"unknown ListOps split {s!r}; known: {sorted(plan)}")
    seen: set[bytes] = set()
    result: dict[str, ListOpsSplit] = {}
    todo = [n for n in plan if n != "train" or "train" in wanted]
    total = sum(len(plan[n][0]) * plan[n][1] for n in todo)
    prog = Progress.of(progress, "ListOps generation", total, "expressions")
    for name in todo:  # eval splits are always generated (cheap) because training excludes them
        seqs = generate_split_tokens(cfg, name, seen, unique=name != "train", progress=prog)
        if name in wanted:
            result[name] = ListOpsSplit.from_token_lists(name, seqs)
    prog.close()
    return result
