"""The task modules' base class under Lightning's training loop."""

import copy

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from scgbench.models.base import SCGModule


class Probe(SCGModule):
    """A linear model that records, at each forward pass, whether the weight still holds a gradient."""

    def __init__(self) -> None:
        super().__init__(lr=0.1)
        self.lin = torch.nn.Linear(3, 1)
        self.grad_freed_at_forward: list[bool] = []

    def training_loss(self, batch):
        self.grad_freed_at_forward.append(self.lin.weight.grad is None)
        return (self.lin(batch) - 1).pow(2).mean(), {}


@pytest.mark.parametrize("accumulate, freed", [(1, [True] * 4), (2, [True, False, True, False])])
def test_gradients_are_freed_before_the_forward_yet_accumulate_within_a_window(accumulate, freed):
    torch.manual_seed(0)
    batches = [torch.randn(4, 3) for _ in range(4)]
    model = Probe()
    reference = copy.deepcopy(model.lin)
    trainer = pl.Trainer(max_epochs=1, accumulate_grad_batches=accumulate, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, DataLoader(batches, batch_size=None))
    assert model.grad_freed_at_forward == freed

    # the same optimisation as a plain loop: Adam on the mean loss of each accumulation window
    opt = torch.optim.Adam(reference.parameters(), lr=0.1)
    for start in range(0, len(batches), accumulate):
        opt.zero_grad(set_to_none=True)
        for b in batches[start:start + accumulate]:
            ((reference(b) - 1).pow(2).mean() / accumulate).backward()
        opt.step()
    torch.testing.assert_close(model.lin.weight, reference.weight)
    torch.testing.assert_close(model.lin.bias, reference.bias)
