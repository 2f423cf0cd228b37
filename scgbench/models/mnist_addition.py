"""MNIST addition (SPEC §2.1; thesis §4.1, §6.1.3, Table 6.6, Appendix A.1.3).

``ours`` (94,900 parameters for two 1-digit operands): a LeNet encoder per image gives x′ ∈ R⁸⁴; one matrix
C ∈ R^{K×84} (K = number of sums, 19) turns it into logits θ = C·x′, z = estimator(θ), v = zᵀC (categories
tied to C), DropRes ``x = v`` w.p. α else ``x′ + v``. A learned adder ``ReLU(Lin 168→84(ReLU(Lin 168→168([x₁; x₂]))))``
feeds the class logits C·x₁₂. With ``operands=3`` it is the 3-MNIST chain of thesis Fig. 2.3: a second
discrete-continuous node ("sum of the first two", stochastic depth 2) sits on the path before the final
adder. ``baseline`` (98,951 parameters): the images side by side (28×56), same conv stack, FC 704→120→84→K.

Metrics: sum accuracy with MAP and sampled decoding, and the digit read-out accuracy: each image's
argmax θ is a category; categories are matched to digits by majority vote on held-out labelled validation
images and the matching is scored on the test images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from ..nn import DiscreteContinuous
from .base import SCGModule
from .evaluation import TEST, VAL, eval_noise, log_reduced

VARIANTS = ("ours", "baseline")


def lenet_features() -> nn.Sequential:
    """conv 6@5×5 → maxpool 2 → ReLU → conv 16@5×5 → maxpool 2 → ReLU (flattened)."""
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(6, 16, 5), nn.MaxPool2d(2),
                         nn.ReLU(), nn.Flatten())


class ConfusionCounts(Metric):
    """Counts of (predicted category, true digit) pairs, summed across DDP ranks."""

    full_state_update = False

    def __init__(self, num_categories: int, num_digits: int = 10) -> None:
        super().__init__()
        self.add_state("counts", torch.zeros(num_categories, num_digits, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, category: torch.Tensor, digit: torch.Tensor) -> None:
        k, d = self.counts.shape
        idx = category.reshape(-1) * d + digit.reshape(-1)
        self.counts += torch.bincount(idx, minlength=k * d).view(k, d)

    def compute(self) -> torch.Tensor:
        return self.counts


def readout_accuracy(match: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Accuracy on ``score`` counts after mapping each category to its majority digit in ``match`` counts."""
    mapping = match.argmax(dim=1)
    correct = score.gather(1, mapping[:, None]).sum()
    return correct.float() / score.sum().clamp_min(1)


class MNISTAdditionModule(SCGModule):
    def __init__(self, variant: str = "ours", estimator: str = "gumbel", tau: float = 8.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, dropres: bool = True, dropres_mode: str = "batch",
                 lr: float = 1e-4, operands: int = 2, digits: int = 1) -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        if variant not in VARIANTS:
            raise ValueError(f"unknown MNIST-addition variant {variant!r}; choose one of {VARIANTS}")
        if operands < 2 or digits < 1:
            raise ValueError(f"need operands >= 2 and digits >= 1, got operands={operands}, digits={digits}")
        self.save_hyperparameters()
        self.variant, self.operands, self.digits = variant, operands, digits
        self.num_classes = operands * (10 ** digits - 1) + 1
        k = self.num_classes
        if variant == "baseline":
            self.features = lenet_features()
            n = operands * digits
            self.head = nn.Sequential(nn.Linear(16 * 4 * (4 * n + 3 * (n - 1)), 120), nn.ReLU(), nn.Linear(120, 84),
                                      nn.ReLU(), nn.Linear(84, k))
        else:
            self.encoder = nn.Sequential(lenet_features(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                                         nn.ReLU(), nn.Linear(84, 84))
            self.C = nn.Linear(84, k, bias=False)
            self.digit_node = DiscreteContinuous(self.make_estimator(), self.C, depth=1, dropres=dropres,
                                                 dropres_mode=dropres_mode)
            width = 84 * (2 if operands == 3 else operands * digits)
            self.adder = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 84), nn.ReLU())
            if operands == 3:  # chain: a node for the sum of the first two digits, then the final adder
                self.partial_node = DiscreteContinuous(self.make_estimator(), self.C, depth=2, dropres=dropres,
                                                       dropres_mode=dropres_mode)
        self.train_acc = MulticlassAccuracy(k, average="micro")
        self.val_acc = MulticlassAccuracy(k, average="micro")
        # torchmetrics, not `sync_dist=True`: Lightning's synced mean divides an integer count of examples by
        # the world size and truncates it when the ranks hold unequal shares (UnrepeatedDistributedSampler)
        self.val_loss = MeanMetric()
        self.test_acc = MulticlassAccuracy(k, average="micro")
        self.test_acc_sampled = MulticlassAccuracy(k, average="micro")
        self.test_loss = MeanMetric()
        self.test_examples = SumMetric()
        self.readout_val = ConfusionCounts(k)
        self.readout_test = ConfusionCounts(k)

    # -- model ---------------------------------------------------------------------------------------------
    def digit_logits(self, images: torch.Tensor) -> torch.Tensor:
        """θ = C·x′ for every image; ``images`` [B, n, 1, 28, 28] → [B, n, K]."""
        b, n = images.shape[:2]
        return self.C(self.encoder(images.reshape(b * n, *images.shape[2:]))).view(b, n, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits [B, K] for images [B, operands·digits, 1, 28, 28]."""
        b, n = images.shape[:2]
        if self.variant == "baseline":
            side = torch.cat(list(images.unbind(1)), dim=-1)  # [B, 1, 28, 28·n]
            return self.head(self.features(side))
        # Nodes keep the example as their leading dimension so score-function estimators get one
        # log-probability per example.
        x = self.digit_node(self.encoder(images.reshape(b * n, *images.shape[2:])).view(b, n, 84))
        if self.operands == 3:
            partial = self.adder(x[:, :2].reshape(b, -1))
            partial = self.partial_node(partial)
            x12 = self.adder(torch.cat([partial, x[:, 2]], dim=-1))
        else:
            x12 = self.adder(x.reshape(b, -1))
        return self.C(x12)

    # -- steps -----------------------------------------------------------------------------------------------
    def training_loss(self, batch):
        images, label = self.expand(batch["images"], batch["label"])
        logits = self(images)
        cost = F.cross_entropy(logits, label, reduction="none")
        loss = cost.mean() + self.surrogate(cost)
        self.train_acc.update(logits.detach(), label)
        return loss, {}

    def training_epoch_accumulators(self) -> dict:
        return {**super().training_epoch_accumulators(), "train_acc": self.train_acc}

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        log_reduced(self, {"train/acc": self.train_acc.compute()})
        self.train_acc.reset()

    def validation_step(self, batch, batch_idx):
        with eval_noise(self, batch["index"], VAL):  # keyed, should an estimator decode by sampling
            logits = self(batch["images"])
        self.val_acc(logits, batch["label"])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(logits))
        self.val_loss.update(F.cross_entropy(logits, batch["label"], reduction="none"))
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=len(logits))

    def on_test_epoch_start(self) -> None:
        # Match categories to digits on held-out labelled validation images (never on test).
        if self.variant != "ours":
            return
        dm = self.trainer.datamodule
        with torch.no_grad():
            for batch in dm.readout_dataloader("val"):
                theta = self.digit_logits(batch["images"].to(self.device)[:, None])
                self.readout_val.update(theta.argmax(-1), batch["digits"].to(self.device))

    def test_step(self, batch, batch_idx):
        images, label = batch["images"], batch["label"]
        with eval_noise(self, batch["index"], TEST):  # the configured decoding (MAP by default)
            logits = self(images)
        self.test_acc.update(logits, label)
        self.test_loss.update(F.cross_entropy(logits, label, reduction="none"))
        self.test_examples.update(torch.tensor(float(len(label)), device=self.device))
        with self.decoding("sample"), eval_noise(self, batch["index"], TEST):
            self.test_acc_sampled.update(self(images), label)
        if self.variant == "ours":
            self.readout_test.update(self.digit_logits(images).argmax(-1), batch["digits"])

    def on_test_epoch_end(self) -> None:
        metrics = {"test/acc": self.test_acc.compute(), "test/acc_sampled": self.test_acc_sampled.compute(),
                   "test/loss": self.test_loss.compute(), "test/examples": self.test_examples.compute()}
        if self.variant == "ours":
            metrics["test/digit_readout_acc"] = readout_accuracy(self.readout_val.compute(), self.readout_test.compute())
            used = self.readout_test.compute().sum(1) > 0
            metrics["test/categories_used"] = used.sum().float()
        log_reduced(self, metrics)
        for m in (self.test_acc, self.test_acc_sampled, self.test_loss, self.test_examples, self.readout_val,
                  self.readout_test):
            m.reset()
