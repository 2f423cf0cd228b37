"""The jsonargparse error texts the suite parses (scgbench/_lightning.py, ``JSONARGPARSE_MESSAGES``) are still the
ones jsonargparse writes: each is triggered through the suite's own parser (``BenchmarkCLI``) and its raw text
must match the listed pattern, with the groups explain() reads out of it. A jsonargparse upgrade that rewords one
fails here, naming it, instead of degrading an error message."""

import re

import pytest

import scgbench.config as config
from scgbench._lightning import JSONARGPARSE_MESSAGES, attached_trainer
from scgbench.benchmarks import get_benchmark

#: pattern name → (overrides of an mnist-addition run, config file text or None, the groups expected)
CASES = {
    "unrecognized": (["--model.tauu", "3"], None, ("--model.tauu",)),
    "group_option": (["--config", "{cfg}"], "model:\n  tauu: 3\n", ("model", "tauu")),
    "linked": (["--data.seed", "3"], None, ("data.seed", "seed_everything")),
    "parser_key": (["--model.tau", "abc"], None, ("model.tau",)),
    "expected": (["--model.tau", "abc"], None, ("float",)),
    "given": (["--model.tau", "abc"], None, ("abc",)),
    "not_accepted": (["--tricks.dropres.rat", "3"], None, ("rat",)),
    "union": (["--tricks.dropres.rat", "3"], None, ()),
    "class_path": (["--tricks.dropres.rat", "3"], None, ()),
}


def test_every_listed_message_has_a_case():
    assert set(CASES) == set(JSONARGPARSE_MESSAGES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jsonargparse_still_writes_the_listed_message(name, tmp_path, monkeypatch):
    overrides, text, groups = CASES[name]
    if text is not None:
        (tmp_path / "c.yaml").write_text(text)
        overrides = [a.format(cfg=tmp_path / "c.yaml") for a in overrides]
    raw = []
    explain = config.explain
    monkeypatch.setattr(config, "explain", lambda message, parser: (raw.append(message), explain(message, parser))[1])
    bm = get_benchmark("mnist-addition")
    with pytest.raises(config.ConfigError):
        config.BenchmarkCLI(bm, config.benchmark_args(bm, "quick", None, 0) + overrides).instantiate()
    m = re.search(JSONARGPARSE_MESSAGES[name], raw[-1])
    assert m, f"jsonargparse no longer writes {name!r} ({JSONARGPARSE_MESSAGES[name]}): {raw[-1]!r}"
    assert m.groups() == groups


def test_attached_trainer_is_none_for_a_bare_module_and_the_trainer_once_attached(tmp_path):
    import lightning.pytorch as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)
            self.seen = []

        def setup(self, stage):
            self.seen.append(attached_trainer(self))

        def training_step(self, batch, i):
            return self.w(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    m = Tiny()
    assert attached_trainer(m) is None
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(m, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(2, 1)), batch_size=2))
    assert m.seen == [trainer]
