"""Benchmark registry (see :mod:`scgbench.benchmarks.registry`)."""

from .registry import (BENCHMARKS, CONFIG_ROOT, PROFILES, Benchmark, Metric, Pin, get_benchmark, load_all,
                       register)

__all__ = ["BENCHMARKS", "CONFIG_ROOT", "PROFILES", "Benchmark", "Metric", "Pin", "get_benchmark", "load_all",
           "register"]
