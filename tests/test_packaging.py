"""The software environment and the config schema stay consistent with the code."""

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import yaml

from saesuite.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s;]+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_pins_the_same_versions_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == declared
    assert declared["torch"] == "2.14.1" and declared["torchvision"] == "0.29.1"
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", d) for d in project["dependencies"]), "pin every dependency"


def test_config_schema_train_keys_are_the_trainer_options():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    options = {f.name for f in fields(TrainConfig)} - {"seed"}  # the seed is the config's top-level seed
    assert set(schema["$defs"]["trainOptions"]["properties"]) == options
    assert set(schema["properties"]["train"]["properties"]) == {"sweep"}


def test_every_config_key_is_documented():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    doc = (REPO / "config" / "README.md").read_text()
    sections = dict(schema["properties"], train=schema["$defs"]["trainOptions"])
    for section, spec in sections.items():
        assert f"`{section}" in doc or f"{section}." in doc, section
        for key in spec.get("properties", {}):
            assert key in doc, f"{section}.{key} is not in config/README.md"
