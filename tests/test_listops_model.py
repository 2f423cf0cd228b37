"""ListOps model: padding never leaks, gold trees, every estimator on both node kinds, metrics, benchmark."""

from __future__ import annotations

import pytest
import torch

from scgbench.datamodules.listops import ListOpsConfig, collate_listops, generate
from scgbench.estimators import list_estimators
from scgbench.models.listops import VARIANTS, ListOpsModule, _masks


@pytest.fixture(scope="module")
def items():
    cfg = ListOpsConfig(seed=5, train_per_depth=4, val_per_depth=1, test_per_depth=1, extrap_per_depth=1)
    s = generate(cfg, ["train"])["train"]
    return [(*(a for a in (s.example(i)[k] for k in ("tokens", "parents", "values"))),
             int(s.labels[i]), int(s.depths[i])) for i in range(len(s))]


def _deterministic(model: ListOpsModule) -> ListOpsModule:
    """Training mode without randomness: β = 0 (softmax relaxation), no dropout, α = 1 (no residual coin)."""
    model.train()
    for m in model.modules():
        if hasattr(m, "set_beta"):
            m.set_beta(0.0)
        if hasattr(m, "set_alpha"):
            m.set_alpha(1.0)
    if hasattr(model, "msg_dropout"):
        model.msg_dropout.p = 0.0
    return model


@pytest.mark.parametrize("variant,topk", [(v, None) for v in VARIANTS] + [("arb", 3), ("ours", 3)])
def test_padding_does_not_leak(items, variant, topk):
    torch.manual_seed(0)
    model = ListOpsModule(variant=variant, dim=16, edge_topk=topk)
    tight = collate_listops(items)
    loose = collate_listops(items, pad_to=tight["tokens"].shape[1] + 9)
    # evaluation (MAP): logits, parents and metric outcome vectors identical
    model.eval()
    with torch.no_grad():
        a, b = model(tight), model(loose)
        torch.testing.assert_close(a["logits"], b["logits"])
        ma, mb = model._parse_metrics(tight, a), model._parse_metrics(loose, b)
        assert ma.keys() == mb.keys()
        for k in ma:
            torch.testing.assert_close(ma[k], mb[k])
        if "z" in a:
            L = tight["tokens"].shape[1]
            assert torch.equal(a["z"].argmax(-1), b["z"].argmax(-1)[:, :L])
            assert b["z"][:, L:].abs().sum() == 0 and b["z"][..., L:].abs().sum() == 0
    if variant == "lstm":
        return
    # training (deterministic relaxation): identical loss and identical gradients
    _deterministic(model)
    grads = []
    for batch in (tight, loose):
        model.zero_grad()
        loss, _ = model.training_loss(batch)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], msg=n)


@pytest.mark.parametrize("variant,estimator", [("ours", "gumbel"), ("ours", "st-gumbel"), ("arb", "reinmax"),
                                               ("ours-gt", "gumbel")])
def test_fused_edge_chain_equals_the_reference(items, variant, estimator):
    """The fused edge messages (compiled and eager) give today's loss and gradients, in training mode with every
    source of noise on (message dropout, Gumbel noise, the DropRes coin), from the same random draws: the
    dropout bits are the same entries of the same stream (the RNG ends in the same state)."""
    from scgbench.models.listops import EDGE_CHAINS

    torch.manual_seed(0)
    model = ListOpsModule(variant=variant, estimator=estimator, dim=16, rounds=3, dropout=0.3).train()
    for m in model.modules():
        if hasattr(m, "set_alpha"):
            m.set_alpha(0.5)
    batch = collate_listops(items)
    results = {}
    for chain in EDGE_CHAINS:
        model.edge_chain = chain
        model.zero_grad()
        torch.manual_seed(7)
        loss, _ = model.training_loss(batch)
        loss.backward()
        results[chain] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                          torch.rand(4))
    ref_loss, ref_grads, ref_next = results["reference"]
    from scgbench.models.listops import _COMPILED
    assert all(_COMPILED[("cpu", f)] is not None for f in ("_edge_forward", "_edge_backward"))  # no eager fallback
    assert ref_grads["msg2.weight"].abs().sum() > 0 and ref_grads["msg1.weight"].abs().sum() > 0
    for chain in ("eager", "compiled"):
        loss, grads, after = results[chain]
        torch.testing.assert_close(loss, ref_loss, msg=chain)
        assert grads.keys() == ref_grads.keys(), chain
        for n in ref_grads:
            torch.testing.assert_close(grads[n], ref_grads[n], msg=f"{chain}: {n}")
        assert torch.equal(after, ref_next), chain  # the same number of draws from the global stream


@pytest.mark.parametrize("width", [16, 60])
def test_compiled_dropout_mask_is_the_int16_comparison_for_every_pattern(width):
    """The compiled CPU kernel reads the int16 dropout bits through a bfloat16 view (_cpu_bits); for all 65,536
    patterns (NaN payloads of bfloat16 included; width 60 also runs the loop's scalar tail) it drops exactly the
    entries with bits < cut."""
    from scgbench.models.listops import _COMPILED, _edge_forward, _run

    values = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    rows = -(-len(values) // width)
    bits = torch.cat([values, values[:rows * width - len(values)]]).view(rows, width)
    a, c = torch.ones(rows, width), torch.zeros(rows, width)  # relu(a[i] + c[i]) = 1 everywhere
    idx = torch.arange(rows)
    w, w2, b2 = torch.ones(rows), torch.eye(width), torch.zeros(width)
    for p in (0.1, 0.5, 0.9):
        cut = -32768 + round(p * 65536)
        _, h, _ = _run(_edge_forward, True, torch.device("cpu"), a, c, w, w2, b2, idx, idx, bits, cut, 2.0)
        assert torch.equal(h == 0, bits < cut) and torch.all(h[bits >= cut] == 2.0)
    assert _COMPILED[("cpu", "_edge_forward")] is not None  # the compiled kernel ran (no fallback to eager)


def test_a_failing_compile_falls_back_to_the_eager_chain_with_a_warning(items, monkeypatch):
    """No C++ compiler (say): the same functions run eagerly from then on, with one warning; the results match."""
    import scgbench.models.listops as listops

    def broken(*args):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(listops, "_COMPILED", {("cpu", "_edge_forward"): broken, ("cpu", "_edge_backward"): broken})
    torch.manual_seed(0)
    model = ListOpsModule(variant="ours", dim=16, rounds=2).train()
    batch = collate_listops(items)
    losses = []
    for chain in ("compiled", "eager"):
        model.edge_chain = chain
        torch.manual_seed(3)
        if chain == "compiled":
            with pytest.warns(UserWarning, match="torch.compile failed"):
                losses.append(model.training_loss(batch)[0])
        else:
            losses.append(model.training_loss(batch)[0])
    assert listops._COMPILED[("cpu", "_edge_forward")] is None
    torch.testing.assert_close(losses[0], losses[1])
    losses[0].backward()  # the backward falls back too
    assert listops._COMPILED[("cpu", "_edge_backward")] is None


def test_fused_edge_chain_drops_the_reference_entries(items):
    """Control for the test above: another dropout draw changes the loss (the mask is no bystander there)."""
    torch.manual_seed(0)
    model = _deterministic(ListOpsModule(variant="ours", dim=16, rounds=3))
    model.msg_dropout.p = 0.3
    batch = collate_listops(items)
    losses = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        losses.append(float(model.training_loss(batch)[0].detach()))
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_topk_large_equals_exact(items):
    torch.manual_seed(0)
    exact = _deterministic(ListOpsModule(variant="ours", dim=16))
    topk = _deterministic(ListOpsModule(variant="ours", dim=16, edge_topk=100))
    topk.load_state_dict(exact.state_dict())
    batch = collate_listops(items)
    torch.testing.assert_close(exact.training_loss(batch)[0], topk.training_loss(batch)[0])


def test_gold_edges_and_masks(items):
    batch = collate_listops(items)
    model = ListOpsModule(variant="ours-gt", dim=8)
    b, c, p, w, z, _ = model._edges(batch["tokens"], batch["mask"], batch["parents"])
    child_ok, parent_ok = _masks(batch["tokens"], batch["mask"])
    assert len(b) == int(child_ok.sum()) == int((batch["lengths"] - 2).sum())
    assert torch.equal(p, batch["parents"][b, c]) and (w == 1).all() and z is None
    assert not child_ok[:, 0].any() and not parent_ok[torch.arange(len(items)), batch["lengths"] - 1].any()


def test_parse_metrics_on_gold_choice(items):
    batch = collate_listops(items)
    model = ListOpsModule(variant="ours", dim=8).eval()
    L = batch["tokens"].shape[1]
    gold = batch["parents"].clamp_min(0)
    z = torch.nn.functional.one_hot(gold, L).float()
    states = torch.zeros(len(items), L, 8)
    res = model._parse_metrics(batch, {"z": z, "states": states})
    assert res["edge_prec"].mean() == 1 and res["edge_prec_all"].mean() == 1
    n_ops = int(((batch["tokens"] >= 10) & (batch["tokens"] <= 12)).sum())
    n_digits_args = int(((batch["tokens"] < 10) & batch["mask"]).sum())
    assert res["inter_acc"].numel() == n_ops
    # per-operator intermediate accuracy splits the operator tokens: counts and hits add up to the total
    per_op = [res[f"inter_acc_{n}"] for n in ("min", "max", "med")]
    assert [v.numel() for v in per_op] == [int((batch["tokens"] == op).sum()) for op in (10, 11, 12)]
    assert sum(v.sum() for v in per_op) == res["inter_acc"].sum()
    assert res["edge_prec"].numel() == n_digits_args + n_ops - len(items)   # all but roots and `]`
    # a choice that always picks position 0 is right exactly for the root's children
    z0 = torch.zeros_like(z)
    z0[..., 0] = 1
    hit = model._parse_metrics(batch, {"z": z0, "states": states})["edge_prec"]
    assert 0 < hit.mean() < 1


@pytest.mark.parametrize("estimator,kwargs", [(e, {"baseline": "loo", "num_samples": 2} if e == "reinforce" else {})
                                              for e in list_estimators(num_categories=10, provides=frozenset())] + [("reinforce", {"baseline": "ema",
                                                                                           "num_samples": 1})])
def test_every_estimator_trains_parser_and_nodes(items, estimator, kwargs, tape):
    torch.manual_seed(0)
    model = ListOpsModule(variant="ours", dim=16, estimator=estimator, estimator_kwargs=kwargs)
    model.train()
    batch = collate_listops(items)
    loss, logs = model.training_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("lstm_q.weight_ih_l0", "parse_embed.weight", "pred.0.weight", "msg1.weight"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    assert 0 <= float(logs["edge_prec"]) <= 1


def test_score_function_node_estimator_with_pathwise_edges(items, tape):
    model = ListOpsModule(variant="ours", dim=16, estimator="gumbel", node_estimator="reinforce",
                          node_estimator_kwargs={"baseline": "loo", "num_samples": 2})
    loss, _ = model.training_loss(collate_listops(items))
    loss.backward()
    assert model.pred[0].weight.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ValueError, match="unknown ListOps variant"):
        ListOpsModule(variant="tree")
    with pytest.raises(ValueError, match="edge_topk"):
        ListOpsModule(edge_topk=0)
    with pytest.raises(ValueError, match="unknown estimator"):
        ListOpsModule(estimator="gumble")


def test_benchmark_registered_with_profiles_and_ablations():
    from scgbench.benchmarks import get_benchmark
    from scgbench.config import BenchmarkCLI, benchmark_args

    bm = get_benchmark("listops")

    def config(profile, variant):
        return BenchmarkCLI(bm, benchmark_args(bm, profile, variant, 0)).resolved()

    paper = config("paper", "ours")
    assert paper["model"]["dim"] == 60 and paper["data"]["batch_size"] == 100 and paper["model"]["lr"] == 5e-4
    assert paper["trainer"]["max_epochs"] == 100
    assert paper["tricks"]["tempmatch"]["class_path"] == "scgbench.callbacks.TempMatch"
    assert paper["tricks"]["tempmatch"]["init_args"].items() >= {"gamma": 0.008, "updates_per_epoch": 10}.items()
    assert paper["tricks"]["dropres"]["init_args"]["rate"] == 0.002
    assert set(bm.variants) >= {"ours", "ours-notm", "ours-nodr", "ours-notm-nodr", "ours-tau2", "ours-tau4", "lstm",
                                "arb", "arb-gt", "ours-gt"}
    nodr = config("quick", "ours-nodr")
    assert nodr["tricks"]["dropres"] is None and nodr["model"]["dropres"] is False
    assert config("quick", "ours-notm")["tricks"]["tempmatch"] is None
    # quick restricts parent candidates to preceding tokens; the paper profile keeps the SPEC's all positions
    assert config("quick", "ours")["model"]["parent_candidates"] == "preceding"
    assert paper["model"]["parent_candidates"] == "all"
    # digits and operators discretised; every node with -all (SPEC literally), operators only with -ops
    for profile in ("quick", "paper"):
        for v, d in (("ours", "values"), ("ours-gt", "values"), ("ours-notm-nodr", "values"), ("ours-all", "all"),
                     ("ours-gt-all", "all"), ("ours-all-nodr", "all"), ("ours-gt-ops", "operators")):
            assert config(profile, v)["model"]["discretise"] == d, (profile, v)
    assert {r["variant"] for r in bm.reference} >= {"ours", "lstm", "ours-gt", "ours-nodr"}


def test_leaderboard_rows_pool_records_by_what_ran(tmp_path):
    """A record's row is named by its discretisation, so records from before `values` became the default pool
    with today's: `ours-vals` + `ours` (values) → `ours`; `ours` without `discretise` (it ran every node) →
    `ours-all`."""
    import json

    from scgbench.benchmarks.listops import row_variant
    from scgbench.leaderboard import render

    def rec(variant, seed, acc, discretise=None):
        # as schema-1 records were written: the profile ⊕ variant as arguments, then the seed
        base = variant.replace("-vals", "")
        base = "ours-gt" if base.startswith("ours-gt") else ("ours" if base.startswith("ours") else base)
        model = {"variant": base} | ({"discretise": discretise} if discretise else {})
        args = [f"--model.{k}={v}" for k, v in model.items()] + [f"--data.seed={seed}"]
        if variant.endswith("notm-nodr"):
            args.insert(0, "--model.dropres=false")
        return {"benchmark": "listops", "variant": variant, "estimator": "gumbel", "profile": "quick",
                "seed": seed, "metrics": {"test/acc": acc}, "tricks": {}, "data_source": "gen",
                "hparams": {"model": model}, "args": args}

    cases = [(rec("ours", 0, 0.80), "ours-all"), (rec("ours-gt", 0, 0.80), "ours-gt-all"),
             (rec("ours-notm", 0, 0.8), "ours-all-notm"), (rec("ours-vals", 1, 0.82, "values"), "ours"),
             (rec("ours", 2, 0.86, "values"), "ours"), (rec("ours-vals-notm-nodr", 0, 0.5, "values"), "ours-notm-nodr"),
             (rec("ours-gt-vals", 0, 0.9, "values"), "ours-gt"), (rec("ours-gt-all", 1, 0.9, "all"), "ours-gt-all"),
             (rec("ours-ops-notm-nodr", 0, 0.9, "operators"), "ours-ops-notm-nodr"), (rec("lstm", 0, 0.8), "lstm")]
    for r, row in cases:
        assert row_variant(r) == row, r["variant"]
    for i, (r, _) in enumerate(cases):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    text = render(tmp_path)
    rows = {ln.split(" | ")[1]: ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()}
    assert rows["ours"].endswith("| ours | gumbel | none | quick | D1 | 2 | 84.0 ± 2.8 |")  # seeds 1, 2
    assert rows["ours-gt-all"].endswith("| ours-gt-all | gumbel | none | quick | D1 | 2 | 85.0 ± 7.1 |")  # seeds 0, 1


@pytest.mark.slow
def test_end_to_end_run_record(tmp_path, monkeypatch):
    """`scgbench run listops` path on a tiny generated set: all metrics of SPEC §2.2 land in the record."""
    from scgbench.runner import run

    monkeypatch.setenv("SCGBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    rec = run("listops", variant="ours", profile="quick", seed=0, write=False, run_dir=str(tmp_path / "run"),
              overrides=["--data.train_per_depth=12", "--data.val_per_depth=4", "--data.test_per_depth=4",
                         "--data.extrap_per_depth=4", "--trainer.max_epochs=2", "--data.batch_size=20",
                         "--trainer.enable_progress_bar=false", "--model.dim=16"])
    m = rec["metrics"]
    for k in ("test/acc", "test/edge_prec", "test/inter_acc", "test/inter_acc_med", "test/acc_d8", "test/acc_d10",
              "test/acc_sampled", "test/edge_prec_sampled", "test/acc_d10_sampled"):
        assert 0.0 <= m[k] <= 1.0, k
    assert rec["schedule_end"]["alpha"] == 1.0 and rec["schedule_end"]["beta"] > 0.99
    assert (tmp_path / "run" / "figures" / "grad_magnitude.json").exists()
    assert "procedural listops generator v1" in rec["data_source"]


def test_cosine_lr_decay_follows_global_step():
    from types import SimpleNamespace

    model = ListOpsModule(variant="ours-gt", dim=8, lr=0.01, lr_decay="cosine")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step, want in ((0, 0.01), (50, 0.005), (100, 0.0), (120, 0.0)):
        model._trainer = SimpleNamespace(estimated_stepping_batches=100, global_step=step, optimizers=[opt],
                                         accumulate_grad_batches=1)
        model.on_train_start()  # the plan (100 steps) is read once per fit
        model.on_train_batch_start(None, 0)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="lr_decay"):
        ListOpsModule(lr_decay="linear")


@pytest.mark.parametrize("estimator", ["gumbel", "st-gumbel"])
@pytest.mark.parametrize("topk", [None, 3])
def test_preceding_parent_candidates(items, estimator, topk):
    """``parent_candidates='preceding'``: in prefix notation every gold parent precedes its child, so the
    parser's candidates are the earlier real tokens (the gold parent always among them); no mass, message or
    MAP choice ever goes to the child itself or a later token. ``'all'`` (SPEC default) still offers later ones."""
    batch = collate_listops(items)
    torch.manual_seed(0)
    model = ListOpsModule(variant="ours", dim=16, estimator=estimator, edge_topk=topk,
                          parent_candidates="preceding").train()
    b, c, p, w, z, logits = model._edges(batch["tokens"], batch["mask"], batch["parents"])
    assert (p < c).all() and len(b) > 0
    L = batch["tokens"].shape[1]
    later = torch.ones(L, L, dtype=torch.bool).triu()
    assert z[:, later].abs().sum() == 0
    child_ok, _ = _masks(batch["tokens"], batch["mask"])
    gold = batch["parents"]
    assert (gold[child_ok] < torch.arange(L).expand_as(gold)[child_ok]).all()   # the prior never excludes gold
    model.eval()
    with torch.no_grad():
        pred = model(batch)["z"].argmax(-1)
    assert (pred[child_ok] < torch.arange(L).expand_as(pred)[child_ok]).all()
    # the SPEC default offers every other real token, later ones included
    model_all = ListOpsModule(variant="ours", dim=16, estimator=estimator).train()
    model_all.load_state_dict(model.state_dict())
    _, c2, p2, *_ = model_all._edges(batch["tokens"], batch["mask"], batch["parents"])
    assert (p2 > c2).any()
    with pytest.raises(ValueError, match="parent_candidates"):
        ListOpsModule(parent_candidates="later")


@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_operator_only_discretisation(items, estimator):
    """``discretise='operators'``: only operator nodes (the intermediate results) are discretised; a digit or
    ``]`` receives no message on the gold tree, so its state stays exactly its token embedding through every
    round, while with ``'all'`` (SPEC default) it becomes a digit embedding row E2[k] after round 1."""
    from scgbench.specs.listops import CLOSE_ID, MED_ID, MIN_ID

    batch = collate_listops(items)
    tokens, mask = batch["tokens"], batch["mask"]
    torch.manual_seed(0)
    ops = ListOpsModule(variant="ours-gt", dim=16, discretise="operators", estimator=estimator).eval()
    every = ListOpsModule(variant="ours-gt", dim=16, estimator=estimator).eval()
    every.load_state_dict(ops.state_dict())
    edges = ops._edges(tokens, mask, batch["parents"])[:4]
    is_op = mask & (tokens >= MIN_ID) & (tokens <= MED_ID)
    leaf = mask & ~is_op
    assert (leaf & (tokens == CLOSE_ID)).any() and is_op.any()
    with torch.no_grad():
        x_ops = ops.gnn(tokens, mask, edges, rounds=3)
        x_all = every.gnn(tokens, mask, edges, rounds=3)
        xe = ops.embed(tokens)
    torch.testing.assert_close(x_ops[leaf], xe[leaf])
    digits = ops.embed.weight[:10]
    dist = (x_all[leaf][:, None, :] - digits[None]).abs().amax(-1).amin(-1)   # distance to the nearest E2[k]
    assert dist.max() < 1e-5 and not torch.allclose(x_all[leaf], xe[leaf])
    # with the messages switched off, an operator's state after round 2 is its round-1 discretisation: a digit
    # embedding row under 'operators' (and its own embedding if it were not discretised)
    silent = ListOpsModule(variant="ours-gt", dim=16, discretise="operators", estimator=estimator).eval()
    silent.load_state_dict(ops.state_dict())
    torch.nn.init.zeros_(silent.msg2.weight)
    torch.nn.init.zeros_(silent.msg2.bias)
    with torch.no_grad():
        x_silent = silent.gnn(tokens, mask, edges, rounds=2)
    dist_op = (x_silent[is_op][:, None, :] - digits[None]).abs().amax(-1).amin(-1)
    assert dist_op.max() < 1e-5 and not torch.allclose(x_silent[is_op], xe[is_op])
    torch.testing.assert_close(x_silent[leaf], xe[leaf])
    # 'values': digits become digit rows as with 'all', but a `]` keeps its embedding
    vals = ListOpsModule(variant="ours-gt", dim=16, discretise="values", estimator=estimator).eval()
    vals.load_state_dict(ops.state_dict())
    with torch.no_grad():
        x_vals = vals.gnn(tokens, mask, edges, rounds=3)
    close = tokens == CLOSE_ID
    torch.testing.assert_close(x_vals[close & mask], xe[close & mask])
    torch.testing.assert_close(x_vals[leaf & ~close], x_all[leaf & ~close])
    with pytest.raises(ValueError, match="discretise"):
        ListOpsModule(discretise="digits")
