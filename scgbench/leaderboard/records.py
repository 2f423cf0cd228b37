"""Compatibility: the results store moved below the runner and the leaderboard, to :mod:`scgbench.store`."""

from ..store import *  # noqa: F401,F403
from ..store import (_check, _content_hash, _env_dirs, _write_new, check_readable, record_id,  # noqa: F401
                     record_name, results_dir, results_dirs)
