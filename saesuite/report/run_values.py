"""The values of a run folder's JSON outputs, as ``saesuite diff-runs`` compares them.

A value is named by a key ``<path relative to the run>:<dotted.key>`` (list indices as numbers),
e.g. ``eval/tiny-RN/metrics.json:explained_variance``; :func:`flatten` gives the leaves of a JSON
file under such dotted keys. A :class:`Tolerance` states how far two numbers may be apart, and
:func:`compare_value` makes the report entry of one differing value. The readers here check what
they read (a run's ``provenance.json``, a tolerances or reference file) and raise ``ConfigError``
with the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saesuite.errors import ConfigError

PROVENANCE = "provenance.json"
KEY_SEPARATOR = ".json:"  # a key is '<path>.json:<dotted.key>'
OUT, WITHIN, UNSTATED = "out of tolerance", "within tolerance", "no tolerance stated"


class _Missing:
    """A key one side of a comparison lacks."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING = _Missing()


@dataclass(frozen=True)
class Tolerance:
    """How far two numbers may be apart: ``|a - b| <= max(abs, rel * max(|a|, |b|))``."""

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=self.rel, abs_tol=self.abs)

    def as_dict(self) -> dict:
        return {"abs": self.abs, "rel": self.rel}


# --- keys and values ------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested JSON as ``{"a.b.0.c": leaf}`` (list indices as numbers); an empty
    dict or list is no leaf."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for name, item in items:
        out.update(flatten(item, f"{prefix}.{name}" if prefix else str(name)))
    return out


def make_key(path: str, dotted: str) -> str:
    """``<path relative to the run>:<dotted.key>``."""
    return f"{path}:{dotted}"


def split_key(key: str) -> tuple[str, str]:
    """``(path, dotted key)`` of a key; the path ends in ``.json`` (it may itself hold ``:``)."""
    path, sep, dotted = key.partition(KEY_SEPARATOR)
    if not sep or not path or not dotted:
        raise ConfigError(f"{key!r} is not a key of the form '<path>.json:<dotted.key>' "
                          "(e.g. 'eval/tiny-RN/metrics.json:explained_variance')")
    return path + ".json", dotted


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if is_number(value):
        return "number"
    return type(value).__name__


def same(a: Any, b: Any) -> bool:
    """Equal values of one kind (``True`` is not ``1``; NaN equals NaN)."""
    if _kind(a) != _kind(b):
        return False
    if _kind(a) == "number" and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_value(key: str, a: Any, b: Any, tolerances: dict[str, Tolerance] | None) -> dict | None:
    """The report entry of one differing value (``None`` when equal).

    ``tolerances`` is ``None`` without a tolerances file: then every difference fails."""
    if same(a, b):
        return None
    tolerance = None if tolerances is None else tolerances.get(key)
    if tolerances is None:
        status = OUT
    elif tolerance is None:
        status = UNSTATED
    elif is_number(a) and is_number(b):
        status = WITHIN if tolerance.allows(float(a), float(b)) else OUT
    else:
        status = OUT
    entry = {"key": key, "a": a, "b": b, "status": status,
             "tolerance": tolerance.as_dict() if tolerance else None,
             "missing": [side for side, v in (("a", a), ("b", b)) if v is MISSING] or None}
    if is_number(a) and is_number(b):
        entry["abs_diff"] = abs(float(a) - float(b))
    return entry



def show(value: Any) -> str:
    """A value as the report prints it: ``(missing)``, a float's repr, anything else as JSON."""
    if value is MISSING:
        return "(missing)"
    return repr(value) if isinstance(value, float) else json.dumps(value)



# --- reading runs and number files ------------------------------------------------------------


def read_json(path: Path, what: str) -> Any:
    """The JSON at ``path``; a file that cannot be read or parsed is a ``ConfigError`` naming ``what`` it is."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


def read_provenance(run: Path | str) -> dict:
    """A run folder's ``provenance.json`` (checked to hold ``outputs``, ``config``, ``packages``)."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run folder (results/<run>/)")
    path = run / PROVENANCE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the run did not finish (its last rule, provenance, writes it); "
                          "rerun the workflow")
    record = read_json(path, "provenance record")
    for field in ("outputs", "config", "packages"):
        if not isinstance(record, dict) or not isinstance(record.get(field), dict):
            raise ConfigError(f"{path} has no '{field}' object: not a saesuite provenance record")
    return record


def _tolerance(key: str, entry: dict, source: Path) -> Tolerance:
    values = {}
    for name in ("abs", "rel"):
        value = entry.get(name, 0.0)
        if not is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{source}: '{name}' of {key!r} must be a non-negative number, not {value!r}")
        values[name] = float(value)
    return Tolerance(**values)


def read_numbers_file(path: Path | str, *, reference: bool = False) -> dict[str, dict]:
    """Entries of a tolerances or reference file ``{"numbers": {key: {"value", "abs", "rel"}}}``,
    as ``{key: {"tolerance": Tolerance, "value": ...}}``; a reference needs a ``value`` per key
    (a number, or null for a score the run leaves undefined). Other fields are allowed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file")
    data = read_json(path, "reference" if reference else "tolerances file")
    if not isinstance(data, dict) or not isinstance(data.get("numbers"), dict):
        raise ConfigError(f'{path} must be a JSON object with a "numbers" object: '
                          '{"numbers": {"<path>.json:<dotted.key>": {"abs": 0.01}}}')
    entries = {}
    for key, entry in data["numbers"].items():
        split_key(key)
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: the entry of {key!r} must be an object such as {{\"abs\": 0.01}}")
        if reference and not (is_number(entry.get("value")) or entry.get("value", MISSING) is None):
            raise ConfigError(f"{path}: the reference entry of {key!r} needs a numeric 'value'")
        entries[key] = {"tolerance": _tolerance(key, entry, path), "value": entry.get("value")}
    return entries


def read_tolerances(path: Path | str) -> dict[str, Tolerance]:
    """``{key: Tolerance}`` of a tolerances file (a reference file serves as one too)."""
    return {key: entry["tolerance"] for key, entry in read_numbers_file(path).items()}


class RunValues:
    """Flattened JSON outputs of one run folder, read once each."""

    def __init__(self, run: Path):
        self.run = run
        self._cache: dict[str, dict | None] = {}

    def file(self, path: str, *, required: bool) -> dict | None:
        """Leaves of ``run/path`` (``None`` when the file is absent and not ``required``)."""
        if path not in self._cache:
            full = self.run / path
            if not full.is_file():
                if required:
                    raise ConfigError(f"{full} is missing (its provenance.json lists it, or the config names it): "
                                      "the run folder is incomplete")
                self._cache[path] = None
            else:
                self._cache[path] = flatten(read_json(full, "result file"))
        return self._cache[path]
