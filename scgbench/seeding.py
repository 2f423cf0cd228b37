"""Named random streams derived from one run seed (``numpy.random.SeedSequence``).

Every source of randomness in a run (the data split, the training order, the sampling noise, a validation
subset, …) draws from its own stream, a pure function of ``(seed, stream name, *keys)``. Streams never
share state, so consuming more of one (e.g. a longer epoch) cannot shift another, and a stream that
belongs to the *data definition* (a held-out split) can be pinned to a data seed that the run seed does not
move.

>>> stream_seed(0, "split") == stream_seed(0, "split")
True
>>> stream_seed(0, "split") != stream_seed(0, "order")
True
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _name_key(stream: str) -> int:
    # A stable 64-bit integer for the stream name (Python's hash() is salted per process).
    return int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little")


def seed_sequence(seed: int, stream: str, *keys: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of stream ``stream`` of ``seed``, optionally sub-keyed (epoch, rank, …)."""
    if int(seed) < 0 or any(int(k) < 0 for k in keys):
        raise ValueError(f"seeds and stream keys must be >= 0, got seed={seed}, keys={keys}")
    return np.random.SeedSequence([int(seed), _name_key(stream), *map(int, keys)])


def stream_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit integer seed for ``torch.manual_seed`` / ``torch.Generator`` from the named stream."""
    return int(seed_sequence(seed, stream, *keys).generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A numpy ``Generator`` (PCG64: the same numbers on every platform) on the named stream."""
    return np.random.default_rng(seed_sequence(seed, stream, *keys))


def torch_generator(seed: int, stream: str, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on the named stream."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *keys))
