"""Evaluate one tiny checkpoint per registered benchmark with N DDP CPU processes (for test_ddp_eval.py).

    python tests/ddp_eval.py prepare DIR         # data that must exist before the ranks start
    python tests/ddp_eval.py train-test DIR 2    # fit every benchmark a few steps with 2 DDP processes, save
                                                 # DIR/<name>.ckpt, then test and validate each with them
    python tests/ddp_eval.py test DIR 1          # test and validate every checkpoint in DIR with 1 process

Rank 0 writes ``DIR/metrics_<N>.json``: ``{benchmark: {metric: value}}`` plus the ``sync_dist`` warnings
Lightning raised (``"_warnings"``). Run as a script (not ``python -c``): Lightning's DDP launcher starts the
other ranks by re-running ``sys.argv``. Modules and data modules are built straight from the registry with
each benchmark's shipped ``smoke`` profile (``configs/<benchmark>/profiles/smoke.yaml``) and data under
``$SCGBENCH_DATA=DIR/data``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path


#: what the DDP comparison adds to each benchmark's shipped smoke profile: KG's test metrics decode MAP, so its
#: sampling eval_mode puts the hops through the keyed noise too (listops and mnist-addition record sampled decoding
#: anyway)
EXTRA = {"kg-paths": ["--model.estimator_kwargs={eval_mode: sample}"]}
#: optimizer steps of the DDP fit
STEPS = 3


def build(name: str, root: Path):
    """(module, data module) of benchmark ``name``'s shipped smoke profile, with the data under ``root``."""
    from scgbench.benchmarks import get_benchmark
    from scgbench.config import BenchmarkCLI, benchmark_args

    bm = get_benchmark(name)
    cli = BenchmarkCLI(bm, benchmark_args(bm, "smoke", None, 0) + EXTRA.get(name, []))
    cli.instantiate()
    return cli.model, cli.datamodule


def prepare(root: Path) -> None:
    """Data that must exist before the ranks start: the NAS-Bench-101 space of cells with ≤ 5 vertices."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import SPACE_FILE, default_dir, write_space

    path = default_dir(root / "data") / SPACE_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
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

    from scgbench.benchmarks.registry import load_all

    cmd, root, devices = argv[0], Path(argv[1]), int(argv[2])
    os.environ["SCGBENCH_DATA"] = str(root / "data")
    torch.set_num_threads(1)
    names = sorted(load_all())
    out: dict = {"_warnings": [], "_seconds": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in names:
            t0 = time.perf_counter()
            ckpt = root / f"{name}.ckpt"
            pl.seed_everything(0, verbose=False)
            model, dm = build(name, root)
            if cmd == "train-test":
                trainer = _trainer(devices, max_steps=STEPS, limit_val_batches=0)
                trainer.fit(model, datamodule=dm)
                trainer.save_checkpoint(ckpt)
                model, dm = build(name, root)  # a fresh data module, as in the test-only command
            trainer = _trainer(devices)
            model = type(model).load_from_checkpoint(ckpt)
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
