"""``scgbench leaderboard --verify RECORD``: re-run a record's own experiment and report each metric's difference.

The re-run is the record's resolved ``config`` (a LightningCLI config layer, which reproduces the run) with its
benchmark, profile, variant, estimator and seed, in a scratch directory (nothing is written to any store). A run is
a function of its seed (README, Reproducibility), so on the same machine (CPU model and core count, thread count,
package versions) under the same result version every metric must come back **exactly**; elsewhere the difference is
judged against the spread of the record's leaderboard row (the sample std over its seeds): ``|Δ| ≤ 2·std`` is
within the row's spread. The exit status is 0 when every metric meets its expectation, 1 otherwise.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from .leaderboard.table import number, pool_key, result_version, rows
from .store import _check, read_records


class VerifyError(ValueError):
    """A record that cannot be re-run (named, with the reason)."""


def _machine(rec: dict) -> tuple:
    dev = rec.get("device") or {}
    return (dev.get("cpu"), dev.get("cpu_count"), dev.get("accelerator"), dev.get("gpu"), rec.get("torch_threads"),
            tuple(sorted((rec.get("versions") or {}).items())))


def load(path: str | Path) -> dict:
    try:
        rec = json.loads(Path(path).read_text())
        _check(rec)
    except (OSError, ValueError) as e:
        raise VerifyError(f"{path} is not a readable result record ({e})") from None
    if not isinstance(rec.get("config"), dict) or "trainer" not in rec["config"]:
        raise VerifyError(f"{path} holds no resolved config to re-run (a schema-1 record); run its command again "
                          f"instead: {' '.join(rec.get('command') or ['scgbench', 'run', rec['benchmark']])}")
    return rec


def rerun(rec: dict, workdir: Path) -> dict:
    """Train and test the record's experiment again in ``workdir``; the new record (not written to any store)."""
    from .runner import Run

    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(rec["config"], sort_keys=True))
    threads = rec.get("torch_threads") if isinstance(rec.get("torch_threads"), int) else None
    estimator = None if rec["estimator"] in ("none", "–") or "+" in rec["estimator"] else rec["estimator"]
    run = Run(rec["benchmark"], estimator=estimator, profile=rec["profile"], seed=rec["seed"], variant=rec["variant"],
              overrides=["--config", str(config), "--trainer.enable_progress_bar=false"],
              results=str(workdir / "results"), run_dir=str(workdir / "run"), threads=threads, write=False)
    return run.prepare().execute()


#: relative difference within which two values of a metric are the same float32 number up to summation order (a
#: few units in the last place of a float32 value: 2^-21 ≈ 4.8e-7)
FLOAT32_ROUNDING = 2.0 ** -21


def compare(old: dict, new: dict, row_records: list[dict], bm) -> tuple[list[dict], bool]:
    """Per metric of the old record: old, new, difference and the verdict. Exact comparison (to float32 rounding)
    where the machine and the result version are the same, else against the row's spread; timings are shown, not
    judged."""
    exact = _machine(old) == _machine(new) and result_version(old) == result_version(new)
    declared = {m.key: m for m in (bm.metrics if bm is not None else ())}
    out, ok = [], True
    for key in [k for k in declared if k in old["metrics"]] + sorted(k for k in old["metrics"] if k not in declared):
        a, b = float(old["metrics"][key]), new["metrics"].get(key)
        if b is None:
            out.append({"metric": key, "old": a, "new": None, "diff": None, "verdict": "missing in the re-run"})
            ok = False
            continue
        diff = float(b) - a
        vals = [float(r["metrics"][key]) for r in row_records if key in r["metrics"]]
        std = (sum((v - sum(vals) / len(vals)) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
        m = declared.get(key)
        if m is not None and m.kind == "cost" and m.unit == "s":
            verdict = "a timing: the machine's load, not compared"
        elif exact:
            # float32 per-image values summed in another order (a refactor of a sum) move the last bit or two
            rounding = abs(diff) <= FLOAT32_ROUNDING * max(abs(a), 1.0)
            verdict = ("exact" if diff == 0 else f"equal to float32 rounding (relative {abs(diff) / abs(a):.1e})"
                       if rounding else "DIFFERS (same machine and version: expected exact)")
            ok &= rounding
        elif std is None:
            verdict = "no spread to compare with (one seed in the row)"
        elif abs(diff) <= 2 * std:
            verdict = f"within the row's spread ({abs(diff) / std:.2f} std)" if std else "exact"
        else:
            verdict = f"OUTSIDE the row's spread ({abs(diff) / std:.2f} std)" if std else "DIFFERS (row std 0)"
            ok = False
        out.append({"metric": key, "old": a, "new": float(b), "diff": diff, "std": std, "verdict": verdict,
                    "unit": declared.get(key)})
    return out, ok


def verify(path: str | Path, stores=None, say: Callable[[str], None] = print) -> bool:
    """Re-run the record at ``path`` and print each metric's difference; True when every metric meets its
    expectation (exact on the same machine and version, else within 2 std of the record's row)."""
    from .benchmarks import get_benchmark

    old = load(path)
    bm = get_benchmark(old["benchmark"])
    key = pool_key(old, bm)
    row_records = next((r["records"] for r in rows([x for _, x in read_records(stores, warn=lambda m: None)
                                                    if x["benchmark"] == bm.name], bm)
                        if (r["version"], r["fingerprint"]) == key), [old])
    if result_version(old) != bm.result_version:
        say(f"note: the record is of result version v{result_version(old)}, the code here is v{bm.result_version}: "
            "differences are expected")
    with tempfile.TemporaryDirectory(prefix="scgbench-verify-") as tmp:
        new = rerun(old, Path(tmp))
    new.setdefault("result_version", bm.result_version)
    report, ok = compare(old, new, row_records, bm)
    same = _machine(old) == _machine(new)
    say(f"verify {path}: {bm.name} {old['variant']} {old['estimator']} {old['profile']} seed {old['seed']}; "
        f"{'same machine' if same else 'another machine'} ({(new.get('device') or {}).get('cpu')}), result version "
        f"v{result_version(old)} → v{result_version(new)}; row of {len(row_records)} seed(s)")
    for r in report:
        m = r.get("unit")
        fmt = (lambda v: number(v, m)) if m is not None else (lambda v: f"{v:.6g}")
        new_text = "–" if r["new"] is None else fmt(r["new"])
        diff_text = "–" if r["diff"] is None else f"{r['diff'] * (m.scale if m else 1):+.6g}"
        say(f"  {r['metric']}: {fmt(r['old'])} → {new_text} (Δ {diff_text}): {r['verdict']}")
    return ok
