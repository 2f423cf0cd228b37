"""NAS-Bench-101 graph generation with VS-GAE (SPEC §2.4; thesis §5.1, §6.1.4, Table 6.7; Appendix A.2)."""

from __future__ import annotations

from .registry import Benchmark, Metric, Pin, register

METRICS = (
    Metric("test/recon_acc", "%"), Metric("test/recon_ci_low", "%", better=None, label="recon 95% CI low"),
    Metric("test/recon_ci_high", "%", better=None, label="recon 95% CI high"), Metric("test/prior_validity", "%"),
    Metric("test/prior_valid_in_space", "%"), Metric("test/prior_uniqueness", "%"), Metric("test/prior_novelty", "%"),
    Metric("test/pred_rmse", "%", better="lower", group="accuracy prediction"),
    Metric("test/pred_kendall_tau", "", digits=3, group="accuracy prediction"),
    *(Metric(f"test/pred_curve_{m}_{n}", "%" if m == "rmse" else "", better="lower" if m == "rmse" else "higher",
             digits=2 if m == "rmse" else 3, group="accuracy prediction")
      for n in (100, 1000, 10000) for m in ("rmse", "kendall_tau")))

register(Benchmark(
    name="nasbench101-vsgae",
    # a few steps at seed 0 (tests/test_result_versions.py): moves only with a result_version bump
    pin=Pin(overrides=(
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0",
            "--data.path={root}/space_v1.parquet", "--data.subset=200", "--data.max_test=6", "--model.dn=16",
            "--model.dg=6", "--model.prior_samples=20", "--model.recon_z_samples=2", "--model.recon_decodes=2",
            "--model.prior_decodes=2", "--trainer.limit_train_batches=3"),
            metric="history:train/loss", value=9.652618408203125),
    description=("VS-GAE on NAS-Bench-101 cells: a bidirectional-GRU graph encoder and a sequential graph "
                 "decoder (GraphProp/AddNode/InitNode/AddEdges) trained with teacher forcing. Metrics: "
                 "reconstruction accuracy (10 z × 10 decodes, exact in node order, 95% CI over graphs), prior "
                 "validity (1,000 z × 10 decodes, five checks), share of valid samples inside the 423,624-cell "
                 "space, uniqueness, novelty; with converted accuracies also RMSE/Kendall τ of an accuracy "
                 "predictor on the embedding. Training is supervised (no gradient estimator)."),
    datamodule_path="scgbench.datamodules.nasbench101.datamodule:NASBench101DataModule",
    module_path="scgbench.models.vsgae:VSGAE",
    default_variant="vsgae",
    data=("NAS-Bench-101 search space, enumerated locally and exactly (423,624 cells, cached parquet); the "
          "official tfrecord, converted without TensorFlow, adds accuracies (`scgbench data nasbench101`)"),
    offline=lambda: True,
    selection_metric="val/loss",
    selection_mode="min",
    metrics=METRICS,
    families=(),
    reference=[{"variant": "vsgae", "estimator": "–", "tricks": "–", "source": "Table 6.7",
                "metrics": {"test/recon_acc": 0.9999, "test/prior_validity": 0.9509}}],
    node_shape=(32, 5),
    example_unit="graphs",
))
