"""The suite's Adam (``models.base.adam``): PyTorch's multi-tensor implementation, chosen for speed on CPU, must step
exactly as the per-tensor loop every published number was trained with — bit for bit, or result versions would
have to move."""

from __future__ import annotations

import copy

import pytest
import torch

from scgbench.models.base import adam
from scgbench.models.discrete_vae import AdamWithSGDGroups, DiscreteVAE


def _train(model, opt, steps: int = 25) -> list[torch.Tensor]:
    torch.manual_seed(0)
    x = (torch.rand(32, 784) < 0.3).float()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model.encoder(x).pow(2).mean() + model.decoder(torch.rand(32, model.decoder[0].in_features)).pow(2).mean()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("options", [{"lr": 1e-3}, {"lr": 3e-4, "betas": (0.5, 0.9)}])
def test_the_suites_adam_is_the_per_tensor_adam_bit_for_bit(options):
    torch.manual_seed(1)
    a = DiscreteVAE(latent="8x4")
    b = copy.deepcopy(a)
    opt = adam(a.parameters(), **options)
    assert opt.defaults["foreach"] is True
    got = _train(a, opt)
    want = _train(b, torch.optim.Adam(b.parameters(), foreach=False, **options))
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    # the control: an implementation with other arithmetic (the fused kernel) does not pass this check
    torch.manual_seed(1)
    c = DiscreteVAE(latent="8x4")
    fused = _train(c, torch.optim.Adam(c.parameters(), fused=True, **options))
    assert not all(torch.equal(g, w) for g, w in zip(fused, want))


def test_every_task_module_configures_the_suites_adam():
    """Every benchmark's module with its defaults (kg-paths builds its parameters when it sees its graph; it takes
    the base class's optimizer) and DisARM's learned prior step with foreach Adam."""
    from scgbench.benchmarks import load_all

    for name, bm in load_all().items():
        if name == "kg-paths":
            continue
        out = bm.module().configure_optimizers()
        opts = out if isinstance(out, list) else [out["optimizer"] if isinstance(out, dict) else out]
        assert all(isinstance(o, torch.optim.Adam) and o.defaults["foreach"] is True for o in opts), name
    prior = DiscreteVAE(latent="200x2", prior="learned").configure_optimizers()
    assert isinstance(prior, AdamWithSGDGroups) and prior.defaults["foreach"] is True
