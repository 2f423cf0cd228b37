"""Performance prediction from the VS-GAE embedding on accuracies read from a self-written official tfrecord."""

import numpy as np
import pytest

from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
from scgbench.datamodules.nasbench101.enumeration import enumerate_space
from scgbench.datamodules.nasbench101.store import METRICS_FILE
from scgbench.datamodules.nasbench101.tfrecord import convert_tfrecord, encode_record, write_tfrecord
from scgbench.specs.nasbench101 import NODE_TYPES, Cell


def accuracy_of(cell: Cell) -> float:
    """A synthetic but structured 'validation accuracy': 3x3 convolutions help, pooling hurts."""
    return 0.80 + 0.04 * cell.ops.count("conv3x3-bn-relu") - 0.03 * cell.ops.count("maxpool3x3")


def _write_metrics(tmp_path, space, rows, rng, noise: float) -> None:
    """The cells ``rows`` of ``space`` written as a tfrecord in the official format (3 repeats each, validation
    accuracy :func:`accuracy_of` plus N(0, ``noise``) per repeat, drawn from ``rng``) and converted to the metrics
    parquet under ``tmp_path``."""
    payloads = []
    for i in rows:
        v = int(space.num_vertices[i])
        c = Cell(space.adjacency[i, :v, :v], [NODE_TYPES[t] for t in space.types[i, :v]])
        for rep in range(3):
            acc = accuracy_of(c) + rng.normal(0, noise)
            m = {"trainable_parameters": 1000, "total_time": 1.0, "evaluation_data": [
                {"current_epoch": e, "training_time": e, "train_accuracy": acc, "validation_accuracy": acc,
                 "test_accuracy": acc} for e in (0, 54, 108)]}
            payloads.append(encode_record(c.hash, 108, c.adjacency_string(), c.operations_string(), m))
    src = write_tfrecord(tmp_path / "nasbench_only108.tfrecord", payloads)
    convert_tfrecord(src, tmp_path / "nasbench101" / METRICS_FILE, progress=False)


@pytest.mark.slow
def test_accuracy_regression_head(tmp_path):
    import lightning.pytorch as pl

    from scgbench.models.vsgae import VSGAE

    space = enumerate_space(5)
    rng = np.random.default_rng(0)
    _write_metrics(tmp_path, space, rng.choice(np.flatnonzero(space.num_vertices == 5), 60, replace=False), rng,
                   noise=0.002)
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


# -- the accuracy-prediction curve: RMSE and Kendall τ of a regressor on the embedding ------------
def _curve_data(tmp_path, cells: int = 400):
    """A converted metrics parquet under ``tmp_path``: ``cells`` cells of the 5-vertex space (:func:`_write_metrics`)."""
    space = enumerate_space(5)
    rng = np.random.default_rng(0)
    _write_metrics(tmp_path, space, rng.choice(len(space.hashes), cells, replace=False), rng, noise=0.005)


def test_prediction_curve_on_vsgae_embeddings_of_a_converted_tfrecord(tmp_path):
    import torch

    from scgbench.metrics.prediction import curve_scalars, prediction_curve
    from scgbench.models.vsgae import VSGAE

    _curve_data(tmp_path)
    dm = NASBench101DataModule(root=str(tmp_path), use_metrics="yes", batch_size=64, seed=0, test_fraction=0.25,
                               max_test=10)
    dm.setup()
    assert dm.has_targets
    train, test = dm.prediction_index()
    # every cell with a target, the whole held-out set (not only the max_test evaluated ones), disjoint
    assert len(train) == 300 and len(test) == 100 and not set(train) & set(test)
    assert np.array_equal(test, dm.test_index) and np.isfinite(dm.targets(train)).all()
    capped, _ = dm.prediction_index(max_train=50)
    assert len(capped) == 50 and set(capped) <= set(train)
    assert np.array_equal(capped, dm.prediction_index(max_train=50)[0])  # the data seed fixes the choice

    torch.manual_seed(0)
    model = VSGAE(dn=32, dg=8).eval()

    def embed(index):
        assert [int(r) for b in dm.cells_loader(index) for r in b.cell_index] == list(index)  # in the order asked
        return model.embed(dm.cells_loader(index))

    y_test = dm.targets(test)
    curve = prediction_curve(embed(train), dm.targets(train), embed(test), y_test, sizes=(20, 80, 10000))
    assert curve["sizes"] == [20, 80, 300] and curve["n_test"] == 100
    # even an untrained encoder's posterior mean carries the operation counts the accuracies depend on
    assert curve["rmse"][-1] < 0.5 * y_test.std() and curve["rmse"][-1] <= curve["rmse"][0]
    assert curve["kendall_tau"][-1] > 0.5
    assert set(curve_scalars(curve)) == {f"test/pred_curve_{k}_{n}" for k in ("rmse", "kendall_tau")
                                        for n in (20, 80, 300)}


@pytest.mark.slow
def test_vsgae_test_records_the_prediction_curve_and_draws_its_figure(tmp_path):
    import lightning.pytorch as pl

    from scgbench.models.vsgae import VSGAE

    _curve_data(tmp_path)
    dm = NASBench101DataModule(root=str(tmp_path), use_metrics="yes", batch_size=64, seed=0, test_fraction=0.25,
                               max_test=8)
    pl.seed_everything(0)
    model = VSGAE(dn=24, dg=8, recon_z_samples=1, recon_decodes=1, prior_samples=4, prior_decodes=1)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path / "run", num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    for n in (100, 300):  # the default sizes (100, 1000, 10000) capped at the 300 training cells
        assert np.isfinite(out[f"test/pred_curve_rmse_{n}"]) and -1 <= out[f"test/pred_curve_kendall_tau_{n}"] <= 1
    assert (tmp_path / "run" / "figures" / "pred_curve.png").is_file()
    assert (tmp_path / "run" / "figures" / "pred_curve.json").is_file()
