"""Sending a job's output to its log file (used by the workflow's scripts)."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path

from saesuite.errors import SUITE_ERRORS, describe


@contextlib.contextmanager
def log_to(path: str | Path):
    """Redirect stdout, stderr and logging to ``path`` for the duration of the block.

    An exception is written to the log with its traceback. One of the suite's own errors
    (:data:`saesuite.errors.SUITE_ERRORS`: a config, cache or training problem, a busy output
    folder, a path that cannot be read or written) then reaches the user as its message alone,
    on the job's stderr with the log's path, and the job exits with status 1; any other exception
    (a bug) is re-raised with its traceback.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stderr = sys.stderr
    failure = None
    with open(path, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        logging.getLogger().addHandler(handler)
        try:
            yield
        except SUITE_ERRORS as err:
            traceback.print_exc(file=fh)
            failure = err
        except BaseException:
            traceback.print_exc(file=fh)
            raise
        finally:
            logging.getLogger().removeHandler(handler)
    if failure is not None:
        print(f"saesuite error: {describe(failure)} (traceback in {path})", file=stderr, flush=True)
        raise SystemExit(1)
