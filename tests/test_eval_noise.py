"""Keyed evaluation noise: the same example gets the same sample in any batch, and the
noise is still Gumbel(0, 1) (Gumbel-max samples softmax(θ/β), thesis Eq. 5.15)."""

from __future__ import annotations

import math

import pytest
import torch

from scgbench.estimators import CAPABILITIES, OWN_PARAMETERISATION, get_estimator, keyed_noise, list_estimators
from scgbench.estimators.noise import (eval_noise_key, keyed_bits, keyed_gumbel, keyed_normal, keyed_uniform,
                                       mix64, mix64_int, sub_key)
from scgbench.models.evaluation import TEST, eval_noise


def _signed(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


def test_hash_is_splitmix64_on_tensors_and_python_ints():
    # first output of the splitmix64 generator seeded with 0 (Vigna's reference implementation)
    assert mix64_int(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    xs = [0, 1, 2 ** 63 - 1, -1, -2 ** 63, 123456789123456789]
    assert mix64(torch.tensor(xs)).tolist() == [_signed(mix64_int(x)) for x in xs]
    bits = keyed_bits(5, torch.tensor([3, 9]), (2, 3, 4))
    assert int(bits[1, 2, 1]) == _signed(sub_key(5, 9, 2, 1))   # tensor chain == Python chain, per coordinate


def test_noise_depends_on_identity_not_on_batch_or_padding():
    ids = torch.tensor([10, 11, 12, 13])
    a = keyed_gumbel(7, ids, (4, 5, 3))
    b = keyed_gumbel(7, torch.tensor([12, 10]), (2, 9, 3))        # other batch, longer padding
    assert torch.equal(b[0, :5], a[2]) and torch.equal(b[1, :5], a[0])
    assert not torch.equal(keyed_gumbel(8, ids, (4, 5, 3)), a)   # another key, other noise
    assert not torch.equal(a[0], a[1])


def test_uniform_gumbel_and_normal_laws():
    n = 200_000
    ids = torch.arange(n)
    u = keyed_uniform(3, ids, (n,))
    assert 0 < float(u.min()) and float(u.max()) < 1
    se = 1 / math.sqrt(12 * n)                                    # standard error of the mean of U(0, 1)
    assert abs(float(u.mean()) - 0.5) < 5 * se
    g = keyed_gumbel(3, ids, (n,)).double()
    euler, var = 0.5772156649015329, math.pi ** 2 / 6
    assert torch.isfinite(g).all()
    assert abs(float(g.mean()) - euler) < 5 * math.sqrt(var / n)
    assert abs(float(g.var()) - var) < 5 * math.sqrt((27 / 5 - 1) * var ** 2 / n)   # Gumbel excess kurtosis 12/5
    e = keyed_normal(3, ids, (n,)).double()
    assert abs(float(e.mean())) < 5 / math.sqrt(n) and abs(float(e.std()) - 1) < 5 / math.sqrt(2 * n)
    # successive coordinates of one example are uncorrelated
    pair = keyed_uniform(4, torch.arange(n), (n, 2))
    assert abs(float(torch.corrcoef(pair.T)[0, 1])) < 5 / math.sqrt(n)


@pytest.mark.parametrize("estimator", list_estimators(provides=frozenset(CAPABILITIES) - {OWN_PARAMETERISATION}))
def test_gumbel_max_frequencies_match_softmax_theta_over_beta(estimator):
    """Through the estimator's own sampled decoding: argmax(θ + β·G) ~ softmax(θ/β), per category within
    5 standard errors of the sample of n draws (deterministic for the fixed key)."""
    kw = {"num_samples": 2} if estimator == "reinforce" else {}
    est = get_estimator(estimator, beta=2.0, eval_mode="sample", **kw).eval()
    theta = torch.tensor([1.0, 0.0, -1.0, 2.5, 0.5])
    n = 40_000
    holder = torch.nn.ModuleList([est])
    with keyed_noise(holder, torch.arange(n), key=11):
        z = est(theta.expand(n, -1))
    freq = z.mean(0).double()
    p = torch.softmax(theta.double() / 2.0, 0)
    assert torch.all((freq - p).abs() < 5 * torch.sqrt(p * (1 - p) / n)), (freq, p)


def test_each_estimator_and_each_call_gets_its_own_noise():
    ests = torch.nn.ModuleList([get_estimator("gumbel", eval_mode="sample").eval() for _ in range(2)])
    x = torch.zeros(2000, 8)
    with keyed_noise(ests, torch.arange(2000), key=1):
        first, second, other = ests[0](x), ests[0](x), ests[1](x)
    agree = lambda a, b: float((a.argmax(-1) == b.argmax(-1)).float().mean())  # noqa: E731
    assert agree(first, second) < 0.2 and agree(first, other) < 0.2          # independent: about 1/8
    with keyed_noise(ests, torch.arange(2000), key=1):
        assert torch.equal(ests[0](x), first)                                 # call 0 again: same noise
    assert ests[0].eval_noise is None                                         # the context is left clean


def test_key_follows_the_run_seed(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    k3 = eval_noise_key(TEST, 0)
    assert k3 == eval_noise_key(TEST, 0) and k3 != eval_noise_key(TEST, 1)
    monkeypatch.setenv("PL_GLOBAL_SEED", "4")
    assert eval_noise_key(TEST, 0) != k3


def test_mnist_sampled_decoding_is_the_same_in_any_batch():
    from scgbench.models.mnist_addition import MNISTAdditionModule

    torch.manual_seed(0)
    model = MNISTAdditionModule(operands=3).eval()          # two nodes on one path
    images = torch.rand(6, 3, 1, 28, 28)
    ids = torch.tensor([50, 51, 52, 53, 54, 55])
    with torch.no_grad(), model.decoding("sample"):
        with eval_noise(model, ids, TEST):
            whole = model(images)
        sub = [4, 1]
        with eval_noise(model, ids[sub], TEST):
            part = model(images[sub])
        with eval_noise(model, ids + 100, TEST):
            others = model(images)
    with torch.no_grad():
        map_logits = model(images)
    torch.testing.assert_close(part, whole[sub])
    assert not torch.allclose(others, whole)                # the noise matters for these logits
    assert not torch.allclose(map_logits, whole)            # and sampled decoding is not MAP


def test_listops_sampled_parse_is_the_same_in_any_batch_and_padding():
    from scgbench.datamodules.listops import ListOpsConfig, collate_listops, generate
    from scgbench.models.listops import ListOpsModule

    s = generate(ListOpsConfig(seed=5, train_per_depth=3, val_per_depth=1, test_per_depth=1,
                               extrap_per_depth=1), ["train"])["train"]
    items = [(*(s.example(i)[k] for k in ("tokens", "parents", "values")), int(s.labels[i]), int(s.depths[i]), i)
             for i in range(len(s))]
    torch.manual_seed(0)
    model = ListOpsModule(variant="ours", dim=16, discretise="values").eval()
    whole = collate_listops(items)
    sub = [len(items) - 1, 0]
    part = collate_listops([items[i] for i in sub], pad_to=whole["tokens"].shape[1] + 5)
    assert torch.equal(part["index"], torch.tensor(sub))
    with torch.no_grad(), model.decoding("sample"):
        with eval_noise(model, whole["index"], TEST):
            a = model(whole)
        with eval_noise(model, part["index"], TEST):
            b = model(part)
        with eval_noise(model, whole["index"], TEST, 1):     # another evaluation set: other noise
            c = model(whole)
    with torch.no_grad():
        m = model(whole)
    for j, i in enumerate(sub):
        n = int(whole["lengths"][i])
        assert torch.equal(b["z"][j, :n].argmax(-1), a["z"][i, :n].argmax(-1))
        assert torch.equal(model.pred(b["states"][j, :n]).argmax(-1), model.pred(a["states"][i, :n]).argmax(-1))
    torch.testing.assert_close(b["logits"], a["logits"][sub])
    assert not torch.equal(c["z"].argmax(-1), a["z"].argmax(-1))
    assert not torch.equal(m["z"].argmax(-1), a["z"].argmax(-1))


def test_vsgae_prior_sample_does_not_depend_on_its_chunk():
    from scgbench.models.vsgae import VSGAE

    torch.manual_seed(0)
    m = VSGAE(dn=16, dg=6, prior_decodes=3).eval()
    t, a, n = m.decode_prior(torch.arange(8))
    sub = torch.tensor([6, 1])
    t2, a2, n2 = m.decode_prior(sub)
    rows = torch.cat([torch.arange(6 * 3, 7 * 3), torch.arange(3, 6)])      # 3 decodes per prior sample
    assert torch.equal(t2, t[rows]) and torch.equal(a2, a[rows]) and torch.equal(n2, n[rows])
    assert len({tuple(r.tolist()) for r in t}) > 1                          # decodes do differ


def test_vsgae_reconstruction_decodes_do_not_depend_on_the_batch(tmp_path):
    from torch_geometric.data import Batch

    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space
    from scgbench.models.vsgae import VSGAE

    path = write_space(enumerate_space(4), tmp_path / "space_v1.parquet")
    dm = NASBench101DataModule(path=str(path), seed=0)
    dm.setup()
    graphs = [dm.train_set[i] for i in range(5)]
    whole, part = Batch.from_data_list(graphs), Batch.from_data_list([graphs[3], graphs[0]])
    # the cell's identity survives batching (torch-geometric offsets attributes named *index* by default)
    assert part.cell_index.tolist() == [int(dm.train_index[3]), int(dm.train_index[0])]
    torch.manual_seed(0)
    m = VSGAE(dn=16, dg=6, recon_z_samples=2, recon_decodes=3).eval()
    k = 2 * 3

    def decodes(batch, model=m):
        mu, logvar = model.encode(batch)
        return model.decode_posterior(batch, mu, logvar)

    a, b = decodes(whole), decodes(part)
    rows = torch.cat([torch.arange(3 * k, 4 * k), torch.arange(0, k)])
    for x, y in zip(b, a):
        assert torch.equal(x, y[rows])
    m.hparams.eval_seed = 1                                  # another draw of the evaluation noise
    c = decodes(whole)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
