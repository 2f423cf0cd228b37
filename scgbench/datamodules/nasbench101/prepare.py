"""``scgbench data nasbench101``: enumerate the space, convert an official tfrecord if one is given or
present, cross-check the two and print a summary."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .enumeration import NUM_CELLS
from .store import METRICS_FILE, default_dir, ensure_space, load_cells

TFRECORD_NAMES = ("nasbench_full.tfrecord", "nasbench_only108.tfrecord")


def cross_check(space_path: Path, metrics_path: Path) -> str:
    """How many converted cells are in the enumerated space with the identical representative."""
    space, metrics = load_cells(space_path), load_cells(metrics_path)
    pos = np.searchsorted(space.hashes, metrics.hashes)
    pos = np.minimum(pos, len(space) - 1)
    found = space.hashes[pos] == metrics.hashes
    same = found & (space.adjacency[pos] == metrics.adjacency).all(axis=(1, 2)) & \
        (space.types[pos] == metrics.types).all(axis=1)
    return (f"{int(found.sum()):,}/{len(metrics):,} converted cells are in the enumerated space, "
            f"{int(same.sum()):,} with the identical adjacency and operations")


def prepare(root: Path, tfrecord: str | None = None, skip_corrupt: bool = False, progress: bool = True,
            **_: object) -> str:
    from .tfrecord import convert_tfrecord

    out = default_dir(root)
    t0 = time.time()
    space_path = ensure_space(root, log=(lambda s: print(s, flush=True)) if progress else None)
    n = len(load_cells(space_path).hashes)
    lines = [f"search space: {n:,} cells{' (expected %d!)' % NUM_CELLS if n != NUM_CELLS else ''} "
             f"-> {space_path} ({time.time() - t0:.0f}s)"]
    src = Path(tfrecord) if tfrecord else next((out / f for f in TFRECORD_NAMES if (out / f).exists()), None)
    metrics_path = out / METRICS_FILE
    if src is not None:
        s = convert_tfrecord(src, metrics_path, skip_corrupt=skip_corrupt, progress=progress)
        lines.append(f"converted {src.name}: {s['records']:,} records -> {s['cells']:,} cells, budgets "
                     f"{s['budgets']}, skipped {s['skipped']} ({s['seconds']:.0f}s) -> {metrics_path}")
    if metrics_path.exists():
        lines.append(cross_check(space_path, metrics_path))
    else:
        lines.append(f"no accuracies: place {' or '.join(TFRECORD_NAMES)} in {out} (or pass tfrecord=PATH) "
                     "to add them; the graph-only benchmarks do not need them")
    return "\n".join(lines)
