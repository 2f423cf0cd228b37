"""Cells of a NAS-Bench-101 table as torch-geometric graphs (the examples of
:class:`~scgbench.datamodules.nasbench101.datamodule.NASBench101DataModule`), in a module of their own so that
torch-geometric is imported when graphs are built, not when the benchmark registry loads."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from ...specs.nasbench101 import NODE_TYPES
from .store import CellTable


class CellData(Data):
    """A cell graph whose ``cell_index`` batches as it is: torch-geometric offsets every attribute named
    ``*index*`` by the nodes of the graphs before it in the batch, which would make the row (the cell's
    identity, e.g. for keyed evaluation noise) depend on the batch's composition."""

    def __inc__(self, key, value, *args, **kwargs):
        return 0 if key == "cell_index" else super().__inc__(key, value, *args, **kwargs)


class CellGraphs(Dataset):
    """Cells of a :class:`CellTable` (rows ``index``) as torch-geometric graphs, built on access."""

    def __init__(self, table: CellTable, index: np.ndarray, target: np.ndarray | None) -> None:
        self.table, self.index, self.target = table, np.asarray(index), target

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Data:
        r = int(self.index[i])
        v = int(self.table.num_vertices[r])
        adj = self.table.adjacency[r, :v, :v]
        src, dst = np.nonzero(adj)
        order = np.lexsort((src, dst))
        types = torch.as_tensor(self.table.types[r, :v], dtype=torch.long)
        y = float(self.target[r]) if self.target is not None else float("nan")
        return CellData(x=torch.nn.functional.one_hot(types, len(NODE_TYPES)).float(), node_type=types,
                    edge_index=torch.as_tensor(np.stack([src[order], dst[order]]), dtype=torch.long),
                    y=torch.tensor([y], dtype=torch.float), cell_index=torch.tensor([r]), num_nodes=v)


def collate(items: list[Data]) -> Batch:
    return Batch.from_data_list(items)
