"""Data of the discrete-VAE benchmark: binarised MNIST, Fashion-MNIST and Omniglot (SPEC §2.6)."""

from .datamodule import BINARIZATIONS, DiscreteVAEDataModule, ImageSet, binarize
from .sources import (DATASETS, FASHION_FILES, OMNIGLOT_GIT_BLOB, download_fashion, download_omniglot, load_images,
                      prepare_fashion, prepare_omniglot, read_chardata)

__all__ = ["BINARIZATIONS", "DATASETS", "DiscreteVAEDataModule", "FASHION_FILES", "ImageSet", "OMNIGLOT_GIT_BLOB",
           "binarize", "download_fashion", "download_omniglot", "load_images", "prepare_fashion", "prepare_omniglot",
           "read_chardata"]
