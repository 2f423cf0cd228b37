"""What the evaluation numbers mean: each test metric of MNIST addition and ListOps equals
a reference value computed here from its definition (SPEC §1.2, §2.1, §2.2) on a tiny untrained model, through
Lightning's real test loop; and the ListOps GNN equals a plain per-edge re-implementation of A.1.1.

The fixtures are built so that the readings a planted bug would produce differ from the right one (asserted as
preconditions): MAP and sampled decoding disagree, validation- and test-matched digit read-outs disagree, and so on.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from scgbench.benchmarks import get_benchmark
from scgbench.models.evaluation import TEST, VAL, eval_noise
from scgbench.models.listops import ListOpsModule
from scgbench.models.mnist_addition import MNISTAdditionModule

SEED = "7"


def _tester():
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)


def _test_metrics(model, dm) -> dict[str, float]:
    out = {}
    for d in _tester().test(model, datamodule=dm, verbose=False):
        out.update({k.split("/dataloader_idx")[0]: float(v) for k, v in d.items()})
    return out


# -- MNIST addition -------------------------------------------------------------------------------------------
class _AdditionData(pl.LightningDataModule):
    """Test batches and labelled single-image read-out sets, as ``MNISTAdditionDataModule`` serves them."""

    def __init__(self, test_batches: list[dict], readout: dict[str, list[dict]]) -> None:
        super().__init__()
        self.test_batches, self.readout = test_batches, readout

    def test_dataloader(self):
        return DataLoader(self.test_batches, batch_size=None)

    def readout_dataloader(self, split: str = "val"):
        return DataLoader(self.readout[split], batch_size=None)


def _categories(model, images: torch.Tensor) -> torch.Tensor:
    """MAP category (argmax θ) of every single image [N, 1, 28, 28]."""
    with torch.no_grad():
        return model.digit_logits(images[:, None]).argmax(-1).reshape(-1)


def _squares(n: int) -> torch.Tensor:
    """n images [n, 1, 28, 28]: a bright 8×8 square at a position that varies with the image, on faint noise."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(n, 1, 28, 28, generator=g)
    for i in range(n):
        r, c = (i * 7) % 20, (i * 11) % 20
        x[i, 0, r:r + 8, c:c + 8] = 1.0
    return x


@pytest.fixture(scope="module")
def mnist_case():
    """An untrained `ours` model whose digit node puts different images into different categories (encoder biases
    zeroed), 3 test batches (8, 8, 5 examples) whose labels are the model's own MAP sums (so MAP accuracy is exactly
    1); the validation read-out images are the 42 test images plus 18 others, with digit = category mod 10, while
    the test images' digits agree with that matching on every third image only."""
    torch.manual_seed(0)
    model = MNISTAdditionModule().eval()
    with torch.no_grad():
        for m in model.encoder:
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    test_images = _squares(42)
    images = torch.cat([test_images, 0.5 * _squares(18)])  # the faint squares fall into two more categories
    pairs = test_images.view(21, 2, 1, 28, 28)
    cat_val, cat_test = _categories(model, images), _categories(model, test_images)
    val_digits = cat_val % 10
    test_digits = torch.where(torch.arange(42) % 3 == 0, cat_test % 10, (cat_test + 3) % 10)
    batches, start = [], 0
    for b in (8, 8, 5):
        x = pairs[start:start + b]
        with torch.no_grad():
            label = model(x).argmax(-1)
        batches.append({"images": x, "label": label, "index": torch.arange(start, start + b),
                        "digits": test_digits.view(21, 2)[start:start + b]})
        start += b
    chunks = lambda x: list(torch.split(x, 10))  # noqa: E731 - read-out batches of 10 images
    readout = {"val": [{"images": i, "digits": d} for i, d in zip(chunks(images), chunks(val_digits))],
               "test": [{"images": i, "digits": d} for i, d in zip(chunks(test_images), chunks(test_digits))]}
    return model, batches, readout, (cat_val, val_digits), (cat_test, test_digits)


def _matched_accuracy(match, score) -> float:
    """Digit read-out by definition: each category → its majority digit on the matching (category, digit) pairs
    (digit 0 for a category never seen there); share of the scored images whose digit is their category's."""
    (mc, md), (sc, sd) = match, score
    mapping = {c: int(torch.bincount(md[mc == c], minlength=10).argmax()) for c in mc.unique().tolist()}
    return sum(mapping.get(c, 0) == d for c, d in zip(sc.tolist(), sd.tolist())) / len(sc)


def test_mnist_test_metrics_mean_what_they_say(mnist_case, monkeypatch):
    """test/acc = MAP sum accuracy (1 by construction), test/acc_sampled = Gumbel-max decoding with the test set's
    keyed noise, test/loss = mean cross-entropy of the MAP logits, test/digit_readout_acc = categories matched to
    digits on the *validation* read-out images and scored on the test images, test/categories_used = distinct MAP
    categories of the test images, test/examples = the number of test examples."""
    monkeypatch.setenv("PL_GLOBAL_SEED", SEED)
    model, batches, readout_sets, val, test = mnist_case
    ce, hits_sampled, hits_sampled_val = [], [], []
    with torch.no_grad():
        for b in batches:
            logits = model(b["images"])
            ce.append(F.cross_entropy(logits, b["label"], reduction="none"))
            with model.decoding("sample"), eval_noise(model, b["index"], TEST):
                hits_sampled.append(model(b["images"]).argmax(-1) == b["label"])
            with model.decoding("sample"), eval_noise(model, b["index"], VAL):
                hits_sampled_val.append(model(b["images"]).argmax(-1) == b["label"])
    sampled = float(torch.cat(hits_sampled).float().mean())
    readout = _matched_accuracy(val, test)  # matched on validation, scored on test
    # preconditions: every reading a planted bug would give differs from the right one
    assert sampled < 0.9
    assert sampled != float(torch.cat(hits_sampled_val).float().mean())  # the validation noise stream
    assert readout == pytest.approx(14 / 42)
    assert _matched_accuracy(test, test) != pytest.approx(readout)  # matched on the test images
    assert _matched_accuracy(test, val) != pytest.approx(readout)   # arguments swapped
    assert len(val[0].unique()) != len(test[0].unique()) > 1         # categories of the validation images

    m = _test_metrics(model, _AdditionData(batches, readout_sets))
    assert m["test/acc"] == 1.0
    assert m["test/acc_sampled"] == pytest.approx(sampled, abs=1e-6)
    assert m["test/loss"] == pytest.approx(float(torch.cat(ce).mean()), rel=1e-5)
    assert m["test/digit_readout_acc"] == pytest.approx(readout, abs=1e-6)
    assert m["test/categories_used"] == len(test[0].unique())
    assert m["test/examples"] == 21
    # the decoding switch is restored: a second test of the same model gives the same numbers
    assert _test_metrics(model, _AdditionData(batches, readout_sets)) == m


# -- ListOps --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def listops_case():
    bm = get_benchmark("listops")
    dm = bm.datamodule(train_per_depth=2, val_per_depth=1, test_per_depth=6, extrap_per_depth=8, cache=False,
                       eval_batch_size=8)
    dm.setup("test")
    torch.manual_seed(3)
    model = ListOpsModule(variant="ours", dim=16, discretise="values").eval()
    return model, dm


def _listops_reference(model, dm, mode: str, same_noise_key: bool = False) -> dict[str, float]:
    """Metrics by definition (SPEC §2.2): task accuracy; edge precision over non-root, non-`]` tokens (`]` is the
    last token of every expression); intermediate accuracy (argmax Pred(state) vs gold value) at operator tokens
    (the positions that are someone's gold parent). Extrapolation set d runs d GNN rounds; sampled decoding uses
    the keyed noise of test set ``idx`` (``same_noise_key``: that of set 0, a bug's reading)."""
    out = {}
    for idx, loader in enumerate(dm.test_dataloader()):
        d = None if idx == 0 else int(dm.test_names[idx][len("test_d"):])
        suffix = "" if d is None else f"_d{d}"
        rounds = model.rounds if d is None else d
        acc, edge, inter = [], [], []
        for batch in loader:
            with torch.no_grad(), model.decoding(mode), eval_noise(model, batch["index"], TEST,
                                                                   0 if same_noise_key else idx):
                o = model(batch, rounds=rounds)
                pred = model.pred(o["states"]).argmax(-1)
            acc.append((o["logits"].argmax(-1) == batch["label"]).float())
            tokens, mask, parents = batch["tokens"], batch["mask"], batch["parents"]
            close = tokens[0, batch["lengths"][0] - 1]
            pos = torch.arange(tokens.shape[1])[None].expand_as(tokens)
            counted = mask & (pos != 0) & (tokens != close)
            edge.append((o["z"].argmax(-1) == parents)[counted].float())
            is_parent = torch.zeros_like(mask)
            for b in range(len(tokens)):
                is_parent[b, parents[b][parents[b] >= 0]] = True
            inter.append((pred == batch["values"])[is_parent].float())
        out[f"test/acc{suffix}"] = float(torch.cat(acc).mean())
        out[f"test/edge_prec{suffix}"] = float(torch.cat(edge).mean())
        out[f"test/inter_acc{suffix}"] = float(torch.cat(inter).mean())
    return out


def test_listops_map_and_sampled_test_metrics(listops_case, monkeypatch):
    """test/<metric> is MAP decoding, test/<metric>_sampled Gumbel-max decoding with the test sets' keyed noise,
    each extrapolation set with its own number of rounds; the values equal the definitions above."""
    monkeypatch.setenv("PL_GLOBAL_SEED", SEED)
    model, dm = listops_case
    for e in (model.edge_estimator, model.node.estimator):
        e.set_beta(3.0)  # sampled decoding far from MAP
    ref_map, ref_sampled = _listops_reference(model, dm, "map"), _listops_reference(model, dm, "sample")
    # preconditions: the readings of planted bugs differ from the right ones (MAP vs sampled on every set; the noise
    # of another test set)
    for suffix in ("", "_d8", "_d10"):
        assert any(ref_map[f"test/{k}{suffix}"] != ref_sampled[f"test/{k}{suffix}"]
                   for k in ("acc", "edge_prec", "inter_acc")), suffix
    one_key = _listops_reference(model, dm, "sample", same_noise_key=True)
    assert one_key["test/edge_prec_d8"] != ref_sampled["test/edge_prec_d8"]
    m = _test_metrics(model, dm)
    for k, v in ref_map.items():
        assert m[k] == pytest.approx(v, abs=1e-6), k
        assert m[k + "_sampled"] == pytest.approx(ref_sampled[k], abs=1e-6), k + "_sampled"


class _Relabelled(pl.LightningDataModule):
    """The ListOps test sets with every label replaced by ``model``'s own MAP answer after ``rounds(idx)`` rounds."""

    def __init__(self, dm, model, rounds) -> None:
        super().__init__()
        self.test_names, self.sets = dm.test_names, []
        for idx, loader in enumerate(dm.test_dataloader()):
            batches = []
            for batch in loader:
                with torch.no_grad():
                    label = model(batch, rounds=rounds(idx))["logits"].argmax(-1)
                batches.append({**batch, "label": label})
            self.sets.append(batches)

    def test_dataloader(self):
        return [DataLoader(s, batch_size=None) for s in self.sets]


def test_listops_extrapolation_sets_run_d_rounds(listops_case):
    """Test set d = 8 / 10 is read with d GNN rounds (SPEC §2.2): labelled with the model's own d-round MAP answers,
    every test accuracy is exactly 1; the answers after the training depth's 5 rounds differ."""
    _, dm = listops_case
    torch.manual_seed(1)
    model = ListOpsModule(variant="arb", dim=16).eval()
    with torch.no_grad():
        model.msg2.weight.mul_(10)  # messages that move the root's answer from round to round
    depth = lambda idx: model.rounds if idx == 0 else int(dm.test_names[idx][len("test_d"):])  # noqa: E731
    right, five = _Relabelled(dm, model, depth), _Relabelled(dm, model, lambda idx: model.rounds)
    assert all(not torch.equal(torch.cat([b["label"] for b in right.sets[i]]),
                               torch.cat([b["label"] for b in five.sets[i]])) for i in (1, 2))
    m = _test_metrics(model, right)
    assert (m["test/acc"], m["test/acc_d8"], m["test/acc_d10"]) == (1.0, 1.0, 1.0)


def _reference_gnn(model: ListOpsModule, batch: dict, rounds: int) -> torch.Tensor:
    """A.1.1 on the gold tree, one edge at a time (evaluation: no dropout, MAP discretisation, α = 1):
    message p = ReLU(Lin₂(ReLU(Lin₁([x_recv; x_send])))) from each child to its parent, summed, residual update;
    x_recv is the parent's *token embedding* for `ours` and its *current state* for `arb`; `ours` replaces every
    real node state by the digit embedding E2[argmax Pred(x)] after each round but the last."""
    tokens, mask, parents = batch["tokens"], batch["mask"], batch["parents"]
    emb = model.embed.weight
    W1, b1, W2, b2 = model.msg1.weight, model.msg1.bias, model.msg2.weight, model.msg2.bias
    out = torch.zeros(*tokens.shape, model.dim)
    for b in range(len(tokens)):
        n = int(mask[b].sum())
        xe = emb[tokens[b, :n]]
        x = xe.clone()
        kids = [(c, int(parents[b, c])) for c in range(1, n - 1)]  # every token but the root and the final `]`
        for r in range(1, rounds + 1):
            new = x.clone()
            for c, p in kids:
                recv = xe[p] if model.discrete else x[p]
                new[p] = new[p] + F.relu(F.relu(torch.cat([recv, x[c]]) @ W1.T + b1) @ W2.T + b2)
            x = new
            if model.discrete and r < rounds:
                x = emb[model.pred(x).argmax(-1)]
        out[b, :n] = x
    return out


@pytest.mark.parametrize("variant", ["ours-gt", "arb-gt"])
def test_listops_gnn_equals_the_per_edge_definition(listops_case, variant):
    _, dm = listops_case
    torch.manual_seed(11)
    model = ListOpsModule(variant=variant, dim=8, discretise="all", rounds=3).eval()
    batch = next(iter(dm.test_dataloader()[0]))
    with torch.no_grad():
        states = model(batch)["states"]
        ref = _reference_gnn(model, batch, rounds=3)
        m = batch["mask"]
        torch.testing.assert_close(states[m], ref[m], rtol=1e-5, atol=1e-5)
        # the two readings of x_recv really differ on this batch (otherwise the test could not tell them apart)
        other = ListOpsModule(variant="arb-gt" if variant == "ours-gt" else "ours-gt", dim=8, discretise="all",
                              rounds=3).eval()
        other.load_state_dict(model.state_dict(), strict=False)
        assert not torch.allclose(_reference_gnn(other, batch, 3)[m], ref[m], atol=1e-4)
