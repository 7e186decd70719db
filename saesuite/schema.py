"""JSON Schemas shipped with the package (``saesuite/schemas/*.schema.json``, draft 2020-12), the
check of the workflow config against ``config/config.schema.yaml`` with short messages, and how a
config section becomes a stage's settings.

A config section becomes settings one way: :func:`stage_options` takes out the keys the workflow
reads itself (:data:`WORKFLOW_KEYS`) and the rest goes, as keyword arguments, to the stage's
settings type (``EvalConfig(**stage_options("evaluate", section))``; ``TrainConfig.from_dict``,
which applies a recipe first; ``cache_shard``'s keyword options for the cache), which rejects a key
it does not take. Each default is written once: a setting's default is its settings type's, and
the schema gives none; a workflow key's default is the schema's, filled in by
:func:`check_config`, so the rules index the config and never supply a default.
``tests/test_config_settings.py`` holds the schema and the settings types together."""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from saesuite.errors import ConfigError


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


# --- the workflow config (config/config.schema.yaml) -----------------------------------------

SHOWN = 5  # problems printed; the rest are in the log


def check_config(config: dict, schema_file, log_file, source: str = "config") -> None:
    """Validate the workflow config against its YAML schema and fill in the schema's defaults.

    The defaults are filled exactly as ``snakemake.utils.validate(config, schema)`` (set_default)
    fills them. A failure raises :class:`ConfigError` in a few lines: each problem's dotted key,
    what is wrong and the allowed keys or values, with a did-you-mean for a misspelt key or value;
    jsonschema's full report (schema and config included) is written to ``log_file``.
    """
    schema = yaml.safe_load(Path(schema_file).read_text())
    base = jsonschema.validators.validator_for(schema)

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(key, subschema["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    validator = jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("\n\n".join(str(e) for e in errors) + "\n")
    lines = [line for e in errors for line in _explain(e, schema)]
    more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    raise ConfigError(
        f"{source} does not fit {schema_file} ({len(lines)} problem{'s' * (len(lines) > 1)}; "
        f"jsonschema's full report is in {log_file}):\n  " + "\n  ".join(lines[:SHOWN]) + more
    )


def _explain(error, root: dict) -> list[str]:
    """One line per problem: the dotted key, what is wrong, what is allowed."""
    where = ".".join(map(str, error.absolute_path))
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        allowed = _allowed_keys(error.schema, root)
        unknown = [key for key in error.instance if key not in allowed]
        scope, keys = f"in {where}" if where else "at the top level", ", ".join(sorted(allowed))
        if unknown:
            return [
                f"{where + '.' if where else ''}{key}: unknown key ({key!r} was unexpected)."
                f"{_did_you_mean(key, allowed)} Allowed {scope}: {keys}"
                for key in unknown
            ]
    hint = ""
    if error.validator == "enum" and isinstance(error.instance, str):
        hint = "." + _did_you_mean(error.instance, map(str, error.validator_value))
    elif error.schema.get("description") and error.validator in ("pattern", "type"):
        hint = f" ({error.schema['description']})"
    return [f"{where or 'the top level'}: {error.message}{hint}"]


def _allowed_keys(schema: dict, root: dict) -> set[str]:
    """The properties a schema names, with those of a local ``$ref`` it extends."""
    keys = set(schema.get("properties", {}))
    ref = schema.get("$ref", "")
    if ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        keys |= _allowed_keys(target, root)
    return keys


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


# --- a config section as a stage's settings ---------------------------------------------------

# The keys of each config section that are not settings of its stage: the workflow reads them
# itself (which models, splits, shard jobs, sweep entries, files) or hands them to the stage beside
# its settings (compare.device, dataset.limit). Their defaults are the schema's.
WORKFLOW_KEYS = {
    "dataset": ("train_split", "eval_split", "limit"),
    "cache": ("train_shards", "eval_shards", "synthetic"),
    "train": ("sweep", "extra_seeds"),
    "replication": ("model",),
    "planted": ("n_train", "n_eval", "shards"),
    "evaluate": (),
    "compare": ("a", "b", "device", "planted_pairs"),
}


def stage_options(section: str, values: dict) -> dict:
    """The settings config section ``section`` gives its stage: ``values`` less the section's
    :data:`WORKFLOW_KEYS`. Nothing else is dropped: a key the settings type does not take is an
    error there, and a key ``values`` leaves out takes the settings type's default."""
    return {key: value for key, value in values.items() if key not in WORKFLOW_KEYS[section]}


def load_config(config_file, schema_file, log_file) -> dict:
    """A workflow config file read and checked as the Snakefile checks its own (defaults filled in):
    for a rule that reads another config than the run's (``planted_validation``)."""
    config = yaml.safe_load(Path(config_file).read_text())
    check_config(config, schema_file, log_file, source=str(config_file))
    return config
