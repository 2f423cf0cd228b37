"""One configuration path for ``run``, ``compare`` and ``profile``: LightningCLI with the benchmark's shipped YAML
files as config layers.

``scgbench run B --profile P --variant V [--estimator E] [--seed S] [overrides]`` parses

    --config configs/B/profiles/P.yaml --config configs/B/variants/V.yaml [--model.estimator E]
    --seed_everything S [the user's --config FILE and --section.key value overrides]

with LightningCLI (jsonargparse), later layers winning, so ``--print_config`` prints the resolved run and that
YAML reproduces it with ``--config``. Tricks and diagnostics are Lightning callbacks under ``tricks.<name>``
(``class_path`` / ``init_args``; ``null`` switches one off), added with LightningCLI's
``add_lightning_class_args``, so Lightning appends them to the trainer's callbacks. The run seed is linked to
the datamodule's ``seed`` and the benchmark's shared values (e.g. MNIST's ``data.operands`` → ``model.operands``)
with ``link_arguments``.

Everything checkable is checked before any work: option names (no prefix matching; an unknown one is named
with the closest valid ones), value types, the estimator's family against the benchmark's, and every
constructor's range checks (``model``, ``data`` and each trick are instantiated before the trainer and the
run directory exist). Failures are :class:`ConfigError` (a ``ValueError``): one line, exit 2 from the CLI.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import re
import warnings
from argparse import ArgumentError
from typing import Any, Sequence

import lightning.pytorch as pl
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI

from ._lightning import JSONARGPARSE_MESSAGES
from .benchmarks import Benchmark
from .callbacks import CALLBACKS
from .estimators import compatibility, get_estimator, get_estimator_class
from .experiment import experiment, flatten

#: Trainer settings of every run (shown by ``--print_config``; the run directory's logger, checkpoints and
#: progress display are added when the trainer is built)
TRAINER_DEFAULTS = {"log_every_n_steps": 50, "enable_model_summary": False}


class ConfigError(ValueError):
    """A configuration the suite rejects before any work starts (one line, naming the key and the fix)."""


class BenchmarkCLI(LightningCLI):
    """LightningCLI for one benchmark that parses at construction and builds on request:
    :meth:`instantiate` (model, datamodule, tricks) and then :meth:`make_trainer` (given the run's callbacks
    and directory), so nothing is created on disk before the whole configuration has been checked."""

    def __init__(self, benchmark: Benchmark, args: Sequence[str] | dict) -> None:
        """``args``: LightningCLI arguments (config layers and overrides), or a resolved config as plain data
        (:meth:`resolved` of a parse elsewhere: validated as one object, no layers are read or merged)."""
        self.benchmark = benchmark
        seed_log = logging.getLogger("lightning.fabric.utilities.seed")
        level = seed_log.level
        with warnings.catch_warnings():
            # We hand LightningCLI its arguments from our own front end on purpose, and the run seed is in the
            # record: neither the args warning nor "Seed set to S" tells the user anything.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            # Lightning's own use of a jsonargparse API that jsonargparse deprecated: not ours to act on.
            warnings.filterwarnings("ignore", message=r"(?s).*(add_instantiator.. was deprecated|By default only one "
                                                      r"JsonargparseDeprecationWarning)")
            seed_log.setLevel(logging.WARNING)
            try:
                super().__init__(benchmark.module, benchmark.datamodule, run=False,
                                 args=dict(args) if isinstance(args, dict) else list(args),
                                 save_config_callback=None, auto_configure_optimizers=False,
                                 seed_everything_default=0, trainer_defaults=TRAINER_DEFAULTS,
                                 parser_kwargs={"exit_on_error": False, "allow_abbrev": False})
            finally:
                seed_log.setLevel(level)

    # -- parsing -----------------------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser) -> None:
        for key, cls in CALLBACKS.items():
            parser.add_lightning_class_args(cls, f"tricks.{key}", subclass_mode=True, required=False)
        if "seed" in inspect.signature(self.benchmark.datamodule.__init__).parameters:
            parser.link_arguments("seed_everything", "data.seed")
        for source, target in self.benchmark.links:
            parser.link_arguments(source, target)

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise ConfigError(explain(str(e), parser)) from None

    def instantiate_classes(self) -> None:
        """Deferred: LightningCLI calls this at construction; :meth:`instantiate` does the work."""

    # -- building ---------------------------------------------------------------------------------------------
    def instantiate(self) -> None:
        """Instantiate model, datamodule and tricks (their constructors check ranges); no trainer yet."""
        try:
            with warnings.catch_warnings():
                # raised inside Lightning's own instantiator (its use of a jsonargparse API), not ours to act on
                warnings.filterwarnings("ignore", message=r"(?s).*skip_none parameter was deprecated")
                self.config_init = self.parser.instantiate(self.config)
        except (ArgumentError, ValueError) as e:
            raise ConfigError(explain(str(e), self.parser)) from None
        self.datamodule, self.model = self.config_init.get("data"), self.config_init.get("model")

    @property
    def tricks(self) -> dict[str, pl.Callback]:
        """The instantiated tricks and diagnostics that are switched on, by config key."""
        return {k: cb for k in CALLBACKS if (cb := self.config_init.get(f"tricks.{k}")) is not None}

    def make_trainer(self, callbacks: Sequence[pl.Callback] = (), **trainer_kwargs) -> pl.Trainer:
        """The trainer of the resolved config, with the tricks, the user's ``trainer.callbacks`` and the run's own
        ``callbacks`` (checkpoints, progress), and ``trainer_kwargs`` (run directory, logger) on top."""
        config = {**self.config_init.get("trainer", {}), **trainer_kwargs}
        user = config.get("callbacks") or []
        user = user if isinstance(user, list) else [user]
        config["callbacks"] = [*list(self.tricks.values()), *user, *callbacks]
        try:
            self.trainer = self.trainer_class(**config)
        except (ValueError, MisconfigurationException) as e:
            raise ConfigError(_one_line(str(e))) from None
        return self.trainer

    def check_trainer(self) -> None:
        """Build a throwaway trainer of the resolved config (no logger, callbacks or checkpoints: nothing is written)
        so that Lightning's own checks (accelerator, strategy, devices, epochs…) run before any work."""
        log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        level = log.level
        log.setLevel(logging.WARNING)  # "GPU available: …" is printed once, by the run's trainer
        try:
            config = {**self.config_init.get("trainer", {}), "logger": False, "callbacks": [],
                      "enable_checkpointing": False, "enable_progress_bar": False}
            self.trainer_class(**config)
        except (ValueError, MisconfigurationException) as e:
            raise ConfigError(_one_line(str(e))) from None
        finally:
            log.setLevel(level)

    # -- what the config says ------------------------------------------------------------------------------------
    def resolved(self, config=None) -> dict:
        """The resolved config as plain data (what ``--print_config`` prints); ``config``: another parse of this
        CLI's parser (default: the run's own)."""
        return yaml.safe_load(self.parser.dump(self.config if config is None else config, skip_link_targets=False,
                                               skip_unset=False))

    def experiment(self, args: Sequence[str] | None = None) -> dict[str, Any]:
        """The run's experiment, or with ``args`` that of other arguments of this benchmark, parsed by the same
        parser (e.g. the run's profile ⊕ variant ⊕ estimator layers alone: no second CLI is built)."""
        if args is None:
            return experiment(flatten(self.resolved()), self.benchmark)
        try:
            config = self.parser.parse_args(list(args))
        except ArgumentError as e:
            raise ConfigError(explain(str(e), self.parser)) from None
        return experiment(flatten(self.resolved(config)), self.benchmark)


def benchmark_args(benchmark: Benchmark, profile: str, variant: str | None, seed: int,
                   estimator: str | None = None, estimator_kwargs: dict | None = None,
                   disable_tricks: Sequence[str] = ()) -> list[str]:
    """The config layers and named options of one run, as LightningCLI arguments (before the user's)."""
    args = ["--config", str(benchmark.profile_file(profile)), "--config", str(benchmark.variant_file(variant)),
            f"--seed_everything={int(seed)}"]
    model_params = inspect.signature(benchmark.module.__init__).parameters
    if estimator is not None:
        get_estimator_class(estimator)  # unknown names fail here with the valid ones
        if "estimator" not in model_params or not benchmark.families:
            raise ConfigError(f"{benchmark.name} trains without a gradient estimator; drop --estimator")
        args.append(f"--model.estimator={estimator}")
    if estimator_kwargs:
        args.append(f"--model.estimator_kwargs={yaml.safe_dump(estimator_kwargs, default_flow_style=True).strip()}")
    for name in disable_tricks:
        from .callbacks import trick_key

        key = trick_key(name)
        args.append(f"--tricks.{key}=null")
        if key == "dropres" and "dropres" in model_params:
            args.append("--model.dropres=false")  # no DropRes at all, as the -nodr variants
    return args


def check_families(cli: BenchmarkCLI) -> None:
    """Every estimator the config names must belong to a family the benchmark supports."""
    bm, model = cli.benchmark, cli.config.get("model", {})
    for key in ("estimator", "node_estimator"):
        name = model.get(key) if hasattr(model, "get") else None
        if not name:
            continue
        cls = get_estimator_class(name)
        if not bm.families:
            raise ConfigError(f"{bm.name} trains without a gradient estimator; drop --estimator / --model.{key}")
        if cls.family not in bm.families:
            raise ConfigError(f"{bm.name} does not support {cls.family} estimators such as {name!r} "
                              f"(--model.{key}); it supports {', '.join(bm.families)}")
        # nodes whose size is an option (the discrete VAE's latent) are checked when the module is built
        k = None if getattr(bm.module, "checks_node_groups", False) else bm.node_shape[-1]
        why = compatibility(cls, provides=getattr(bm.module, "provides", frozenset()), num_categories=k, task=bm.name)
        if why:
            raise ConfigError(f"{why} (--model.{key})")
        # its options (--estimator-arg): names, types and values, here rather than in a grid's cell after others ran
        options = model.get(f"{key}_kwargs") if hasattr(model, "get") else None
        if options:
            try:
                get_estimator(name, **dict(options))
            except (TypeError, ValueError) as e:
                raise ConfigError(str(e)) from None


def configured_estimator(cli: BenchmarkCLI) -> str:
    """The estimator names the config gives the model (``+``-joined; ``none`` without one), read from the config
    without building the model (a variant without a discrete node ignores them: its run's record says ``none``)."""
    model = cli.config.get("model", {})
    names = {get_estimator_class(n).name for k in ("estimator", "node_estimator")
             if hasattr(model, "get") and (n := model.get(k))} if cli.benchmark.families else set()
    return "+".join(sorted(names)) or "none"


# -- one-line errors -----------------------------------------------------------------------------------------
def valid_keys(parser) -> list[str]:
    """Every option name the parser accepts, with the init arguments of the trick classes."""
    keys = {"config", "print_config"}
    keys.update(flatten(yaml.safe_load(parser.dump(parser.get_defaults(), skip_validation=True, skip_unset=False))
                        or {}).keys())
    for key, cls in CALLBACKS.items():
        for p in list(inspect.signature(cls.__init__).parameters)[1:]:
            keys.add(f"tricks.{key}.{p}")
            keys.add(f"tricks.{key}.init_args.{p}")
    return sorted(keys)


def _one_line(msg: str) -> str:
    return re.sub(r"\s+", " ", msg).strip()


def explain(message: str, parser) -> str:
    """jsonargparse's multi-line error → one line naming the key, what was wrong and the closest valid keys."""
    M = JSONARGPARSE_MESSAGES
    inner = [ln.strip()[2:] for ln in message.splitlines() if ln.strip().startswith("- ")
             and not re.search(M["expected"], ln) and not re.search(M["class_path"], ln)]
    key = re.search(M["parser_key"], message)
    if inner and re.search(M["union"], message) and not re.search(M["not_accepted"], message):
        # a constructor's own check inside a Union (the tricks): its message is the useful one
        return (f"invalid --{key.group(1)}: " if key else "") + _one_line(inner[0])
    m = re.search(M["unrecognized"], message)
    if m:
        key = m.group(1).lstrip("-").split("=", 1)[0]
        return f"unknown option --{key}{_suggest(key, parser)}"
    m = re.search(M["group_option"], message)
    if m:
        key = f"{m.group(1)}.{m.group(2)}"
        return f"unknown option {key!r} in a config file{_suggest(key, parser)}"
    m = re.search(M["linked"], message)
    if m:
        return f"--{m.group(1)} cannot be set on its own: it is linked to --{m.group(2)}; set that instead"
    m = re.search(M["parser_key"], message)
    if m:
        key = m.group(1)
        if key == "config":
            return _one_line(message.split(":", 1)[1])
        opt = re.search(M["not_accepted"], message)
        if opt:
            full = f"{key}.{opt.group(1)}"
            return f"unknown option --{full}{_suggest(full, parser)}"
        expected = sorted(set(re.findall(M["expected"], message)) - {"NoneType"})
        given = re.search(M["given"], message)
        what = f"expected {' or '.join(expected)}" if expected else _one_line(message.split(":", 1)[1])[:200]
        return f"invalid value for --{key}: {what}" + (f", got {given.group(1).strip()!r}" if given else "")
    return _one_line(message)[:300]


def _suggest(key: str, parser) -> str:
    close = difflib.get_close_matches(key, valid_keys(parser), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
    return hint + " (`--print_config` shows every option)"
