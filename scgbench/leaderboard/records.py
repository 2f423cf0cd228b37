"""Compatibility: the results store moved below the runner and the leaderboard, to :mod:`scgbench.store`."""

import os  # noqa: F401 — tests patch ``records.os``

from ..store import (SCHEMA_VERSION, ResultsDirError, UnknownSchema, check_readable,  # noqa: F401 — re-exported
                     published_dir, read_records, record_id, record_name, results_dir, results_dirs, write_record)

__all__ = ["SCHEMA_VERSION", "ResultsDirError", "UnknownSchema", "check_readable", "published_dir", "read_records",
           "record_id", "record_name", "results_dir", "results_dirs", "write_record"]
