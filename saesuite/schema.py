"""JSON Schemas shipped with the package (``saesuite/schemas/*.schema.json``, draft 2020-12)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema


def load_schema(name: str) -> dict:
    """A JSON Schema shipped in ``saesuite/schemas/`` (``metrics``, ``comparison``, ...)."""
    return json.loads((resources.files("saesuite") / "schemas" / f"{name}.schema.json").read_text())


def validate(obj: dict, schema_name: str) -> None:
    """Validate ``obj`` against a shipped schema (draft 2020-12); raise with the failing path."""
    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        raise ValueError(f"{schema_name} JSON fails its schema at {'/'.join(map(str, first.path)) or '<root>'}: {first.message}")
