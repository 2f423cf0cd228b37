"""Timing commands that span layers (data and metrics together), one module each, run as
``python -m scgbench.bench.<name>``: ``disentanglement`` (dSprites rendering and the disentanglement metrics),
``ranking_throughput`` (KG filter sets and filtered ranking), ``listops_step`` (ListOps training steps, the
fused edge chain against the reference) and ``score_baseline`` (how much of a score-function signal's
variance a baseline removes, at a discrete-VAE checkpoint). Nothing in the package imports them.
"""
