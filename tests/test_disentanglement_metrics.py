"""Disentanglement metrics. Expected values are derived from the definitions (see each metric's
docstring): perfect, zero, duplicated, permuted and missing-factor representations, closed-form DCI and
modularity matrices, Gaussian total correlation, the reference's random-stream order, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from scgbench.metrics.disentanglement import (completeness, compute_beta_vae_sklearn, compute_downstream_task, compute_factor_vae, compute_mig,
                                              compute_modularity_explicitness, compute_sap,
                                              compute_unsupervised_metrics, dci_from_codes, disentanglement,
                                              evaluate_all, gaussian_total_correlation,
                                              gaussian_wasserstein_correlation, mig_from_codes, modularity,
                                              modularity_explicitness_from_codes, sap_from_codes,
                                              unsupervised_from_codes)
from scgbench.specs.disentanglement import GroundTruthData
from scgbench.metrics.disentanglement.utils import (discrete_entropy, discrete_mutual_info,
                                                    generate_batch_factor_code, histogram_discretize)


class FactorImages(GroundTruthData):
    """Observations carry the factor values in their first pixels (an "identity" dataset); an optional
    nuisance draw makes the random stream depend on observation sampling as for colour/NORB data."""

    name = "factor_images"

    def __init__(self, sizes=(4, 5, 6), nuisance=False):
        self.sizes = list(sizes)
        self.factor_names = tuple(f"f{i}" for i in range(len(sizes)))
        self.nuisance = nuisance

    @property
    def factors_num_values(self):
        return self.sizes

    @property
    def observation_shape(self):
        return (64, 64, 1)

    def draw_nuisance(self, factors, rng):
        return rng.uniform(0, 1, [factors.shape[0], 1]) if self.nuisance else None

    def render(self, factors, nuisance=None):
        x = np.zeros((factors.shape[0], 64, 64, 1), np.float32)
        x[:, 0, :factors.shape[1], 0] = factors
        if nuisance is not None:
            x[:, 1, 0, 0] = nuisance[:, 0]
        return x


def identity(x):
    return x[:, 0, :3, 0].astype(np.float64)


def sample(sizes=(4, 5, 6), n=3000, seed=0):
    rng = np.random.RandomState(seed)
    return np.stack([rng.randint(s, size=n) for s in sizes], axis=1)


# ------------------------------------------------------------------------------------------ utilities
def test_discretisation_and_mutual_information_match_definitions():
    x = np.random.RandomState(0).randn(2, 500)
    d = histogram_discretize(x, 20)
    assert d.min() == 1 and d.max() == 20
    for i in range(2):  # equal-width bins between min and max, the max in the last bin
        edges = np.linspace(x[i].min(), x[i].max(), 21)
        np.testing.assert_array_equal(d[i], np.clip(np.searchsorted(edges, x[i], side="right"), 1, 20))
    y = sample((3, 4), 2000).T
    mi = discrete_mutual_info(y, y)
    h = discrete_entropy(y)
    for j in range(2):
        p = np.bincount(y[j]) / y.shape[1]
        assert h[j] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-12)
        assert mi[j, j] == pytest.approx(h[j], abs=1e-12)
    # I(a; b) from an explicit joint table
    a, b = y[0], (y[0] + y[1]) % 3
    joint = np.histogram2d(a, b, bins=[3, 3])[0] / a.size
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    expected = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    assert discrete_mutual_info(a[None], b[None])[0, 0] == pytest.approx(expected, abs=1e-12)


def test_sampling_consumes_the_stream_like_the_reference():
    data = FactorImages(nuisance=True)
    mus, ys = generate_batch_factor_code(data, identity, 37, np.random.RandomState(4), batch_size=16)
    rng = np.random.RandomState(4)  # reference order: per mini-batch, factors then observation randomness
    fs = []
    for k in (16, 16, 5):
        f = np.stack([rng.randint(s, size=k) for s in data.sizes], axis=1)
        rng.uniform(0, 1, [k, 1])
        fs.append(f)
    np.testing.assert_array_equal(ys.T, np.concatenate(fs))
    np.testing.assert_array_equal(mus.T, np.concatenate(fs))
    rng2 = np.random.RandomState(4)
    generate_batch_factor_code(data, identity, 37, rng2, batch_size=16)
    assert rng2.randint(1 << 30) == rng.randint(1 << 30)


# ------------------------------------------------------------------------------------------------ MIG
def test_mig_perfect_zero_duplicated_permuted_missing():
    f = sample()
    noise = np.random.RandomState(1).randn(*f.shape)
    assert mig_from_codes(f, f)["discrete_mig"] > 0.97  # perfect (finite-sample MI bias only)
    perm = mig_from_codes(f[:, [2, 0, 1]], f)["discrete_mig"]
    assert perm == pytest.approx(mig_from_codes(f, f)["discrete_mig"], abs=1e-12)  # permutation invariant
    assert mig_from_codes(np.zeros_like(f), f)["discrete_mig"] == 0.0  # constant codes: no information
    assert mig_from_codes(np.hstack([f, f]), f)["discrete_mig"] == pytest.approx(0.0, abs=1e-12)  # duplicated
    # a missing factor contributes a gap ≈ 0: MIG ≈ (K−1)/K
    missing = mig_from_codes(np.column_stack([f[:, 0], f[:, 1], noise[:, 2]]), f)["discrete_mig"]
    assert 2 / 3 - 0.03 < missing < 2 / 3 + 0.01
    assert mig_from_codes(noise, f)["discrete_mig"] < 0.03


def test_mig_from_dataset_equals_from_codes():
    data = FactorImages()
    score = compute_mig(data, identity, np.random.RandomState(0), num_train=2000)["discrete_mig"]
    mus, ys = generate_batch_factor_code(data, identity, 2000, np.random.RandomState(0))
    assert score == mig_from_codes(mus.T, ys.T)["discrete_mig"] and score > 0.95


# ------------------------------------------------------------------------------------------------ DCI
def test_dci_closed_form_matrices():
    k = 4
    eye = np.eye(k)
    assert disentanglement(eye) == pytest.approx(1.0, abs=1e-6) and completeness(eye) == pytest.approx(1.0, abs=1e-6)
    ones = np.ones((k, k))
    assert disentanglement(ones) == pytest.approx(0.0, abs=1e-9) and completeness(ones) == pytest.approx(0.0, abs=1e-9)
    dup = np.vstack([eye, eye])  # every factor split over two codes
    assert disentanglement(dup) == pytest.approx(1.0, abs=1e-6)
    assert completeness(dup) == pytest.approx(1 - np.log(2) / np.log(2 * k), abs=1e-6)
    one_code = np.zeros((k, k))
    one_code[0] = 1  # a single code explains every factor
    assert disentanglement(one_code) == pytest.approx(0.0, abs=1e-6)
    assert completeness(one_code) == pytest.approx(1.0, abs=1e-6)
    assert disentanglement(np.zeros((k, k))) == pytest.approx(0.0, abs=1e-9)  # no importance at all
    half = np.array([[1.0, 1.0], [0.0, 1.0]])  # code 0: uniform over 2 factors (D=0), code 1: pure (D=1)
    assert disentanglement(half) == pytest.approx(1 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="importance matrix"):
        disentanglement(np.ones((3, 1)))
    # the reference's matrix cases: empty code, missed factors, one code for two factors, redundant codes
    d5 = np.diag(5.0 * np.ones(5))
    empty = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert disentanglement(empty) == pytest.approx(1.0, abs=1e-6) and completeness(empty) == pytest.approx(1.0, abs=1e-6)
    assert disentanglement(d5[:2]) == pytest.approx(1.0, abs=1e-6) and completeness(d5[:2]) == pytest.approx(1.0, abs=1e-6)
    two = np.hstack([d5, d5])
    assert disentanglement(two) == pytest.approx(1 - np.log(2) / np.log(10), abs=1e-6)
    assert completeness(two) == pytest.approx(1.0, abs=1e-6)
    red = np.vstack([d5, d5])
    assert completeness(red) == pytest.approx(1 - np.log(2) / np.log(10), abs=1e-6)
    assert completeness(np.zeros((10, 10))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.slow
def test_dci_perfect_and_noise_representations():
    f = sample((3, 4), 400)
    ft = sample((3, 4), 200, seed=1)
    perfect = dci_from_codes(f, f, ft, ft)
    assert perfect["disentanglement"] > 0.9 and perfect["completeness"] > 0.9
    assert perfect["informativeness_test"] == 1.0
    noise = np.random.RandomState(0)
    bad = dci_from_codes(noise.randn(400, 2), f, noise.randn(200, 2), ft)
    assert bad["informativeness_test"] < 0.5
    dup = dci_from_codes(np.hstack([f, f]), f, np.hstack([ft, ft]), ft)
    assert dup["disentanglement"] > 0.9 and dup["completeness"] < 0.8


# ----------------------------------------------------------------------------------------- modularity
def test_modularity_closed_form():
    assert modularity(np.eye(3)) == pytest.approx(1.0)
    assert modularity(np.array([[1.0, 0.5], [0.0, 2.0]])) == pytest.approx((0.75 + 1.0) / 2)
    assert modularity(np.array([[1.0, 1.0, 1.0]])) == pytest.approx(0.0)  # δ = 2/(1·2) = 1
    assert modularity(np.array([[0.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.5)  # zero row scores 0 (convention)
    d5 = np.diag(5.0 * np.ones(5))
    assert modularity(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(2 / 3)
    assert modularity(np.zeros((10, 10))) == 0.0
    assert modularity(np.vstack([d5, d5])) == pytest.approx(1.0) and modularity(d5[:2]) == pytest.approx(1.0)
    assert modularity(np.hstack([d5, d5])) == pytest.approx(1 - 1 / 9)  # δ = 25 / (25 · 9)


def test_modularity_explicitness_perfect_and_constant_code():
    f, ft = sample((3, 4), 1500), sample((3, 4), 600, seed=1)
    s = modularity_explicitness_from_codes(f, f, ft, ft)
    assert s["modularity_score"] > 0.99 and s["explicitness_score_test"] > 0.85
    # a collapsed code: modularity counts it as 0, explicitness ignores it (no NaN)
    c = modularity_explicitness_from_codes(np.column_stack([f, np.ones(1500)]), f,
                                           np.column_stack([ft, np.ones(600)]), ft)
    assert c["modularity_score"] == pytest.approx(s["modularity_score"] * 2 / 3, abs=1e-12)
    assert c["explicitness_score_test"] == pytest.approx(s["explicitness_score_test"], abs=1e-6)
    # codes randomly permuted per point: every code carries a little of every factor → low modularity
    rs = np.random.RandomState(0)
    g = sample((5, 5, 5, 5), 20000)
    shuffled = np.array([rs.permutation(row) for row in g])
    assert modularity(discrete_mutual_info(histogram_discretize(shuffled.T.astype(float), 20), g.T)) < 0.2
    data = FactorImages((3, 4))
    r = compute_modularity_explicitness(data, lambda x: identity(x)[:, :2], 0, num_train=800, num_test=400)
    assert r["modularity_score"] > 0.99


# ------------------------------------------------------------------------------------------------ SAP
def test_sap_continuous_and_discrete():
    f, ft = sample((3, 4), 2000), sample((3, 4), 1000, seed=1)
    cont = sap_from_codes(f, f, continuous_factors=True)["SAP_score"]
    assert cont == pytest.approx(1.0, abs=0.01)  # squared correlation 1 vs ≈0
    assert sap_from_codes(np.hstack([f, f]), f, continuous_factors=True)["SAP_score"] == pytest.approx(0.0, abs=1e-12)
    # a constant code scores 0 (not NaN)
    z = np.column_stack([f[:, 0], np.zeros(2000)])
    assert sap_from_codes(z, f, continuous_factors=True)["SAP_score"] == pytest.approx(0.5, abs=0.01)
    disc = sap_from_codes(f, f, ft, ft)["SAP_score"]
    noise = np.random.RandomState(0)
    bad = sap_from_codes(noise.randn(2000, 2), f, noise.randn(1000, 2), ft)["SAP_score"]
    assert disc > 0.4 and bad < 0.05
    data = FactorImages((3, 4))
    assert compute_sap(data, lambda x: identity(x)[:, :2], 0, num_train=1000, num_test=500,
                       continuous_factors=True)["SAP_score"] > 0.95


def _svc_cases():
    rng = np.random.RandomState(0)
    for k in (2, 3, 6, 40):
        y = rng.randint(k, size=3000) * 3 + 1  # labels need not be 0..K-1
        yield k, "continuous", rng.randn(3000) * 2 + 0.3 * y, y
        yield k, "quantised", np.round((y / 3 + rng.randn(3000) * 2) / 5 * 32) / 32, y
    y = rng.randint(4, size=1000)
    yield 4, "constant", np.zeros(1000), y  # a collapsed code: w = 0 at the optimum


@pytest.mark.parametrize("k,kind,x,y", [pytest.param(*c, id=f"{c[1]}-{c[0]}classes") for c in _svc_cases()])
def test_exact_linear_svc_predicts_as_a_converged_liblinear(k, kind, x, y):
    """The one-feature solver of the discrete SAP score predicts what sklearn's LinearSVC (liblinear's
    primal solver) predicts when it is run to convergence, on training and fresh points."""
    from sklearn.svm import LinearSVC

    from scgbench.metrics.disentanglement.linear_svc_1d import fit_predict
    x_test = np.concatenate([x, np.linspace(x.min() - 1, x.max() + 1, 997)])
    clf = LinearSVC(C=0.01, class_weight="balanced", dual=False, tol=1e-12, max_iter=100000).fit(x[:, None], y)
    ours = fit_predict(x, np.stack([y, y[::-1]], axis=1), x_test)  # two factors solved together
    assert np.array_equal(ours[:, 0], clf.predict(x_test[:, None]))
    clf.fit(x[:, None], y[::-1])
    assert np.array_equal(ours[:, 1], clf.predict(x_test[:, None]))


def test_sap_discrete_equals_the_reference_classifier():
    """The discrete score matrix with the exact solver equals the one of disentanglement_lib's loop with
    sklearn's LinearSVC (its default solver) on quantised D-VAE-like codes; a factor with one value is an error."""
    from scgbench.bench.disentanglement import reference_sap_matrix, synthetic_codes
    from scgbench.metrics.disentanglement.sap_score import compute_score_matrix
    c, f = synthetic_codes(2000, 0)
    ct, ft = synthetic_codes(1000, 1)
    ours = compute_score_matrix(c.T, f.T, ct.T, ft.T, continuous_factors=False)
    assert np.array_equal(ours, reference_sap_matrix(c.T, f.T, ct.T, ft.T))
    with pytest.raises(ValueError, match="at least 2 classes; factor 1"):
        sap_from_codes(c, np.stack([f[:, 0], np.zeros(2000, int)], axis=1), ct, ft[:, :2])


# -------------------------------------------------------------------------------- BetaVAE / FactorVAE
def test_beta_vae_and_factor_vae_perfect_and_collapsed():
    data = FactorImages()
    b = compute_beta_vae_sklearn(data, identity, np.random.RandomState(0), batch_size=16, num_train=300, num_eval=150)
    assert b["train_accuracy"] == 1.0 and b["eval_accuracy"] == 1.0
    fv = compute_factor_vae(data, identity, np.random.RandomState(0), batch_size=16, num_train=300, num_eval=150,
                            num_variance_estimate=500)
    assert fv["eval_accuracy"] == 1.0 and fv["num_active_dims_pruned"] == 3
    zero = compute_factor_vae(data, lambda x: np.zeros((x.shape[0], 3)), 0, batch_size=16, num_train=50, num_eval=20,
                              num_variance_estimate=100)
    assert zero["eval_accuracy"] == 0.0 and zero["num_active_dims"] == 0
    # one factor unrepresented: the FactorVAE classifier gets it wrong → accuracy ≈ 2/3
    miss = compute_factor_vae(data, lambda x: np.column_stack([identity(x)[:, :2], np.zeros(x.shape[0])]), 1,
                              batch_size=16, num_train=300, num_eval=300, num_variance_estimate=500)
    assert abs(miss["eval_accuracy"] - 2 / 3) < 0.1


def test_beta_vae_batching_keeps_the_reference_stream():
    """Features of the batched implementation equal a literal per-point loop in the reference order."""
    from scgbench.metrics.disentanglement.beta_vae import generate_training_batch
    data = FactorImages(nuisance=True)
    rep = lambda x: np.column_stack([identity(x), x[:, 1, 0, 0]])  # noqa: E731 (sees the nuisance draw)
    feats, labels = generate_training_batch(data, rep, 8, 25, np.random.RandomState(2), chunk=48)
    rng = np.random.RandomState(2)
    for p in range(25):
        k = rng.randint(3)
        f1, f2 = data.sample_factors(8, rng), data.sample_factors(8, rng)
        f2[:, k] = f1[:, k]
        o1 = data.sample_observations_from_factors(f1, rng)
        o2 = data.sample_observations_from_factors(f2, rng)
        assert labels[p] == k
        np.testing.assert_allclose(feats[p], np.mean(np.abs(rep(o1) - rep(o2)), axis=0), rtol=1e-12)


# ------------------------------------------------------------------------------------------ downstream
@pytest.mark.slow
def test_downstream_sample_efficiency():
    data = FactorImages((3, 4))
    rep = lambda x: identity(x)[:, :2]  # noqa: E731
    s = compute_downstream_task(data, rep, 0, num_train=(100, 400), num_test=200)
    assert s["400:mean_test_accuracy"] > 0.9 and "sample_efficiency" not in s
    assert set(k for k in s if k.startswith("100:")) >= {"100:mean_test_accuracy", "100:test_accuracy_factor_1"}
    with pytest.raises(ValueError, match="predictor"):
        compute_downstream_task(data, rep, 0, predictor="svm")


# ---------------------------------------------------------------------------------------- unsupervised
def test_gaussian_total_correlation_closed_form():
    rho = 0.6
    cov = np.array([[2.0, rho * np.sqrt(2 * 3)], [rho * np.sqrt(2 * 3), 3.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - rho ** 2), abs=1e-12)
    # KL(N(0, Σ) || N(0, diag Σ)) by the textbook formula
    d = np.diag(np.diag(cov))
    kl = 0.5 * (np.trace(np.linalg.inv(d) @ cov) - 2 + np.log(np.linalg.det(d) / np.linalg.det(cov)))
    assert gaussian_total_correlation(cov) == pytest.approx(kl, abs=1e-12)
    assert gaussian_wasserstein_correlation(np.diag([1.0, 4.0])) == pytest.approx(0.0, abs=1e-12)
    import scipy.linalg
    c9 = np.array([[1.0, 0.9], [0.9, 1.0]])
    dg = np.diag(np.diag(c9))  # W2² between N(0, Σ) and N(0, diag Σ): tr(Σ + D − 2 (Σ D)^{1/2})
    assert gaussian_wasserstein_correlation(c9) == pytest.approx(
        np.real(np.trace(c9 + dg - 2 * scipy.linalg.sqrtm(c9 @ dg))), abs=1e-9)
    assert gaussian_total_correlation(np.eye(5)) == pytest.approx(0.0, abs=1e-12)
    z = np.random.RandomState(0).multivariate_normal([0, 0], cov, size=20000)
    u = unsupervised_from_codes(np.column_stack([z, np.full(20000, 3.0)]))  # plus a collapsed code
    assert u["gaussian_total_correlation"] == pytest.approx(-0.5 * np.log(1 - rho ** 2), abs=0.02)
    assert np.isfinite(u["gaussian_wasserstein_correlation_norm"]) and 0 < u["mutual_info_score"] < 0.5
    ind = compute_unsupervised_metrics(FactorImages(), identity, 0, num_train=3000)
    assert abs(ind["gaussian_total_correlation"]) < 0.01  # independent factors


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_inputs_raise_clear_errors():
    f = sample((3, 4), 100)
    codes = np.random.RandomState(0).randn(100, 3)
    nan = codes.copy()
    nan[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/Inf"):
        mig_from_codes(nan, f)
    inf = codes.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/Inf"):
        sap_from_codes(inf, f, continuous_factors=True)
    with pytest.raises(ValueError, match="points"):
        mig_from_codes(codes, f[:50])
    with pytest.raises(ValueError, match="2-D"):
        mig_from_codes(codes, f[:, 0])
    with pytest.raises(ValueError, match="integer"):
        mig_from_codes(codes, f + 0.5)
    with pytest.raises(ValueError, match="single value"):
        mig_from_codes(codes, np.column_stack([f[:, 0], np.zeros(100, int)]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        compute_mig(FactorImages(), lambda x: np.full((x.shape[0], 2), np.nan), 0, num_train=50)
    with pytest.raises(ValueError, match="num_codes"):
        compute_mig(FactorImages(), lambda x: np.zeros(x.shape[0]), 0, num_train=50)


def test_evaluate_all_quick_suite_runs_each_metric():
    data = FactorImages((3, 4))
    rep = lambda x: identity(x)[:, :2]  # noqa: E731
    out = evaluate_all(data, rep, seed=0, metrics=["mig", "sap", "unsupervised"], preset="quick",
                       overrides={"mig": {"num_train": 500}, "sap": {"num_train": 500, "num_test": 200},
                                  "unsupervised": {"num_train": 500}})
    assert out["mig"]["discrete_mig"] > 0.9 and set(out["seconds"]) == {"mig", "sap", "unsupervised"}
    with pytest.raises(KeyError, match="unknown metrics"):
        evaluate_all(data, rep, metrics=["irs"])


def test_callback_scores_a_lightning_model_on_test():
    import lightning.pytorch as pl
    import torch

    from scgbench.datamodules.disentanglement import DisentanglementDataModule
    from scgbench.metrics.disentanglement.callback import DisentanglementMetrics

    class Centroid(pl.LightningModule):
        """Representation = the circle's centroid, an ideal disentangled 2-code representation."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def representation(self, x):
            w = x[:, 0] / x[:, 0].sum(dim=(1, 2), keepdim=True)
            grid = torch.arange(64, dtype=x.dtype)
            return torch.stack([(w.sum(1) * grid).sum(1), -(w.sum(2) * grid).sum(1)], dim=1)

        def test_step(self, batch, batch_idx):
            return None

    cb = DisentanglementMetrics(metrics=["mig"], overrides={"mig": {"num_train": 800}})
    dm = DisentanglementDataModule("circles", batch_size=4, num_test=4)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb])
    trainer.test(Centroid(), datamodule=dm, verbose=False)
    # ideal codes, but 20 bins for 40 positions cap I(code; factor) at ln 20 / ln 40 ≈ 0.81 of H, and 800 points
    # bias the runner-up MI upwards by ≈ (20−1)(40−1)/(2·800) nats ≈ 0.46 nats → expected MIG ≈ 0.69
    assert 0.6 < cb.results["mig"]["discrete_mig"] < 0.82
    assert float(trainer.callback_metrics["disent/mig/discrete_mig"]) == pytest.approx(cb.results["mig"]["discrete_mig"])
