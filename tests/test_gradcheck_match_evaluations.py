"""gradcheck's ``--match-evaluations N``: each estimator with a sample count spends N decoder evaluations per image
and draw (or the largest count below N), the others keep their own; the record says which."""

from __future__ import annotations

from scgbench.cli import main
from scgbench.estimators import get_estimator, registry
from scgbench.gradcheck import matched_settings


def test_matched_settings_spend_the_budget_or_the_largest_count_below_it():
    plan = [("reinforce", {}), ("unordered-set", {}), ("indecater", {}), ("gumbel", {"tau": 1.0}), ("direct", {}),
            ("exact", {})]
    out = {name: (opts, matched) for name, opts, matched in matched_settings(plan, 40, 3, 4)}
    assert out["reinforce"] == ({"num_samples": 40}, True)
    assert out["unordered-set"] == ({"k": 16}, True)                     # capped at MAX_K = 16 < 40
    assert out["indecater"] == ({"samples": 4}, True)                    # 4 · (3·3 + 1) = 40
    assert out["gumbel"] == ({"tau": 1.0}, False) and out["direct"] == ({}, False) and out["exact"] == ({}, False)
    for name, opts, matched in matched_settings(plan, 40, 3, 4):
        if matched:
            assert get_estimator(name, **opts).evaluations(3, 4) <= 40
    # below what one setting costs: not matched (REINFORCE's leave-one-out baseline needs 2 samples; one base sample
    # of IndeCateR costs N·(K − 1) + 1 = 10)
    out = {name: (opts, matched) for name, opts, matched in matched_settings(plan, 1, 3, 4)}
    assert out["reinforce"] == ({}, False) and out["indecater"] == ({}, False)
    assert out["unordered-set"] == ({"k": 1}, True)
    # the hook defaults to "no sample count" for every estimator that does not declare one
    assert all(cls.options_for_evaluations(8, 3, 4) is None for name, cls in registry().items()
               if name not in ("reinforce", "unordered-set", "indecater", "vimco"))
    assert registry()["vimco"].options_for_evaluations(8, 3, 4) == {"k": 8}


def test_the_command_records_the_matched_setting(isolated, capsys):
    assert main(["gradcheck", "discrete-vae", "--latent", "2x3", "--estimators", "reinforce,unordered-set,indecater,"
                 "gumbel", "--taus", "1", "--draws", "3", "--batch", "2", "--match-evaluations", "6",
                 "--figure", str(isolated / "fig.png")]) == 0
    from scgbench.leaderboard import read_records

    recs = {r["estimator"]: r for _, r in read_records(isolated / "results", kind="gradcheck")}
    assert {n: (r["setting"], r["evaluations_matched"], r["metrics"]["evals_per_draw"]) for n, r in recs.items()} == {
        "reinforce": ({"num_samples": 6}, True, 6), "unordered-set": ({"k": 6}, True, 6),
        "indecater": ({"samples": 1}, True, 5), "gumbel": ({"tau": 1.0}, False, 1)}
    assert all(r["match_evaluations"] == 6 for r in recs.values())
    assert recs["unordered-set"]["run_name"].endswith("unordered-set-k6")
    out = capsys.readouterr().out
    assert "k 6" in out and "(matched)" in out and "(unmatched: its own cost)" in out


def test_a_bad_budget_is_refused_before_any_work(isolated, capsys):
    assert main(["gradcheck", "discrete-vae", "--latent", "2x3", "--match-evaluations", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--match-evaluations must be an integer >= 1" in err and len(err.splitlines()) == 1
    assert not (isolated / "results").exists()
