"""What makes two runs the same experiment: the resolved config minus what cannot change results.

A run's *experiment* is its resolved config (model, data, trainer, tricks) as a flat ``{"section.key": value}``
dict, without

* the seed (runs of one experiment differ only in it), and
* what cannot change results: paths, logging, the progress bar, checkpointing, the accelerator, loader
  workers, the evaluation batch size (evaluation noise is keyed per example), diagnostics (:data:`NOT_EXPERIMENT`),

and without entries equal to the class defaults, so that a parameter added later with a default does not move
the fingerprint of earlier experiments. Its *fingerprint* is a hash of that dict: leaderboard rows pool only
records with the same fingerprint, and a run whose experiment differs from its profile ⊕ variant ⊕ estimator
(:func:`modifications`) gets a row of its own, marked modified.

Records written before schema 2 have no experiment; :func:`legacy_experiment` rebuilds it from their
command-line ``args`` and ``tricks`` with the same rules.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any, Iterable

import yaml

#: config keys (or key prefixes, ending in ".") that cannot change a run's results
NOT_EXPERIMENT = (
    "seed_everything", "config", "print_config", "data.seed",
    "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.enable_checkpointing", "trainer.profiler", "trainer.accelerator",
    "trainer.strategy", "trainer.num_sanity_val_steps", "trainer.barebones",
    "data.num_workers", "data.root", "data.eval_batch_size", "data.cache", "data.download",
    "tricks.grad_magnitude.", "tricks.category_usage.",
)


def _excluded(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) or key.startswith(k + ".")
               for k in NOT_EXPERIMENT)


def canonical(value: Any) -> Any:
    """JSON-stable form: tuples → lists, integral floats → ints, dict keys sorted by ``json.dumps``."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"tau": 8}}`` → ``{"model.tau": 8}``; a subclass spec (``class_path``/``init_args``) is
    flattened into ``…class_path`` and ``…init_args.<name>`` entries; other dict values stay whole."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (not prefix or "class_path" in v or k == "init_args"):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _signature_defaults(cls) -> dict[str, Any]:
    out = {}
    for c in reversed(inspect.getmro(cls)) if isinstance(cls, type) else [cls]:
        init = getattr(c, "__init__", None)
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        out.update({p.name: p.default for p in params
                    if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)})
    return out


def defaults(benchmark) -> dict[str, Any]:
    """Flat class defaults of a benchmark's config sections (model, data, trainer)."""
    import lightning.pytorch as pl

    out = {}
    for section, cls in (("model", benchmark.module), ("data", benchmark.datamodule), ("trainer", pl.Trainer)):
        out.update({f"{section}.{k}": v for k, v in _signature_defaults(cls).items()})
    return out


def _class_defaults(class_path: str) -> dict[str, Any]:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        return _signature_defaults(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError, ValueError):
        return {}


def experiment(flat: dict[str, Any], benchmark) -> dict[str, Any]:
    """The experiment of a flat resolved config (see the module docstring)."""
    base = defaults(benchmark)
    out = {}
    for key, value in flat.items():
        if _excluded(key):
            continue
        value = canonical(value)
        if key.startswith("tricks."):
            parts = key.split(".")
            if len(parts) == 2 and value is None:  # a trick switched off is the default
                continue
            if len(parts) == 4 and parts[2] == "init_args":
                cls = flat.get(".".join(parts[:2]) + ".class_path")
                d = _class_defaults(cls) if cls else {}
                if parts[3] in d and canonical(d[parts[3]]) == value:
                    continue
        elif key in base and canonical(base[key]) == value:
            continue
        out[key] = value
    # the benchmark's result version: version 1 is left out, so fingerprints from before versions
    # existed stay those of version 1; a bump changes every fingerprint of the benchmark, and rows never pool across it
    version = getattr(benchmark, "result_version", 1)
    if version != 1:
        out["result_version"] = version
    return dict(sorted(out.items()))


def fingerprint(exp: dict[str, Any]) -> str:
    """A 12-hex-digit hash of an experiment (stable across processes and platforms)."""
    return hashlib.sha256(json.dumps(exp, sort_keys=True, default=str).encode()).hexdigest()[:12]


def modifications(base: dict[str, Any], exp: dict[str, Any]) -> dict[str, Any]:
    """What ``exp`` changes relative to ``base`` (``None`` for an entry it drops)."""
    out = {k: v for k, v in exp.items() if base.get(k, object()) != v}
    out.update({k: None for k in base if k not in exp})
    return dict(sorted(out.items()))


# -- records written before experiments existed (schema 1) --------------------------------------------------
def _args_to_flat(args: Iterable[str]) -> dict[str, Any]:
    out = {}
    for a in args:
        if not a.startswith("--") or "=" not in a:
            continue
        k, v = a[2:].split("=", 1)
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            out[k] = v
    return out


def _legacy_tricks(tricks: dict) -> dict[str, Any]:
    from .callbacks import CALLBACKS

    out = {}
    for name, params in (tricks or {}).items():
        key = name.replace("-", "_")
        if not params or key not in CALLBACKS:
            continue
        out[f"tricks.{key}.class_path"] = f"scgbench.callbacks.{CALLBACKS[key].__name__}"
        for p, v in (params if isinstance(params, dict) else {}).items():
            out[f"tricks.{key}.init_args.{p}"] = v
    return out


def legacy_experiment(record: dict, benchmark) -> tuple[dict[str, Any], dict[str, Any]]:
    """(experiment, modifications) of a schema-1 record: its ``args`` were the profile ⊕ variant as
    ``--section.key=value``, then ``--data.seed=S``, then the user's overrides; tricks were kept apart."""
    args = list(record.get("args") or [])
    cut = next((i for i, a in enumerate(args) if a.startswith("--data.seed=")), len(args))
    tricks = _legacy_tricks(record.get("tricks", {}))
    full = experiment({**_args_to_flat(args), **tricks}, benchmark)
    base = experiment({**_args_to_flat(args[:cut]), **tricks}, benchmark)
    return full, modifications(base, full)


def record_experiment(record: dict, benchmark) -> tuple[str, dict[str, Any]]:
    """(fingerprint, modifications) of a result record: what makes it one experiment with other records, for the
    leaderboard's rows and for ``compare``'s "is this cell done"; schema-1 records are rebuilt from their
    arguments (:func:`legacy_experiment`)."""
    if "fingerprint" in record:
        return record["fingerprint"], record.get("modified") or {}
    if benchmark is None:
        return fingerprint({"args": record.get("args"), "tricks": record.get("tricks")}), {}
    exp, modified = legacy_experiment(record, benchmark)
    return fingerprint(exp), modified
