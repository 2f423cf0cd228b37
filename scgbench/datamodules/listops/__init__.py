"""ListOps unsupervised parsing data (SPEC §2.2): generator, file format, data module. The token vocabulary
is the task's spec, :mod:`scgbench.specs.listops`.

``scgbench data listops [--train_per_depth N] [--seed S]`` generates and caches the splits.
"""

from __future__ import annotations

import time
from pathlib import Path

from .datamodule import ListOpsDataModule, ListOpsDataset, collate_listops
from .generator import (GENERATOR_VERSION, NO_PARENT, ListOpsConfig, ListOpsSplit, ListOpsSyntaxError, analyse,
                        apply_op, generate)
from .storage import (ListOpsFileError, StaleCacheError, cache_path, load_or_generate, read_split,
                      write_split)

__all__ = ["ListOpsDataModule", "ListOpsDataset", "collate_listops", "ListOpsConfig", "ListOpsSplit",
           "ListOpsSyntaxError", "ListOpsFileError", "StaleCacheError", "analyse", "apply_op", "generate",
           "load_or_generate", "read_split", "write_split", "cache_path", "NO_PARENT", "GENERATOR_VERSION"]


def prepare(root: Path, seed: int = 0, train_per_depth: int = 20_000, force: bool = False, **options) -> str:
    """Generate (or validate the cache of) every ListOps split under ``root`` and summarise it;
    ``force`` regenerates every split even if its cache is valid."""
    cfg = ListOpsConfig(seed=int(seed), train_per_depth=int(train_per_depth),
                        **{k: int(v) for k, v in options.items()})
    t0 = time.perf_counter()
    splits = load_or_generate(cfg, root, force=bool(force))
    dt = time.perf_counter() - t0
    parts = [f"{n}: {len(s)}" for n, s in splits.items()]
    return (f"ListOps generator v{GENERATOR_VERSION} seed {cfg.seed} in {dt:.1f} s under "
            f"{cache_path(root, cfg, 'train').parent}: " + ", ".join(parts))

