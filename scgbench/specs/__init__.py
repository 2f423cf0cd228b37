"""Per-task specs: the values that data, models and metrics of one task must agree on, in one small module
per task that each of them can import (SPEC §2): ``listops`` (the token vocabulary, §2.2), ``kg`` (the
path-query datasets and their evaluation protocols, §2.3), ``nasbench101`` (the cell space and its graph
hash, §2.4) and ``disentanglement`` (the ground-truth data interface, §2.5).

A spec imports only the standard library, numpy, torch, :mod:`scgbench.seeding` and :mod:`scgbench.io` —
never datamodules, models or metrics (``tests/test_layering.py``).
"""
