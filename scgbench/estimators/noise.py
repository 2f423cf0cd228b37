"""Counter-based evaluation noise: a pure function of (run seed, stream, example id, coordinates).

Sampled decoding at evaluation (Gumbel-max, SPEC §1.2; VS-GAE's sampled decodes, §2.4) must not depend on
how examples are batched or dealt to DDP ranks, so it is not drawn from a stateful RNG. Instead each noise
element is hashed from its identity: with ``mix`` the splitmix64 finaliser (Steele, Lea & Flood 2014, a
bijection of 64-bit words) and ``γ`` = 0x9E3779B97F4A7C15,

    h₀ = key,   h_{j+1} = mix(h_j ⊕ mix(c_j + γ))       for the coordinates (c₀ = example id, c₁, …, c_n)
    U  = (⌊h / 2¹¹⌋ + ½) · 2⁻⁵³  ∈ (0, 1)               (the top 53 bits, never 0 or 1)
    G  = −log(−log U) ~ Gumbel(0, 1),   ε = √2 · erf⁻¹(2U − 1) ~ N(0, 1)

``c₁ … c_n`` are the element's indices inside its example (position, category, …), one per dimension, so
padding an example to a longer batch does not move its noise. Uniforms and transforms are computed in
float64 (float32 on MPS), then cast. Streams are sub-keyed with :func:`sub_key` (same hash on Python ints).

>>> import torch
>>> a = keyed_uniform(7, torch.tensor([3, 5]), (2, 4))
>>> b = keyed_uniform(7, torch.tensor([5]), (1, 4))
>>> bool(torch.equal(a[1], b[0]))
True
"""

from __future__ import annotations

import math
import os

import torch

_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(x: int) -> int:
    x &= _M64
    return x - (1 << 64) if x >> 63 else x


def mix64_int(x: int) -> int:
    """splitmix64's finaliser on a Python int (reference for :func:`mix64`); returns an unsigned 64-bit int."""
    x &= _M64
    x = ((x ^ (x >> 30)) * _C1) & _M64
    x = ((x ^ (x >> 27)) * _C2) & _M64
    return x ^ (x >> 31)


def sub_key(key: int, *parts: int) -> int:
    """``h`` of the module docstring for a Python key and Python parts (a 64-bit unsigned int)."""
    h = key & _M64
    for p in parts:
        h = mix64_int(h ^ mix64_int(int(p) + _GAMMA))
    return h


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    # logical right shift of int64 words (torch's >> is arithmetic: clear the copied sign bits)
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (two's-complement wrap-around products)."""
    x = (x ^ _srl(x, 30)) * _signed(_C1)
    x = (x ^ _srl(x, 27)) * _signed(_C2)
    return x ^ _srl(x, 31)


def _coordinate(values: torch.Tensor) -> torch.Tensor:
    return mix64(values.long() + _signed(_GAMMA))


def keyed_bits(key: int, ids: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """64-bit hash words [``shape``] (int64) of (``key``, ``ids[b]``, the element's index in each further dim)."""
    shape = tuple(shape)
    ids = ids.reshape(-1)
    if not shape or shape[0] != ids.numel():
        raise ValueError(f"keyed noise: {ids.numel()} example ids for a tensor of shape {shape}; the leading "
                         "dimension must be the example")
    h = mix64(torch.full_like(ids, _signed(key), dtype=torch.long) ^ _coordinate(ids))
    for d in shape[1:]:
        h = mix64(h.unsqueeze(-1) ^ _coordinate(torch.arange(d, device=ids.device)))
    return h


def _float(device: torch.device) -> tuple[torch.dtype, int]:
    return (torch.float32, 24) if device.type == "mps" else (torch.float64, 53)


def keyed_uniform(key: int, ids: torch.Tensor, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
    """U ∈ (0, 1) of the module docstring (float64, or ``dtype``)."""
    ftype, bits = _float(ids.device)
    u = (_srl(keyed_bits(key, ids, shape), 64 - bits).to(ftype) + 0.5) * 2.0 ** -bits
    return u if dtype is None else u.to(dtype)


def keyed_gumbel(key: int, ids: torch.Tensor, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """G = −log(−log U) ~ Gumbel(0, 1), finite (U never reaches 0 or 1)."""
    # E = −log U in float64 (U close to 1 needs it); E ~ Exp(1) has full relative precision in ``dtype``
    e = (-torch.log(keyed_uniform(key, ids, shape))).to(dtype)
    return -torch.log(e)


def keyed_normal(key: int, ids: torch.Tensor, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ε = √2·erf⁻¹(2U − 1) ~ N(0, 1) (inverse CDF: one uniform per element)."""
    return (math.sqrt(2.0) * torch.erfinv(2.0 * keyed_uniform(key, ids, shape) - 1.0)).to(dtype)


def run_seed() -> int:
    """The run seed (``PL_GLOBAL_SEED``, set by Lightning's ``seed_everything`` and passed to DDP ranks; 0 if unset)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def eval_noise_key(*keys: int) -> int:
    """Base key of evaluation noise: the named stream ``(run seed, "eval-noise", *keys)``."""
    from ..seeding import stream_seed

    return stream_seed(run_seed(), "eval-noise", *keys)


class KeyedStream:
    """The noise of one estimator over one batch: call ``c`` of the estimator draws with key
    ``sub_key(key, c)``, so a node applied several times on a path (rounds, hops) gets fresh noise per call,
    and the same noise for the same call in any batch."""

    def __init__(self, key: int, ids: torch.Tensor) -> None:
        self.key, self.ids, self.calls = key, ids, 0

    def gumbel(self, x: torch.Tensor) -> torch.Tensor:
        key = sub_key(self.key, self.calls)
        self.calls += 1
        return keyed_gumbel(key, self.ids.to(x.device), x.shape, x.dtype)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """ε ~ N(0, 1) of ``x``'s shape (IGR's sampled decoding), counted as a call like :meth:`gumbel`."""
        key = sub_key(self.key, self.calls)
        self.calls += 1
        return keyed_normal(key, self.ids.to(x.device), x.shape, x.dtype)
