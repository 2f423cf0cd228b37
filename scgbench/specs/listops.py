"""The ListOps token vocabulary (SPEC §2.2; thesis §6.1.1, Appendix A.1.1).

This spec is shared by the generator and file format (``scgbench.datamodules.listops``) and the parser /
executor models (``scgbench.models.listops``): the 14 tokens ``0 … 9 [MIN [MAX [MED ]`` (:data:`VOCAB`),
their ids (:data:`TOKEN_ID`; the operator and ``]`` ids :data:`MIN_ID`, :data:`MAX_ID`, :data:`MED_ID`,
:data:`CLOSE_ID`) and :data:`NUM_TOKENS`.
"""

from __future__ import annotations

DIGITS = [str(i) for i in range(10)]
OPERATORS = ["[MIN", "[MAX", "[MED"]
CLOSE = "]"
#: token id = index; digits first so that the digit embedding rows are E[0..9] (thesis A.1.1, v = zᵀE([0..9]))
VOCAB: list[str] = DIGITS + OPERATORS + [CLOSE]
TOKEN_ID: dict[str, int] = {t: i for i, t in enumerate(VOCAB)}
MIN_ID, MAX_ID, MED_ID, CLOSE_ID = 10, 11, 12, 13
NUM_TOKENS = len(VOCAB)  # 14
