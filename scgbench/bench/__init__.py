"""Timing commands that span layers (data and metrics together), one module each, run as
``python -m scgbench.bench.<name>``: ``disentanglement`` (dSprites rendering and the disentanglement metrics)
and ``ranking_throughput`` (KG filter sets and filtered ranking). Nothing in the package imports them.
"""
