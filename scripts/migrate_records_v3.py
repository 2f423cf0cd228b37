"""One-off, deterministic migration of the published records to schema 3 (issue 27, item 6).

For every record under ``results/`` (or the directory given):

* a schema-1 run record gets the ``experiment``, ``fingerprint`` and ``modified`` that :func:`scgbench.experiment.
  legacy_experiment` rebuilds from its arguments (what the leaderboard computed on every read until now), its
  ``config`` from its modules' ``hparams``, and an explicit ``id`` equal to the content-derived one it had (so a copy
  of the old record elsewhere still counts once);
* every run record gets ``result_version``: discrete-vae records from before c9d2ed0 (bounds summed in float32) are
  v1 — the benchmark is now v2 —, every other record v1, the version the benchmarks were declared at;
* :func:`scgbench.store.clean` drops the other forms of the config (``args``, ``hparams``) and ``path``, makes the
  command the one a user re-runs (``scgbench run …``) and every absolute path of the machine relative;
* file names lose their spaces (``trained 1750 steps`` → ``trained_1750_steps``).

Running it twice changes nothing the second time. Usage: ``python scripts/migrate_records_v3.py [results]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scgbench.benchmarks import load_all
from scgbench.experiment import fingerprint, legacy_experiment
from scgbench.io import atomic_write_bytes
from scgbench.store import SCHEMA_VERSION, clean, record_id, safe_name

#: the commit from which discrete-vae's numbers are result version 2 (its bounds summed in float64)
DVAE_V2 = "c9d2ed0"
#: the checkouts the committed records were written from: their paths are made relative to them
CHECKOUTS = ("/work/main/", "/tmp/snap_dis/", "/tmp/wt16/", "/tmp/wt16b/", "/tmp/wt16c/", "/tmp/wt16d/",
             "/tmp/kgsnap/")


def _descends(commit: str | None, ancestor: str) -> bool:
    if not commit:
        return False
    p = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], capture_output=True)
    return p.returncode == 0


def _strip_checkouts(value):
    if isinstance(value, str):
        for prefix in CHECKOUTS:
            if value.startswith(prefix):
                return value[len(prefix):]
        return value
    if isinstance(value, list):
        return [_strip_checkouts(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_checkouts(v) for k, v in value.items()}
    return value


def migrate(rec: dict, benchmarks: dict) -> dict:
    rec = dict(rec)
    if rec.get("kind", "run") == "run":
        bm = benchmarks.get(rec["benchmark"])
        if "fingerprint" not in rec and bm is not None:
            rec["id"] = record_id(rec)  # the content-derived id it had, kept once its content changes
            exp, modified = legacy_experiment(rec, bm)
            rec.update(experiment=exp, fingerprint=fingerprint(exp), modified=modified)
            rec["schema_version"] = 2  # now holds what schema 2 added: clean() makes it 3
        if "result_version" not in rec:
            commit = (rec.get("git") or {}).get("commit")
            rec["result_version"] = 2 if rec["benchmark"] == "discrete-vae" and _descends(commit, DVAE_V2) else 1
    else:
        rec["id"] = record_id(rec)
    if isinstance(rec.get("command"), list) and rec["command"] and str(rec["command"][0]).endswith("grid.py"):
        pass  # clean() turns a grid cell's argv into its `scgbench run` command
    return clean(_strip_checkouts(rec))


def main(root: str = "results") -> int:
    benchmarks = load_all()
    moved = changed = 0
    for path in sorted(Path(root).rglob("*.json")):
        old = json.loads(path.read_text())
        new = migrate(old, benchmarks)
        text = json.dumps(new, indent=2, sort_keys=True, default=str) + "\n"
        target = path.with_name(safe_name(path.name))
        if target != path:
            subprocess.run(["git", "mv", str(path), str(target)], check=True)
            moved += 1
        if text != target.read_text():
            atomic_write_bytes(target, text.encode())
            changed += 1
    print(f"schema {SCHEMA_VERSION}: {changed} records rewritten, {moved} renamed")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
