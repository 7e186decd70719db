"""Errors that carry a message telling the user what to do."""


class ConfigError(ValueError):
    """A configuration or input problem the user must fix; the message says how."""


class CacheError(RuntimeError):
    """An activation cache that is missing, incomplete or fails its manifest check."""


class TrainingError(RuntimeError):
    """Training could not go on (non-finite loss, ...); finished work is kept."""
