"""What the training numbers mean, each pinned by an exact value or a law, not by "it runs":
the score-function gradient in closed form (a node's slots, the EMA baseline's sequence, leave-one-out pairs after
sample-major expansion), masked rows and categories of estimators and components, the law of ListOps' message
dropout, schedule time in optimizer steps under gradient accumulation, TauAnn across a resume, and the training
noise and order (new each epoch and batch, per rank, replayed by a re-run and a resume)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from scgbench.callbacks import DropResAnnealing, TauAnnealing, TempMatch
from scgbench.estimators import Reinforce, expand_for_samples, get_estimator, list_estimators
from scgbench.models.base import SCGModule
from scgbench.nn import DiscreteContinuous


@pytest.fixture(autouse=True)
def _restore_run_seed(monkeypatch):
    """pl.seed_everything sets $PL_GLOBAL_SEED (the run seed of every noise stream): undone after each test."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)


# -- REINFORCE --------------------------------------------------------------------------------------------------
def test_reinforce_surrogate_gradient_sums_the_log_probabilities_of_a_nodes_slots(tape):
    """A node with N slots samples z ∈ {0,1}^{B×N×K}; log p(z_b) = Σ_n log p(z_bn) (one joint sample per example), so
    the surrogate's gradient is exactly ∂/∂θ_bnk = f_b/B · (z_bnk − softmax(θ_bn)_k) — the same for every slot, not
    divided by N."""
    torch.manual_seed(0)
    B, N, K = 5, 3, 4
    theta = torch.randn(B, N, K, requires_grad=True)
    est = Reinforce(baseline="none", num_samples=1).train()
    z = est(theta)
    assert torch.equal(z.sum(-1), torch.ones(B, N))
    cost = torch.randn(B)
    g, = torch.autograd.grad(tape.surrogate(cost), theta)
    want = cost[:, None, None] / B * (z - torch.softmax(theta, -1))
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list_estimators(num_categories=4, provides=frozenset()))
def test_a_partly_masked_row_is_a_distribution_over_its_unmasked_categories(name):
    """Masked categories (−∞ logits, e.g. the masked D-VAE) get no mass, and the row is still a sample over the
    others: it sums to 1 in training and in both decodings; with β = 0 the relaxation is softmax(θ/τ) restricted
    to the unmasked categories. Only an entirely masked row (padding) is the zero vector."""
    theta = torch.tensor([[0.5, 2.0, -1.0, 0.0], [1.0, -2.0, 3.0, 0.5]]).repeat(2, 1)
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]]).repeat(2, 1)
    est = get_estimator(name, tau=2.0)
    est.train()
    for mode in ("train", "map", "sample"):
        if mode != "train":
            est.eval()
            est.eval_mode = mode
        z = est(theta, mask)
        torch.testing.assert_close(z.sum(-1), torch.ones(4))
        assert torch.all(z[~mask] == 0), mode
    if name == "gumbel":
        est.train()
        est.set_beta(0.0)
        want = torch.softmax((theta / 2.0).masked_fill(~mask, float("-inf")), -1)
        torch.testing.assert_close(est(theta, mask), want)
        est.eval()
        est.eval_mode = "map"
        assert est(theta, mask).argmax(-1).tolist() == [0, 2, 0, 2]


def test_ema_baseline_is_used_before_it_is_updated(tape):
    """b_1 = mean(f_1) (first batch); from then on b_t = the EMA after batches 1..t−1: the current batch never enters
    its own baseline. Read through the surrogate gradient (f_b − b_t)/B · (z_b − p_b)."""
    decay = 0.75
    est = Reinforce(baseline="ema", num_samples=1, ema_decay=decay).train()
    costs = [torch.tensor([1.0, 3.0]), torch.tensor([5.0, 7.0]), torch.tensor([0.0, 2.0])]
    baselines = [2.0, 2.0, decay * 2.0 + (1 - decay) * 6.0]  # means 2, 6, 1
    torch.manual_seed(1)
    theta = torch.randn(2, 3, requires_grad=True)
    for cost, b in zip(costs, baselines):
        z = est(theta)
        g, = torch.autograd.grad(tape.surrogate(cost), theta)
        torch.testing.assert_close(g, (cost - b)[:, None] / 2 * (z - torch.softmax(theta, -1)))
    assert float(est.ema) == pytest.approx(decay * baselines[2] + (1 - decay) * 1.0)


def test_leave_one_out_pairs_the_samples_of_one_example(tape):
    """Training repeats the batch sample-major ([x_0..x_{B−1}, x_0..x_{B−1}] for S = 2), and b_s of example i is the
    other sample's cost *of the same example*: ∂/∂θ_i = Σ_s (f_si − f_{1−s,i})/(SB) · (z_si − p_i)."""
    torch.manual_seed(2)
    est = Reinforce(baseline="loo", num_samples=2)
    holder = nn.ModuleList([est]).train()
    B, K = 3, 4
    assert expand_for_samples(holder, torch.arange(B)).tolist() == [0, 1, 2, 0, 1, 2]
    theta = torch.randn(B, K, requires_grad=True)
    table = torch.randn(B, K) * 3  # per-example cost of each category
    z = est(expand_for_samples(holder, theta))
    f = (z * table.repeat(2, 1)).sum(-1)
    g, = torch.autograd.grad(tape.surrogate(f), theta)
    f2, z2 = f.view(2, B), z.view(2, B, K)
    p = torch.softmax(theta, -1)
    want = sum((f2[s] - f2[1 - s])[:, None] * (z2[s] - p) for s in range(2)) / (2 * B)
    torch.testing.assert_close(g, want)
    holder.eval()
    assert expand_for_samples(holder, torch.arange(B)).tolist() == [0, 1, 2]  # evaluation: one sample


# -- the discrete-continuous component -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gumbel", "reinforce"])
def test_the_component_decodes_only_unmasked_rows_and_categories(name, tape):
    """``DiscreteContinuous(u, mask)``: a masked-out row is the zero vector z = 0 (so h(z) = 0 at evaluation, α = 1),
    masked categories are never chosen, and a REINFORCE node records no log-probability for a masked row (its
    surrogate gradient is zero there)."""
    torch.manual_seed(4)
    comp = DiscreteContinuous(get_estimator(name, tau=1.0), nn.Linear(4, 5, bias=False), embed=nn.Identity(), depth=1)
    u = torch.randn(6, 4)
    rows = torch.tensor([True, False, True, True, False, True])[:, None]
    cats = torch.tensor([[True, True, False, True, False]]).expand(6, 5)
    comp.eval()
    with torch.no_grad():
        theta = comp.to_logits(u)
        want = F.one_hot(theta.argmax(-1), 5).float() * rows
        torch.testing.assert_close(comp(u, rows), want)  # h = identity: v = z
        allowed = F.one_hot(theta.masked_fill(~cats, float("-inf")).argmax(-1), 5).float() * rows
        torch.testing.assert_close(comp(u, rows & cats), allowed)
        assert not torch.equal(allowed, want)
    if name == "reinforce":
        comp.train()
        comp.set_alpha(1.0)
        x = u.clone().requires_grad_(True)
        comp(x, rows)
        g, = torch.autograd.grad(tape.surrogate(torch.arange(6.0) + 1), x)
        assert torch.all(g[~rows[:, 0]] == 0) and torch.all(g[rows[:, 0]].abs().sum(-1) > 0)


def test_message_dropout_has_the_law_of_inverted_dropout():
    """ListOps' fast dropout: each entry is 0 with probability p (rounded to 2⁻¹⁶) and h/(1 − p) otherwise, so
    E[dropout(h)] = h; identity at evaluation."""
    from scgbench.models.listops import ListOpsModule

    model = ListOpsModule(variant="arb-gt", dim=8, dropout=0.25).train()
    torch.manual_seed(5)
    h = torch.full((400_000,), 3.0)
    y = model._dropout(h)
    kept = y != 0
    assert torch.all(y[kept] == 3.0 / 0.75)
    n, p = h.numel(), 0.25
    assert abs(float((~kept).float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert float(y.mean()) == pytest.approx(3.0, abs=5 * 3.0 / 0.75 * math.sqrt(p * (1 - p) / n))
    assert torch.equal(model.eval()._dropout(h), h)


# -- schedules in optimizer steps -----------------------------------------------------------------------------
class _Nodes(SCGModule):
    """One discrete-continuous component (τ = 4) on a linear regression; records its schedule state and the
    training noise it sees at every training batch."""

    def __init__(self, tau: float = 4.0) -> None:
        super().__init__(estimator="gumbel", tau=tau, lr=0.01)
        self.save_hyperparameters()
        self.inp = nn.Linear(3, 6)
        self.node = DiscreteContinuous(self.make_estimator(), nn.Linear(6, 5), depth=1)
        self.out = nn.Linear(6, 1)
        self.seen: list[dict] = []

    def training_loss(self, batch):
        e = self.node.estimator
        # noise this batch draws: a Gumbel-softmax sample of fixed logits (β = 1 temporarily)
        beta = float(e.beta)
        e.set_beta(1.0)
        noise = e(torch.zeros(2, 5)).detach()
        e.set_beta(beta)
        self.seen.append({"epoch": self.current_epoch, "step": self.global_step, "tau": float(e.tau),
                          "beta": beta, "alpha": float(self.node.alpha), "noise": noise})
        x, y = batch
        return (self.out(self.node(self.inp(x))).squeeze(-1) - y).pow(2).mean(), {}


def _model(tau: float = 4.0) -> _Nodes:
    torch.manual_seed(0)
    return _Nodes(tau)


def _data(batches: int = 10):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g), torch.randn(4, generator=g)) for _ in range(batches)]


def _fit(model, callbacks, ckpt_path=None, seed=0, **trainer_kwargs):
    pl.seed_everything(seed, verbose=False)
    trainer = pl.Trainer(callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, **trainer_kwargs)
    trainer.fit(model, DataLoader(_data(), batch_size=None), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("cadence,t_of_step", [
    ({"updates_per_epoch": 10}, lambda s: s * 10 // 5),          # 10 batches, accumulation 2: 5 steps per epoch
    ({"every_n_steps": 3}, lambda s: s // 3),
    ({"total_updates": 30}, lambda s: min(30, s * 30 // 15)),     # 15 optimizer steps planned
])
def test_schedule_time_counts_optimizer_steps_under_gradient_accumulation(cadence, t_of_step):
    """With accumulate_grad_batches = 2, t is a function of the optimizer step: β_t = τ(1 − e^{−γt}) with TempMatch's
    own τ (2, not the estimator's 4), α_t = min(1, c·t) — at every training batch, both batches of a window alike."""
    model = _model()
    _fit(model, [TempMatch(gamma=0.05, tau=2.0, **cadence), DropResAnnealing(rate=0.02, **cadence)], max_epochs=3,
         accumulate_grad_batches=2)
    assert len(model.seen) == 30 and [r["step"] for r in model.seen] == [i // 2 for i in range(30)]
    for r in model.seen:
        t = t_of_step(r["step"])
        assert r["tau"] == 2.0
        assert r["beta"] == pytest.approx(2.0 * (1 - math.exp(-0.05 * t)), rel=1e-6, abs=1e-7), r["step"]
        assert r["alpha"] == pytest.approx(min(1.0, 0.02 * t), rel=1e-6, abs=1e-7), r["step"]


def test_tauann_resumed_continues_from_the_configured_tau(tmp_path):
    """τ_t = max(τ_min, τ₀·e^{−γt}) with τ₀ the configured τ, also after a resume: the checkpoint holds the annealed τ,
    which must not become the new τ₀."""
    def tauann():
        return TauAnnealing(gamma=0.1, tau_min=0.5, every_n_steps=1)

    full = _model()
    _fit(full, [tauann()], max_steps=20)
    first = _model()
    trainer = _fit(first, [tauann()], max_steps=8)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    resumed = _model()
    _fit(resumed, [tauann()], ckpt_path=str(tmp_path / "mid.ckpt"), max_steps=20)
    want = [max(0.5, 4.0 * math.exp(-0.1 * s)) for s in range(20)]
    assert [r["tau"] for r in full.seen] == pytest.approx(want, rel=1e-6)
    assert [r["tau"] for r in resumed.seen] == pytest.approx(want[8:], rel=1e-6)


# -- training noise -------------------------------------------------------------------------------------------
def _noise(model) -> list[torch.Tensor]:
    return [r["noise"] for r in model.seen]


def test_training_noise_differs_by_epoch_and_batch_and_is_replayed_by_a_rerun_and_a_resume(tmp_path):
    """Every training batch of every epoch draws new noise (also the two batches of one accumulation window); the
    same seed draws the same noise again, another seed other noise; a run resumed from an epoch-end checkpoint
    draws, batch for batch, the uninterrupted run's noise."""
    a = _model()
    _fit(a, [], max_epochs=3, accumulate_grad_batches=2)
    na = _noise(a)
    assert len(na) == 30
    flat = torch.stack(na).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 30  # no batch of any epoch repeats another's noise
    b = _model()
    _fit(b, [], max_epochs=3, accumulate_grad_batches=2)
    assert all(torch.equal(x, y) for x, y in zip(na, _noise(b)))
    c = _model()
    _fit(c, [], max_epochs=3, accumulate_grad_batches=2, seed=1)
    assert not any(torch.equal(x, y) for x, y in zip(na, _noise(c)))
    first = _model()
    trainer = _fit(first, [], max_epochs=1, accumulate_grad_batches=2)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    resumed = _model()
    _fit(resumed, [], ckpt_path=str(tmp_path / "epoch0.ckpt"), max_epochs=3, accumulate_grad_batches=2)
    assert [r["epoch"] for r in resumed.seen] == [1] * 10 + [2] * 10
    assert all(torch.equal(x, y) for x, y in zip(na[10:], _noise(resumed)))
    # and the resumed run trains to the uninterrupted run's weights
    for (n, p), q in zip(a.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, msg=n)


def test_each_ddp_rank_draws_its_own_training_noise(monkeypatch):
    """Under DDP every rank runs the same (epoch, batch index): the noise must still differ between ranks (else the
    ranks' gradients are correlated copies), and be the same for the same rank."""
    from types import SimpleNamespace

    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    model = _model()

    def draw(rank):
        model._trainer = SimpleNamespace(global_rank=rank, current_epoch=2, accumulate_grad_batches=1, optimizers=[])
        model.on_train_batch_start(None, 5)  # the hook Lightning calls before each training batch
        return torch.rand(8)

    r0, r1, again = draw(0), draw(1), draw(0)
    assert torch.equal(r0, again) and not torch.equal(r0, r1)


class _Order(pl.LightningModule):
    """Records the training examples in the order it sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.order: list[list[tuple]] = []

    def on_train_epoch_start(self) -> None:
        self.order.append([])

    def training_step(self, batch, batch_idx):
        for t, n in zip(batch["tokens"].tolist(), batch["lengths"].tolist()):
            self.order[-1].append(tuple(t[:n]))
        return self.w * 0 + 1.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_training_order_is_a_new_permutation_every_epoch_and_a_function_of_the_seed():
    """The training loader visits every example once per epoch, in a new order each epoch; the same run seed gives
    the same orders, another seed others."""
    from scgbench.benchmarks import get_benchmark

    bm = get_benchmark("listops")

    def orders(seed):
        dm = bm.datamodule(train_per_depth=6, val_per_depth=1, test_per_depth=1, extrap_per_depth=1, cache=False,
                           batch_size=5, seed=seed)
        model = _Order()
        pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1).fit(model, dm)
        return model.order

    a = orders(0)
    assert len(a) == 3 and all(sorted(e) == sorted(a[0]) for e in a) and len(a[0]) == 30
    assert a[0] != a[1] and a[1] != a[2] and a[0] != a[2]
    assert orders(0) == a
    assert orders(1)[0] != a[0]
