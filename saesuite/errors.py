"""Errors that carry a message telling the user what to do."""


class ConfigError(ValueError):
    """A configuration or input problem the user must fix; the message says how."""


class CacheError(RuntimeError):
    """An activation cache that is missing, incomplete or fails its manifest check."""


class TrainingError(RuntimeError):
    """Training could not go on (non-finite loss, divergence, ...); finished work is kept."""


class BusyError(RuntimeError):
    """An output folder is held by another running saesuite process (its lock names the holder)."""


# What the command line and the workflow's jobs print as one message, without a traceback: the
# suite's own errors, and OSError (a path that cannot be read or written; its message names it).
SUITE_ERRORS = (ConfigError, CacheError, TrainingError, BusyError, OSError)


def describe(err: BaseException) -> str:
    """An error's message for one line: an OSError as ``what: path`` (with a rename's second path)."""
    if isinstance(err, OSError) and err.strerror:
        paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{err.strerror}: {paths}" if paths else err.strerror
    return str(err)
