"""Each config section becomes its stage's settings one way, and each default is written once.

A section's keys are its settings type's options (a frozen dataclass, or the cache writer's
keyword options) plus the keys the workflow reads itself (``saesuite.schema.WORKFLOW_KEYS``). A
setting's default is its settings type's and the schema gives it none; a workflow key is required
or has the schema's default, so the rules index the checked config and never supply one.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from saesuite.cache.planted import PlantedSpec
from saesuite.cache.writer import cache_shard
from saesuite.compare.features import CompareSettings
from saesuite.data.datasets import DatasetSpec
from saesuite.evaluate.evaluation import EvalConfig
from saesuite.sae.config import TrainConfig
from saesuite.schema import WORKFLOW_KEYS, check_config, stage_options

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "config" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_FILE.read_text())

# the settings type of each section
SETTINGS = {
    "dataset": DatasetSpec,
    "cache": cache_shard,
    "train": TrainConfig,
    "replication": TrainConfig,
    "planted": PlantedSpec,
    "evaluate": EvalConfig,
    "compare": CompareSettings,
}
# options of a settings type that a rule gives from elsewhere than the section: the top-level seed
# and top_k, and what the cache writer is told about the data (the dataset's kind and limit, the split)
FROM_ELSEWHERE = {
    "dataset": set(),
    "cache": {"dataset_name", "split", "limit", "also", "synthetic"},  # synthetic: built from the section's own key
    "train": {"seed"},
    "replication": {"seed"},
    "planted": set(),
    "evaluate": {"top_k"},
    "compare": {"k", "seed"},
}


def options(target) -> dict:
    """``{name: default}`` (``inspect.Parameter.empty`` when required) of a settings type: a
    dataclass's fields, or a function's keyword-only parameters."""
    if dataclasses.is_dataclass(target):
        return {
            f.name: f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
            for f in dataclasses.fields(target)
        }
    return {
        name: p.default for name, p in inspect.signature(target).parameters.items() if p.kind is p.KEYWORD_ONLY
    }


def section_schema(section: str) -> tuple[dict, set]:
    """``({key: its schema}, required keys)`` of a config section, its ``$ref`` (train options) merged in."""
    schema = SCHEMA["properties"][section]
    if section == "replication":
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    props, required = dict(schema.get("properties", {})), set(schema.get("required", []))
    if "$ref" in schema:
        props = {**SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]["properties"], **props}
    return props, required


def settings_keys(section: str) -> set:
    return set(options(SETTINGS[section])) - FROM_ELSEWHERE[section]


@pytest.mark.parametrize("section", sorted(SETTINGS))
def test_a_section_holds_its_settings_and_the_workflow_s_own_keys(section):
    props, _ = section_schema(section)
    settings, workflow = settings_keys(section), set(WORKFLOW_KEYS[section])
    assert not settings & workflow, f"{section}: a key is both a setting and the workflow's: {settings & workflow}"
    assert set(props) == settings | workflow, (
        f"{section}: in the schema only: {sorted(set(props) - settings - workflow)}; "
        f"settings or workflow keys the schema lacks: {sorted(settings | workflow - set(props))}"
    )


@pytest.mark.parametrize("section", sorted(SETTINGS))
def test_each_default_is_written_once(section):
    props, required = section_schema(section)
    for key in settings_keys(section):
        assert "default" not in props[key], f"{section}.{key}: a setting; its default is {SETTINGS[section]}'s"
    for key in WORKFLOW_KEYS[section]:
        if section == "replication" or key in required:
            continue  # (a replication is given whole or not at all)
        assert "default" in props[key], f"{section}.{key}: a workflow key the config may omit needs the schema's default"


def test_top_k_one_value_for_every_stage():
    # the workflow gives evaluation and comparison the config's top_k; called on their own, their
    # defaults are the same value
    assert SCHEMA["properties"]["top_k"]["default"] == EvalConfig().top_k == CompareSettings().k


def build(section: str, values: dict):
    """The settings a rule builds from ``values`` (its section of a checked config)."""
    given = stage_options(section, values)
    if SETTINGS[section] is TrainConfig:
        return TrainConfig.from_dict({**given, "seed": 0})
    if section == "dataset":
        return DatasetSpec.from_config(values)
    if section == "cache":
        return given  # keyword arguments of cache_shard, checked against its signature below
    return SETTINGS[section](**given)


@pytest.mark.parametrize("name", ["config", "smoke", "planted", "planted_smoke"])
def test_every_shipped_config_becomes_settings(name, tmp_path):
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    check_config(config, SCHEMA_FILE, tmp_path / "log")
    for section in SETTINGS:
        if not config.get(section):
            continue
        values = config[section]
        built = build(section, values)
        for key in set(values) - set(WORKFLOW_KEYS[section]):
            got = built[key] if isinstance(built, dict) else getattr(built, key)
            if SETTINGS[section] is TrainConfig and key == "adam_betas":
                got = list(got)
            assert got == values[key], f"{name}: {section}.{key} is {values[key]!r} but the settings hold {got!r}"
        if section == "cache":
            assert set(built) <= settings_keys("cache")
        if SETTINGS[section] not in (TrainConfig, cache_shard):  # (train: the recipe's values, see test_objectives)
            defaults = options(SETTINGS[section])
            for key in settings_keys(section) - set(values):  # a key the config omits: the settings type's default
                assert getattr(built, key) == defaults[key], f"{name}: {section}.{key}"


def test_a_key_no_stage_takes_is_an_error_not_dropped():
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    with pytest.raises(TypeError, match="knn_kk"):
        CompareSettings(**stage_options("compare", {**smoke["compare"], "knn_kk": 5}))
    with pytest.raises(TypeError, match="chunk_rowz"):
        EvalConfig(**stage_options("evaluate", {**smoke["evaluate"], "chunk_rowz": 5}))
    with pytest.raises(TypeError, match="downlaod"):
        DatasetSpec.from_config({**smoke["dataset"], "downlaod": True})
    # the workflow's own keys are taken out by name, and only they
    dataset = copy.deepcopy(smoke["dataset"])
    assert stage_options("dataset", dataset) == {"kind": "cifar10", "root": dataset["root"], "download": False,
                                                 "fixture": True}
