"""NAS-Bench-101 datamodule: torch-geometric graphs, seeded split, space-only and metrics sources."""

import numpy as np
import pytest
import torch

from scgbench.datamodules.catalog import load_providers
from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
from scgbench.datamodules.nasbench101.enumeration import enumerate_space
from scgbench.datamodules.nasbench101.store import write_space
from scgbench.specs.nasbench101 import NODE_TYPES, Cell


@pytest.fixture(scope="module")
def space_path(tmp_path_factory):
    return write_space(enumerate_space(5), tmp_path_factory.mktemp("nb") / "space_v1.parquet")


def test_graphs_split_and_determinism(space_path):
    dm = NASBench101DataModule(path=str(space_path), batch_size=8, seed=3)
    dm.setup()
    assert len(dm.train_index) + len(dm.test_index) == 2532 and len(dm.test_index) == 253
    assert not set(dm.train_index) & set(dm.test_index)
    g = dm.train_set[0]
    r = int(dm.train_index[0])
    v = int(dm.table.num_vertices[r])
    cell = Cell(dm.table.adjacency[r, :v, :v], [NODE_TYPES[t] for t in dm.table.types[r, :v]])
    assert g.num_nodes == v and torch.equal(g.node_type, torch.as_tensor(cell.node_types))
    assert torch.equal(g.edge_index, torch.as_tensor(cell.edge_index()))  # sorted by (target, source)
    assert torch.equal(g.x.argmax(-1), g.node_type) and torch.isnan(g.y).all()
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 8 and batch.edge_index.max() < batch.num_nodes
    dm2 = NASBench101DataModule(path=str(space_path), batch_size=8, seed=3)
    dm2.setup()
    assert np.array_equal(dm.test_index, dm2.test_index)
    dm3 = NASBench101DataModule(path=str(space_path), batch_size=8, seed=4, subset=100, max_test=5)
    dm3.setup()
    assert len(dm3.train_index) == 90 and len(dm3.test_set) == 5
    assert not np.array_equal(dm.test_index[:5], dm3.test_index[:5])


def test_catalog_registration_and_prepare(tmp_path, monkeypatch):
    entry = load_providers()["nasbench101"]
    assert entry.offline
    # a pre-seeded (small) space cache stands in for the full enumeration; prepare must not redo it
    write_space(enumerate_space(4), tmp_path / "nasbench101" / "space_v1.parquet")
    from tests.test_nasbench_tfrecord import official_records, protobuf_model_metrics
    import random
    from scgbench.datamodules.nasbench101.tfrecord import write_tfrecord
    _, _, payloads = official_records(random.Random(1), protobuf_model_metrics())
    src = write_tfrecord(tmp_path / "mini.tfrecord", payloads)
    summary = entry.prepare(tmp_path, tfrecord=str(src), progress=False)
    assert "search space: 91 cells" in summary and "18 records -> 3 cells" in summary
    # two of the three fixture cells have <= 4 vertices and are therefore in this small space
    assert "2/3 converted cells are in the enumerated space, 2 with the identical" in summary
    dm = NASBench101DataModule(root=str(tmp_path), batch_size=2, seed=0, test_fraction=0.34)
    dm.setup()
    assert dm.table.kind == "metrics" and dm.has_targets and len(dm.test_index) == 1
    assert torch.isfinite(dm.train_set[0].y).all()
    with pytest.raises(FileNotFoundError, match="use_metrics='yes'"):
        NASBench101DataModule(root=str(tmp_path / "none"), use_metrics="yes").setup()
