"""VS-GAE: shapes, teacher forcing, exact batched decoding, metrics and a tiny end-to-end fit."""

import numpy as np
import pytest
import torch

from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
from scgbench.datamodules.nasbench101.enumeration import enumerate_space
from scgbench.datamodules.nasbench101.store import write_space
from scgbench.metrics.graphs import GenerationMetrics, ReconstructionAccuracy, graph_hashes, validity_checks
from scgbench.models.vsgae import VSGAE


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    path = write_space(enumerate_space(5), tmp_path_factory.mktemp("nb") / "space_v1.parquet")
    d = NASBench101DataModule(path=str(path), batch_size=16, seed=0, subset=400, max_test=6)
    d.setup()
    return d


def test_paper_dimensions():
    m = VSGAE()
    assert m.encoder.rounds[0].fwd.lin.weight.shape == (500, 500)      # Lin_{2dn×2dn}
    assert m.encoder.rounds[0].gru.weight_ih.shape == (3 * 250, 500)  # GRUCell_{2dn,dn}
    assert len(m.encoder.rounds) == len(m.graph_prop.rounds) == 2
    assert m.encoder.agg.value.out_features == 56 and m.encoder.agg_var is not None
    assert m.graph_prop.agg_var is None
    assert m.add_edges[0].in_features == 2 * 250 + 2 * 56 and m.add_node[-1].out_features == 5


def test_dense_view_and_teacher_forcing(dm):
    batch = next(iter(dm.train_dataloader()))
    m = VSGAE(dn=16, dg=8)
    types, adj, nv = m.dense(batch)
    for i in range(batch.num_graphs):
        g = batch.get_example(i)
        v = g.num_nodes
        assert nv[i] == v and torch.equal(types[i, :v], g.node_type) and (types[i, v:] == -1).all()
        dense = torch.zeros(v, v)
        dense[g.edge_index[0], g.edge_index[1]] = 1
        assert torch.equal(adj[i, :v, :v], dense)
    # the teacher-forced loss of one graph does not depend on the others in the batch
    z = torch.randn(batch.num_graphs, 8)
    nl, el = m.reconstruction_loss(z, types, adj, nv)
    nl1, el1 = m.reconstruction_loss(z[3:4], types[3:4], adj[3:4], nv[3:4])
    assert torch.allclose(nl[3], nl1[0], atol=1e-5) and torch.allclose(el[3], el1[0], atol=1e-5)
    # number of edge terms = sum over steps of the earlier nodes
    assert (nl > 0).all() and (el > 0).all()


def test_batched_decoding_is_exact():
    torch.manual_seed(0)
    m = VSGAE(dn=24, dg=6).eval()
    z = torch.randn(40, 6) * 2
    nt, ne = torch.rand(40, 6), torch.rand(40, 6, 6)
    T, A, N = m.decode(z, nt, ne, mode="sample")
    assert len(set(N.tolist())) > 1  # graphs of several sizes in one batch
    for i in range(40):
        t, a, n = m.decode(z[i:i + 1], nt[i:i + 1], ne[i:i + 1], mode="sample")
        assert torch.equal(t[0], T[i]) and torch.equal(a[0], A[i]) and n[0] == N[i]
    Tg, Ag, Ng = m.decode(z, mode="greedy")
    t, a, n = m.decode(z[5:6], mode="greedy")
    assert torch.equal(t[0], Tg[5]) and torch.equal(a[0], Ag[5])
    # decoded adjacency only has edges from earlier to later nodes, within the generated nodes
    assert (torch.tril(A) == 0).all()
    for i in range(40):
        assert (A[i, N[i]:] == 0).all() and (A[i, :, N[i]:] == 0).all()


def test_validity_checks_and_generation_metrics():
    types = np.full((4, 7), -1)
    adj = np.zeros((4, 7, 7), dtype=int)
    # 0: valid chain input->conv->output; 1: node without successor; 2: two outputs; 3: a cycle
    types[0, :3] = [0, 1, 4]; adj[0, 0, 1] = adj[0, 1, 2] = 1
    types[1, :4] = [0, 1, 2, 4]; adj[1, 0, 1] = adj[1, 1, 3] = adj[1, 0, 2] = 1
    types[2, :4] = [0, 1, 4, 4]; adj[2, 0, 1] = adj[2, 1, 2] = adj[2, 1, 3] = 1
    types[3, :4] = [0, 1, 2, 4]; adj[3, 0, 1] = adj[3, 1, 2] = adj[3, 2, 1] = adj[3, 2, 3] = 1
    nv = np.array([3, 4, 4, 4])
    c = validity_checks(types, adj, nv)
    assert c["all_have_successor"].tolist() == [True, False, True, True]
    assert c["one_output"].tolist() == [True, True, False, True]
    assert c["acyclic"].tolist() == [True, True, True, False]
    h = graph_hashes(types[:1], adj[:1], nv[:1])[0]
    m = GenerationMetrics(space_hashes=[h], train_hashes=[])
    m.update(torch.as_tensor(np.concatenate([types, types[:1]])), torch.as_tensor(np.concatenate([adj, adj[:1]])),
             torch.as_tensor(np.concatenate([nv, nv[:1]])))
    out = m.compute()
    assert out["validity"] == pytest.approx(2 / 5) and out["valid_in_space"] == 1.0
    assert out["uniqueness"] == pytest.approx(0.5) and out["novelty"] == 1.0
    r = ReconstructionAccuracy()
    r.update(torch.tensor([1.0, 0.5, 0.0, 1.0]))
    res = r.compute()
    assert res["acc"] == pytest.approx(0.625) and res["ci_low"] < 0.625 < res["ci_high"]


@pytest.mark.slow
def test_tiny_fit_and_test(dm, tmp_path):
    import lightning.pytorch as pl

    pl.seed_everything(0)
    m = VSGAE(dn=32, dg=8, lr=3e-3, recon_z_samples=2, recon_decodes=2, prior_samples=20, prior_decodes=2)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(m, datamodule=dm)
    first = trainer.callback_metrics["train/loss"].item()
    out = trainer.test(m, datamodule=dm, verbose=False)[0]
    for k in ("test/recon_acc", "test/recon_ci_low", "test/recon_ci_high", "test/prior_validity",
              "test/prior_valid_in_space", "test/prior_uniqueness", "test/prior_novelty"):
        assert k in out
    assert np.isfinite(out["test/recon_acc"]) and np.isfinite(out["test/prior_validity"])
    assert 0 <= out["test/recon_acc"] <= 1 and 0 <= out["test/prior_validity"] <= 1
    assert first < 30


def test_metric_states_reduce_like_one_process():
    """What DDP does (sum / cat of states) gives the one-process result: split the updates over two 'ranks'."""
    torch.manual_seed(1)
    m = VSGAE(dn=16, dg=6).eval()
    T, A, N = m.decode(torch.randn(120, 6) * 3, mode="sample")
    hashes = graph_hashes(T[:10].numpy(), A[:10].numpy(), N[:10].numpy())
    whole = GenerationMetrics(space_hashes=hashes[:5], train_hashes=hashes[5:8])
    whole.update(T, A, N)
    ranks = [GenerationMetrics(space_hashes=hashes[:5], train_hashes=hashes[5:8]) for _ in range(2)]
    ranks[0].update(T[::2], A[::2], N[::2])
    ranks[1].update(T[1::2], A[1::2], N[1::2])
    ranks[0].merge_state(ranks[1])
    a, b = whole.compute(), ranks[0].compute()
    assert 0 < a["validity"] < 1 and a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], equal_nan=True) for k in a)
    acc = torch.rand(11)
    r1, r2, r3 = ReconstructionAccuracy(), ReconstructionAccuracy(), ReconstructionAccuracy()
    r1.update(acc)
    r2.update(acc[:4])
    r3.update(acc[4:])
    r2.merge_state(r3)
    assert all(torch.allclose(r1.compute()[k], r2.compute()[k]) for k in r1.compute())


def _trained_like(m: VSGAE, seed: int = 0) -> VSGAE:
    """Perturb every parameter so that no layer sits at its initialisation (a bug hidden by zero biases or a
    symmetric start shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def test_batched_objective_equals_the_per_step_reference(dm):
    """The dense, all-graphs-all-steps objective (encoder, teacher-forced decoder, KL) equals the edge-list,
    per-step implementation that drops finished graphs (scgbench.bench.vsgae_reference), in value and gradient,
    at the paper's dimensions, on a batch with graphs of several sizes."""
    from scgbench.bench import vsgae_reference as ref
    from scgbench.bench.vsgae_speed import _batched_loss

    torch.manual_seed(0)
    m = _trained_like(VSGAE())
    m.train_predictor = False  # data without accuracies, as setup("fit") decides
    from scgbench.datamodules.nasbench101.datamodule import CellGraphs, collate_graphs

    sizes = dm.table.num_vertices
    rows = np.concatenate([np.flatnonzero(sizes == v)[:4] for v in range(2, 6)])  # every size of the space
    batch = collate_graphs([CellGraphs(dm.table, rows, None)[i] for i in np.random.default_rng(0).permutation(len(rows))])
    types, adj, nv = m.dense(batch)
    assert set(nv.tolist()) == {2, 3, 4, 5}
    mu0, lv0 = ref.encode(m, batch)
    mu1, lv1 = m.encode(batch)
    assert torch.allclose(mu0, mu1, atol=1e-5) and torch.allclose(lv0, lv1, atol=1e-5)
    z = torch.randn_like(mu0)
    for a, b in zip(ref.reconstruction_loss(m, z, types, adj, nv), m.reconstruction_loss(z, types, adj, nv)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    eps = torch.randn_like(mu0)
    l0, l1 = ref.loss(m, batch, eps), _batched_loss(m, batch, eps)
    assert abs(l0.item() - l1.item()) <= 1e-5 * abs(l0.item())
    params = [p for p in m.parameters() if p.requires_grad and p is not m.predictor[0].weight]
    g0 = torch.autograd.grad(l0, params, allow_unused=True)
    g1 = torch.autograd.grad(l1, params, allow_unused=True)
    for p, a, b in zip(params, g0, g1):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max().item())


def test_batched_decoding_equals_the_per_step_reference():
    from scgbench.bench import vsgae_reference as ref

    torch.manual_seed(2)
    m = _trained_like(VSGAE(dn=40, dg=8), 1).eval()
    z = torch.randn(60, 8) * 2
    nt, ne = torch.rand(60, 6), torch.rand(60, 6, 6)
    new, old = m.decode(z, nt, ne, mode="sample"), ref.decode(m, z, nt, ne)
    assert len(set(old[2].tolist())) > 1
    assert all(torch.equal(a, b) for a, b in zip(new, old))


def test_edge_loss_mean_averages_each_steps_edge_terms():
    """edge_loss='mean' (the authors' code) divides the edge terms of step t by its t + 1 candidate nodes: on a
    3-node graph, step 0's term is its 2-node prefix's (teacher forcing), and step 1's is halved."""
    torch.manual_seed(3)
    summed = _trained_like(VSGAE(dn=24, dg=6), 2)
    mean = VSGAE(dn=24, dg=6, edge_loss="mean")
    mean.load_state_dict(summed.state_dict())
    types = torch.tensor([[0, 1, 4, -1, -1, -1, -1]])
    adj = torch.zeros(1, 7, 7)
    adj[0, 0, 1] = adj[0, 1, 2] = 1
    z = torch.randn(1, 6)
    s = summed.reconstruction_loss(z, types, adj, torch.tensor([3]))[1]
    m = mean.reconstruction_loss(z, types, adj, torch.tensor([3]))[1]
    b0 = summed.reconstruction_loss(z, types, adj, torch.tensor([2]))[1]
    assert torch.allclose(mean.reconstruction_loss(z, types, adj, torch.tensor([2]))[1], b0)
    assert torch.allclose(m, b0 + (s - b0) / 2, atol=1e-6) and not torch.allclose(m, s)
    with pytest.raises(ValueError, match="edge_loss"):
        VSGAE(edge_loss="max")
    with pytest.raises(ValueError, match="posterior_noise"):
        VSGAE(posterior_noise=-1)
