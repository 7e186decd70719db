"""Sending a job's output to its log file (used by the workflow's scripts)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path):
    """Redirect stdout, stderr and logging to ``path`` for the duration of the block.

    An exception is written to the log with its traceback, then re-raised.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        logging.getLogger().addHandler(handler)
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=fh)
            raise
        finally:
            logging.getLogger().removeHandler(handler)
