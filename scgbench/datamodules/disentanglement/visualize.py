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


def _tile(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """[rows·cols, 64, 64, C] → one RGB image with a grey separator."""
    n, h, w, c = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=3)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 0.5, dtype=np.float32)
    for k in range(min(n, rows * cols)):
        r, q = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    return grid


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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    samples = ds.sample_observations(64, rng)
    trav = ds.sample_observations_from_factors(traversal_factors(ds, rng, max_steps), rng)
    paths = []
    p = out / f"{ds.name}_samples.png"
    plt.imsave(p, np.clip(_tile(samples, 8, 8), 0, 1))
    paths.append(p)

    fig, ax = plt.subplots(figsize=(max_steps * 0.8 + 1.6, ds.num_factors * 0.8 + 0.4))
    ax.imshow(np.clip(_tile(trav, ds.num_factors, max_steps), 0, 1))
    cell = 66
    ax.set_yticks([2 + cell * j + 32 for j in range(ds.num_factors)])
    ax.set_yticklabels([f"{n} ({s})" for n, s in zip(ds.factor_names, ds.factors_num_values)])
    ax.set_xticks([])
    ax.set_title(f"{ds.name}: factor traversals (seed {seed})", fontsize=9)
    fig.tight_layout()
    p = out / f"{ds.name}_traversals.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


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
