"""Benchmark registry (see :mod:`scgbench.benchmarks.registry`)."""

from .registry import BENCHMARKS, PROFILES, Benchmark, deep_merge, get_benchmark, load_all, register

__all__ = ["BENCHMARKS", "PROFILES", "Benchmark", "deep_merge", "get_benchmark", "load_all", "register"]
