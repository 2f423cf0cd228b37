"""The leaderboard rendered from the results store (:mod:`scgbench.store`): one table model
(:mod:`.table`), rendered as ``leaderboard.md`` (:mod:`.render`), a static site (:mod:`.site`) and exports."""

from ..store import SCHEMA_VERSION, read_records, results_dir, write_record
from .render import render, rows, write_leaderboard

__all__ = ["SCHEMA_VERSION", "read_records", "render", "results_dir", "rows", "write_leaderboard", "write_record"]
