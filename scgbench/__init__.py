"""scgbench: benchmarks for discrete stochastic computation graphs."""

__version__ = "0.1.0"
