"""NAS-Bench-101 graph generation with VS-GAE (SPEC §2.4; thesis §5.1, §6.1.4, Table 6.7; Appendix A.2)."""

from __future__ import annotations

from ..datamodules.nasbench101.datamodule import NASBench101DataModule
from ..models.vsgae import VSGAE
from .registry import Benchmark, register

# Paper (Appendix A.2): dn = 250, dg = 56, two propagation rounds, Adam 1e-4 without dropout, 300 epochs,
# LR × 0.1 when the (training) loss has not dropped for 10 epochs; 90/10 split of the whole space; evaluation
# on all held-out cells with 10 z × 10 decodes and 1,000 prior samples × 10 decodes. The batch size is not
# given in the thesis; 32 follows D-VAE (Zhang et al. 2019), whose dimensions A.2 adopts.
PAPER = {
    "model": {"dn": 250, "dg": 56, "rounds": 2, "lr": 1e-4, "kl_weight": 1.0, "plateau_patience": 10,
              "plateau_factor": 0.1, "recon_z_samples": 10, "recon_decodes": 10, "prior_samples": 1000,
              "prior_decodes": 10},
    "data": {"batch_size": 32, "eval_batch_size": 64, "subset": None, "test_fraction": 0.1, "max_test": None},
    "trainer": {"max_epochs": 300},
    "tricks": {},
}

# Quick (2 shared CPU cores, minutes): the same model, dimensions, objective (plain ELBO) and evaluation
# protocol (10 × 10 decodes per held-out graph, 1,000 × 10 prior decodes) on a seeded 4,000-cell subset of
# the enumerated space (3,600 train / 400 held out, of which 100 are decoded), 3 epochs (~340 steps) at
# lr 1e-3. Enough for the decoder to learn the cell grammar (prior validity ~0.6-0.75); exact reconstruction
# needs far longer training (the paper trains 300 epochs on 381k cells), so it stays near 0 here.
QUICK = {
    "model": {"dn": 250, "dg": 56, "rounds": 2, "lr": 1e-3, "kl_weight": 1.0, "plateau_patience": 10,
              "plateau_factor": 0.1, "recon_z_samples": 10, "recon_decodes": 10, "prior_samples": 1000,
              "prior_decodes": 10},
    "data": {"batch_size": 32, "eval_batch_size": 25, "subset": 4000, "test_fraction": 0.1, "max_test": 100},
    "trainer": {"max_epochs": 3},
    "tricks": {},
}

METRICS = ("test/recon_acc", "test/recon_ci_low", "test/recon_ci_high", "test/prior_validity",
           "test/prior_valid_in_space", "test/prior_uniqueness", "test/prior_novelty", "test/pred_rmse",
           "test/pred_kendall_tau")

register(Benchmark(
    name="nasbench101-vsgae",
    description=("VS-GAE on NAS-Bench-101 cells: a bidirectional-GRU graph encoder and a sequential graph "
                 "decoder (GraphProp/AddNode/InitNode/AddEdges) trained with teacher forcing. Metrics: "
                 "reconstruction accuracy (10 z × 10 decodes, exact in node order, 95% CI over graphs), prior "
                 "validity (1,000 z × 10 decodes, five checks), share of valid samples inside the 423,624-cell "
                 "space, uniqueness, novelty; with converted accuracies also RMSE/Kendall τ of an accuracy "
                 "predictor on the embedding. Training is supervised (no gradient estimator)."),
    datamodule=NASBench101DataModule,
    module=VSGAE,
    profiles={"quick": QUICK, "paper": PAPER},
    variants={
        "vsgae": {},
        # decode with argmax node types and p > 0.5 edges instead of sampling (deterministic decodes)
        "vsgae-greedy": {"model": {"decode": "greedy"}},
    },
    default_variant="vsgae",
    data=("NAS-Bench-101 search space, enumerated locally and exactly (423,624 cells, cached parquet); the "
          "official tfrecord, converted without TensorFlow, adds accuracies (`scgbench data nasbench101`)"),
    offline=lambda: True,
    selection_metric="val/loss",
    selection_mode="min",
    leaderboard_metrics=METRICS,
    families=(),
    reference=[{"variant": "vsgae", "estimator": "–", "tricks": "–", "source": "Table 6.7",
                "metrics": {"test/recon_acc": 0.9999, "test/prior_validity": 0.9509}}],
    node_shape=(32, 5),
))
