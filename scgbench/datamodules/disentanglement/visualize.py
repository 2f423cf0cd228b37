"""Visual check of ground-truth datasets: a PNG grid of random samples and one of factor traversals.

    python -m scgbench.datamodules.disentanglement.visualize --out DIR [--datasets dsprites,circles] [--seed 0]

``<name>_samples.png``: 8×8 random samples. ``<name>_traversals.png``: one row per factor; along a row
that factor sweeps (up to 12 evenly spaced) values while all other factors stay at one random draw.
File-backed datasets whose files are missing are skipped with a note.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ...specs.disentanglement import GroundTruthData


def traversal_factors(ds: GroundTruthData, rng: np.random.RandomState, max_steps: int = 12) -> np.ndarray:
    """Factor rows of a traversal grid: [num_factors · max_steps, F]; unused cells repeat the last value."""
    base = ds.sample_factors(1, rng)[0]
    rows = []
    for j, size in enumerate(ds.factors_num_values):
        values = np.unique(np.round(np.linspace(0, size - 1, min(size, max_steps))).astype(np.int64))
        values = np.concatenate([values, np.full(max_steps - len(values), values[-1])])
        f = np.repeat(base[None], max_steps, axis=0)
        f[:, j] = values
        rows.append(f)
    return np.concatenate(rows, axis=0)


def write_grids(ds: GroundTruthData, out: str | Path, seed: int = 0, max_steps: int = 12) -> list[Path]:
    from ...figures import image_grid, traversal_grid

    out = Path(out)
    rng = np.random.RandomState(seed)
    samples = ds.sample_observations(64, rng)
    trav = ds.sample_observations_from_factors(traversal_factors(ds, rng, max_steps), rng)
    return [image_grid(samples, 8, 8, out / f"{ds.name}_samples.png"),
            traversal_grid(trav, [f"{n} ({s})" for n, s in zip(ds.factor_names, ds.factors_num_values)], max_steps,
                           f"{ds.name}: factor traversals (seed {seed})", out / f"{ds.name}_traversals.png")]


def main(argv: list[str] | None = None) -> int:
    from . import DATASET_BUILDERS, get_dataset
    from .files import DatasetNotFoundError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory for the PNGs")
    parser.add_argument("--datasets", default=",".join(DATASET_BUILDERS), help="comma-separated dataset names")
    parser.add_argument("--root", default=None, help="data root for file-backed datasets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        kwargs = {} if name in ("dsprites", "color_dsprites", "noisy_dsprites", "circles") else {"root": args.root}
        try:
            ds = get_dataset(name, **kwargs)
        except DatasetNotFoundError as e:
            print(f"skip {name}: {e}")
            continue
        for p in write_grids(ds, args.out, seed=args.seed):
            print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
