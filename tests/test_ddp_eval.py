"""Evaluation under DDP: one checkpoint per registered benchmark gives the same test and validation metrics,
sampled decoding included (keyed evaluation noise), on 1 and on 2 CPU processes; VS-GAE trains under DDP (every
parameter gets a gradient); no sync_dist warnings.

Equality is exact except for metrics that are means of non-integer per-example values (losses, reciprocal
ranks, per-graph reconstruction shares, and what is derived from them): their float sums are added in an
order that depends on how the examples are dealt to ranks and batches, so they agree to float32 rounding (a
difference of two such means, Gap_ST, to the rounding of its terms).
Accuracies, hits@k, validity, uniqueness and the like are ratios of integer counts and must be bit-identical.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

HARNESS = Path(__file__).with_name("ddp_eval.py")

#: means of non-integer values (see the module docstring): equal to float32 rounding, not bit for bit
ROUNDED = ("val/loss", "test/loss", "*mrr*", "test/recon_*",
           # discrete-vae: per-image bounds from encoder/decoder products whose float32 rounding follows the batch
           "*/neg_elbo", "*/nll_iw", "test/recon",
           # a KL to the prior per image (both VAE benchmarks, validation and test): a mean of non-integer values
           "*/kl")
#: differences of two such means (disentanglement's Gap_ST = |recon(hard) − recon(relaxed)|, two ~500-nat terms):
#: equal to float32 rounding of the terms, i.e. up to 1e-6 of the reconstruction, not of the (small) difference
DIFFERENCES = {"*/gap_st": "test/recon"}


def _run(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED"):
        env.pop(k, None)  # a fresh launch: the harness starts its own ranks
    p = subprocess.run([sys.executable, str(HARNESS), *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"{' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"


@pytest.mark.slow
def test_one_and_two_process_evaluation_agree(tmp_path):
    from scgbench.benchmarks.registry import load_all

    _run("prepare", str(tmp_path), cwd=tmp_path)
    _run("train-test", str(tmp_path), "2", cwd=tmp_path)   # fit under DDP (all parameters trained), then test
    _run("test", str(tmp_path), "1", cwd=tmp_path)
    one, two = (json.loads((tmp_path / f"metrics_{n}.json").read_text()) for n in (1, 2))
    assert one["_warnings"] == [] and two["_warnings"] == []          # logged means are synced: no sync_dist warning
    names = sorted(load_all())
    assert names == sorted(k for k in one if not k.startswith("_")) == sorted(k for k in two if not k.startswith("_"))
    for name in names:
        a, b = one[name], two[name]
        assert a.keys() == b.keys() and any(k.startswith("test/") for k in a), name
        for k in a:
            scale = next((a[of] for p, of in DIFFERENCES.items() if fnmatch.fnmatch(k, p)), None)
            if scale is not None:
                assert math.isclose(a[k], b[k], rel_tol=0, abs_tol=1e-6 * abs(scale)), (name, k, a[k], b[k])
            elif any(fnmatch.fnmatch(k, p) for p in ROUNDED):
                assert math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-6), (name, k, a[k], b[k])
            else:
                assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), (name, k, a[k], b[k])
    # sampled decoding is part of what was compared, and it is not MAP decoding
    assert one["listops"]["test/acc_sampled"] != one["listops"]["test/acc"] or \
        one["listops"]["test/edge_prec_sampled"] != one["listops"]["test/edge_prec"]
    assert "test/acc_sampled" in one["mnist-addition"] and "test/prior_validity" in one["nasbench101-vsgae"]


class _Unused(pl.Callback):
    """After each backward: the trainable parameters without a gradient (what DDP refuses at the next step)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def on_after_backward(self, trainer, pl_module) -> None:
        self.seen.append(sorted({n.split(".")[0] for n, p in pl_module.named_parameters()
                                 if p.requires_grad and p.grad is None}))


def test_vsgae_gives_every_trainable_parameter_a_gradient_in_every_step(tmp_path):
    """On data without accuracies the regression head must still get a gradient: DDP (without the costly
    ``find_unused_parameters``) rejects at the second step."""
    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space
    from scgbench.models.vsgae import VSGAE

    path = write_space(enumerate_space(4), tmp_path / "space_v1.parquet")
    dm = NASBench101DataModule(path=str(path), batch_size=8, seed=0)
    pl.seed_everything(0)
    model, check = VSGAE(dn=16, dg=6), _Unused()
    pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, callbacks=[check],
               default_root_dir=tmp_path).fit(model, datamodule=dm)
    assert not dm.has_targets and check.seen == [[], [], []]
    assert not model.train_predictor and not any(p.requires_grad for p in model.predictor.parameters())
    # data with accuracies, a batch without any (a rank's share can be such a batch): the head is still used
    other = VSGAE(dn=16, dg=6)
    assert other.train_predictor
    batch = next(iter(dm.train_dataloader()))
    assert not torch.isfinite(batch.y).any()
    other._loss(batch)[0].backward()
    assert all(p.grad is not None for p in other.parameters())
    assert float(other.predictor[0].weight.grad.abs().sum()) == 0.0
