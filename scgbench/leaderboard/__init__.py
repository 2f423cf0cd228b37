"""Result records and the leaderboard rendered from them."""

from .records import SCHEMA_VERSION, read_records, results_dir, write_record
from .render import render, rows, write_leaderboard

__all__ = ["SCHEMA_VERSION", "read_records", "render", "results_dir", "rows", "write_leaderboard", "write_record"]
