"""The factor sizes models check at construction (specs) are the datasets' own (the specs layer below both)."""

from scgbench.datamodules.disentanglement import PROCEDURAL, get_dataset
from scgbench.specs.disentanglement import PROCEDURAL_FACTOR_SIZES


def test_procedural_factor_sizes_are_the_datasets():
    assert set(PROCEDURAL) == set(PROCEDURAL_FACTOR_SIZES)
    for name, sizes in PROCEDURAL_FACTOR_SIZES.items():
        assert list(get_dataset(name).factors_num_values) == list(sizes), name
