"""Data of the discrete-VAE benchmark: binarised MNIST, Fashion-MNIST and Omniglot (SPEC §2.6)."""

from ..catalog import register_dataset
from .datamodule import BINARIZATIONS, DiscreteVAEDataModule, ImageSet, binarize
from .sources import (DATASETS, FASHION_FILES, OMNIGLOT_GIT_BLOB, download_fashion, download_omniglot, load_images,
                      prepare_fashion, prepare_omniglot, read_chardata)

register_dataset("fashion-mnist", "Fashion-MNIST for the discrete VAE: Debian's dataset-fashion-mnist (verified by the "
                 "digests of its decompressed files; installed as root) or the 4 official IDX files (MD5-checked "
                 "download)", prepare_fashion,
                 offline=False)
register_dataset("omniglot", "Omniglot as the IWAE paper prepared it (chardata.mat, git-blob-checked) for the "
                 "discrete VAE", prepare_omniglot, offline=False)

__all__ = ["BINARIZATIONS", "DATASETS", "DiscreteVAEDataModule", "FASHION_FILES", "ImageSet", "OMNIGLOT_GIT_BLOB",
           "binarize", "download_fashion", "download_omniglot", "load_images", "prepare_fashion", "prepare_omniglot",
           "read_chardata"]
