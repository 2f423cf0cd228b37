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
            force: bool = False, **_: object) -> str:
    """Enumerate (or validate the cache of) the space; convert the official tfrecord when one is given or
    present and the converted file is missing, corrupt or ``force`` is set; cross-check the two.

    A corrupt or stale space cache is rebuilt (named in a warning); ``force`` rebuilds it regardless. A
    corrupt converted file with no tfrecord at hand raises :class:`~.store.CorruptCacheError` with the
    command that re-converts it."""
    from .store import SchemaError
    from .tfrecord import convert_tfrecord

    if tfrecord and not Path(tfrecord).is_file():  # before the enumeration (minutes) that precedes the conversion
        raise FileNotFoundError(f"--option tfrecord={tfrecord}: no such file; give the path of the official "
                                f"{' or '.join(TFRECORD_NAMES)}")
    out = default_dir(root)
    t0 = time.time()
    space_path = ensure_space(root, log=(lambda s: print(s, flush=True)) if progress else None, force=force,
                              progress=progress)
    n = len(load_cells(space_path).hashes)
    lines = [f"search space: {n:,} cells{' (expected %d!)' % NUM_CELLS if n != NUM_CELLS else ''} "
             f"-> {space_path} ({time.time() - t0:.0f}s)"]
    src = Path(tfrecord) if tfrecord else next((out / f for f in TFRECORD_NAMES if (out / f).exists()), None)
    metrics_path = out / METRICS_FILE
    problem = None
    if metrics_path.exists() and not force:
        try:
            load_cells(metrics_path)
        except SchemaError as e:  # corrupt or stale (CorruptCacheError is a SchemaError)
            if src is None:
                raise
            problem = str(e)
    if src is not None and (force or problem or not metrics_path.exists() or tfrecord):
        if problem:
            lines.append(f"converted file rejected ({problem}); re-converting {src}")
        s = convert_tfrecord(src, metrics_path, skip_corrupt=skip_corrupt, progress=progress)
        lines.append(f"converted {src.name}: {s['records']:,} records -> {s['cells']:,} cells, budgets "
                     f"{s['budgets']}, skipped {s['skipped']} ({s['seconds']:.0f}s) -> {metrics_path}")
    elif src is not None:
        lines.append(f"{metrics_path} is intact; not re-converting {src.name} (pass --force to redo it)")
    if metrics_path.exists():
        lines.append(cross_check(space_path, metrics_path))
    else:
        lines.append(f"no accuracies: place {' or '.join(TFRECORD_NAMES)} in {out} (or pass tfrecord=PATH) "
                     "to add them; the graph-only benchmarks do not need them")
    return "\n".join(lines)
