"""Result versions: each benchmark pins a cheap fixed-seed value with its ``result_version``
(:class:`scgbench.benchmarks.Pin`); a change that moves it without bumping the version fails here. Rows never
pool across versions (the version is part of the fingerprint and of the row's key)."""

from __future__ import annotations

import pytest

from scgbench.benchmarks import load_all

BENCHMARKS = sorted(load_all())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Scratch data: the NAS-Bench-101 cells with <= 5 vertices (a real space file, enumerated in a second)."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space

    root = tmp_path_factory.mktemp("pins")
    write_space(enumerate_space(5), root / "space_v1.parquet")
    return root


def pinned_value(name: str, root, runs) -> float:
    from scgbench.runner import Run

    bm = load_all()[name]
    overrides = [o.format(root=root) for o in bm.pin.overrides]
    rec = Run(name, seed=0, overrides=overrides, results=str(runs / "results"), run_dir=str(runs / "run"),
              threads=1, write=False).prepare().execute()
    if bm.pin.metric.startswith("history:"):  # the first epoch's logged value
        return float(rec["history"][0][bm.pin.metric.removeprefix("history:")])
    return float(rec["metrics"][bm.pin.metric])


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_pinned_fixed_seed_value_has_not_moved_without_a_result_version_bump(name, root, isolated):
    bm = load_all()[name]
    assert bm.pin is not None, f"{name}: declare a Pin with its result_version"
    got = pinned_value(name, root, isolated)
    assert got == pytest.approx(bm.pin.value, rel=bm.pin.rtol), (
        f"{name}: {bm.pin.metric} of the pinned run is {got!r}, pinned {bm.pin.value!r} at result version "
        f"v{bm.result_version}: if the change is meant to move the benchmark's numbers, bump result_version, say "
        "why in result_history and re-pin; otherwise it changed results by mistake")


def test_rows_never_pool_across_result_versions(tmp_path):
    """Two records of one experiment and seed set, one written under v1 and one under v2: two rows, the older
    marked as such and never starred."""
    from scgbench.leaderboard.table import build

    bm = load_all()["mnist-addition"]
    recs = [{"benchmark": "mnist-addition", "variant": "ours", "estimator": "gumbel", "profile": "quick", "seed": s,
             "metrics": {"test/acc": 0.9 + 0.01 * s + (0.05 if v == 2 else 0)}, "fingerprint": "same", "modified": {},
             "result_version": v, "timestamp": f"2026-12-0{v}T00:00:00+00:00", "data_source": "d"}
            for v in (1, 2) for s in range(3)]
    import dataclasses

    table = build(recs, dataclasses.replace(bm, result_version=2))
    assert [(x.version, x.outdated, len(x.seeds)) for x in table.rows] == [(2, False, 3), (1, True, 3)]
    assert table.rows[1].short_name == "ours [v1]" and table.rows[1].provenance["version"].text == "v1 (current v2)"


def test_a_version_bump_changes_the_fingerprint():
    import dataclasses

    from scgbench.experiment import experiment, fingerprint

    bm = load_all()["mnist-addition"]
    flat = {"model.tau": 2.0}
    assert experiment(flat, bm) == {"model.tau": 2}  # v1: as before versions existed
    v2 = experiment(flat, dataclasses.replace(bm, result_version=2))
    assert v2 == {"model.tau": 2, "result_version": 2} and fingerprint(v2) != fingerprint(experiment(flat, bm))


def test_the_pin_is_sensitive_a_changed_learning_rate_moves_it(root, isolated):
    """The control: the same pinned run with another learning rate gives another value (the pin would catch it)."""
    import dataclasses

    bm = load_all()["mnist-addition"]
    moved = dataclasses.replace(bm.pin, overrides=bm.pin.overrides + ("--model.lr=0.01",))
    from unittest import mock

    with mock.patch.object(bm, "pin", moved):
        got = pinned_value("mnist-addition", root, isolated)
    assert got != pytest.approx(bm.pin.value, rel=bm.pin.rtol)
