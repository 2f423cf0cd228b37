"""Performance prediction from the VS-GAE embedding on accuracies read from a self-written official tfrecord."""

import base64
import json

import numpy as np
import pytest

from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
from scgbench.datamodules.nasbench101.enumeration import enumerate_space
from scgbench.datamodules.nasbench101.store import METRICS_FILE
from scgbench.datamodules.nasbench101.tfrecord import convert_tfrecord, encode_model_metrics, write_tfrecord
from scgbench.specs.nasbench101 import NODE_TYPES, Cell


def accuracy_of(cell: Cell) -> float:
    """A synthetic but structured 'validation accuracy': 3x3 convolutions help, pooling hurts."""
    return 0.80 + 0.04 * cell.ops.count("conv3x3-bn-relu") - 0.03 * cell.ops.count("maxpool3x3")


@pytest.mark.slow
def test_accuracy_regression_head(tmp_path):
    import lightning.pytorch as pl

    from scgbench.models.vsgae import VSGAE

    space = enumerate_space(5)
    rng = np.random.default_rng(0)
    payloads = []
    for i in rng.choice(np.flatnonzero(space.num_vertices == 5), 60, replace=False):
        v = int(space.num_vertices[i])
        c = Cell(space.adjacency[i, :v, :v], [NODE_TYPES[t] for t in space.types[i, :v]])
        for rep in range(3):
            acc = accuracy_of(c) + rng.normal(0, 0.002)
            m = {"trainable_parameters": 1000, "total_time": 1.0, "evaluation_data": [
                {"current_epoch": e, "training_time": e, "train_accuracy": acc, "validation_accuracy": acc,
                 "test_accuracy": acc} for e in (0, 54, 108)]}
            payloads.append(json.dumps([c.hash, 108, c.adjacency_string(), c.operations_string(),
                                        base64.b64encode(encode_model_metrics(m)).decode()]).encode())
    src = write_tfrecord(tmp_path / "nasbench_only108.tfrecord", payloads)
    convert_tfrecord(src, tmp_path / "nasbench101" / METRICS_FILE, progress=False)
    dm = NASBench101DataModule(root=str(tmp_path), use_metrics="yes", batch_size=12, seed=0, test_fraction=0.25)
    dm.setup()
    assert dm.has_targets and len(dm.test_set) == 15
    pl.seed_everything(0)
    model = VSGAE(dn=24, dg=8, lr=3e-3, kl_weight=0.1, predictor_weight=100.0, recon_z_samples=1,
                  recon_decodes=1, prior_samples=4, prior_decodes=1)
    trainer = pl.Trainer(max_epochs=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                         check_val_every_n_epoch=100)
    trainer.fit(model, datamodule=dm)
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    targets = np.array([dm.test_set[i].y.item() for i in range(len(dm.test_set))])
    assert out["test/pred_rmse"] < targets.std()  # better than predicting the mean
    assert out["test/pred_kendall_tau"] > 0.3
