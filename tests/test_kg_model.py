"""KG path models (ComplEx, ComplEx-C, discretised `ours`) and the kg-paths benchmark wiring."""

from __future__ import annotations

import json

import pytest
import torch

from scgbench.models.kg import KGPathModule, cmul

N, R, D = 9, 3, 4


def _model(variant="ours", **kw):
    torch.manual_seed(0)
    return KGPathModule(variant, num_entities=N, num_relations=R, dim=D, **kw)


def _batch(B=6, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"head": torch.randint(N, (B,), generator=g), "rels": torch.randint(2 * R, (B, L), generator=g),
            "length": torch.tensor([1, 2, 3, 3, 2, 1])[:B], "tail": torch.randint(N, (B,), generator=g)}


def test_complex_score_is_re_of_trilinear_product():
    m = _model("complex").eval()
    b = _batch()
    logits = m(b["head"], b["rels"][:, :1], torch.ones(6, dtype=torch.long))
    E = torch.complex(*m.entity.weight.detach().chunk(2, -1))
    W = torch.complex(*m.relation.weight.detach().chunk(2, -1))
    want = ((E[b["head"]] * W[b["rels"][:, 0]]) @ E.conj().t()).real
    assert torch.allclose(logits, want, atol=1e-5)


def test_complex_c_composes_relations_and_respects_lengths():
    m = _model("complex-c").eval()
    b = _batch()
    logits = m(b["head"], b["rels"], b["length"])
    E, W = m.entity.weight.detach(), m.relation.weight.detach()
    for i in range(6):
        q = E[b["head"][i]]
        for r in b["rels"][i, :b["length"][i]]:
            q = cmul(q, W[r])
        assert torch.allclose(logits[i], q @ E.t(), atol=1e-5)


def test_ours_at_evaluation_walks_one_entity_per_hop():
    m = _model("ours").eval()
    b = _batch()
    logits = m(b["head"], b["rels"], b["length"])
    E, W = m.entity.weight.detach(), m.relation.weight.detach()
    for i in range(6):
        s = E[b["head"][i]]
        rs = b["rels"][i, :b["length"][i]]
        for r in rs[:-1]:
            s = E[(cmul(s, W[r]) @ E.t()).argmax()]  # MAP entity, α = 1: purely discrete
        assert torch.allclose(logits[i], cmul(s, W[rs[-1]]) @ E.t(), atol=1e-5)


@pytest.mark.parametrize("estimator,kw", [("gumbel", {}), ("st-gumbel", {}),
                                          ("reinforce", {"num_samples": 2, "baseline": "loo"})])
def test_training_step_gives_finite_gradients(estimator, kw, tape):
    m = _model("ours", estimator=estimator, estimator_kwargs=kw, subject_dropout=0.1, relation_dropout=0.2,
               object_dropout=0.3, entity_reg=1e-3, relation_reg=1e-3).train()
    m.hop.estimator.set_beta(1.0)
    m.hop.set_alpha(0.5)
    loss, _ = m.training_loss(_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert m.entity.weight.grad.abs().sum() > 0 and torch.isfinite(m.entity.weight.grad).all()
    assert m.relation.weight.grad.abs().sum() > 0


def test_estimator_exists_before_the_graph_size_is_known():
    from scgbench.estimators import estimators_of

    assert len(estimators_of(KGPathModule("ours"))) == 1  # built lazily at setup, estimator from the start
    assert estimators_of(KGPathModule("complex-c")) == []
    m = _model("ours")
    assert estimators_of(m) == [m.hop.estimator]  # shared, not duplicated


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        KGPathModule("transe", num_entities=N, num_relations=R)
    with pytest.raises(ValueError, match="object_dropout"):
        KGPathModule("ours", object_dropout=1.0)
    m = _model()
    with pytest.raises(ValueError, match="built for"):
        m.build(N + 1, R)


@pytest.mark.slow
def test_kg_benchmark_runs_end_to_end_and_writes_a_record(tmp_path, monkeypatch):
    from scgbench.runner import run

    monkeypatch.setenv("SCGBENCH_DATA", str(tmp_path / "data"))
    rec = run("kg-paths", variant="ours", profile="quick", seed=0, results=str(tmp_path / "results"),
              run_dir=str(tmp_path / "run"),
              overrides=["--data.dataset=nations-paths", "--model.dim=8", "--trainer.max_epochs=1",
                         "--trainer.limit_train_batches=2", "--trainer.check_val_every_n_epoch=1",
                         "--trainer.enable_progress_bar=false"])
    m = rec["metrics"]
    assert 0 < m["test/mrr"] <= 1 and "test/mrr_len6" in m and "test/mrr_extrap" in m and "test/mrr_drop" in m
    assert rec["hparams"]["model"]["num_entities"] == 14
    saved = json.loads(open(rec["path"]).read())
    assert saved["benchmark"] == "kg-paths" and "nations-paths" in saved["data_source"]
