"""A config that does not fit the schema stops the workflow with a few lines naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from saesuite.errors import ConfigError
from saesuite.schema import check_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "config.schema.yaml"


def smoke_config() -> dict:
    return yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def test_defaults_are_filled_in_as_snakemake_s_validate_fills_them(tmp_path):
    from snakemake.utils import validate

    for name in ("config", "smoke", "planted"):
        config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        # every key the schema has a default for (the workflow keys), left out
        for key in ("top_k", "planted_validation"):
            config.pop(key, None)
        for section, keys in (("dataset", ("limit",)), ("train", ("sweep", "extra_seeds")),
                              ("planted", ("shards",)), ("compare", ("planted_pairs",))):
            for key in keys:
                config.get(section, {}).pop(key, None)
        config.get("cache", {}).pop("precision", None)  # a setting: its default is the cache writer's
        ours, theirs = copy.deepcopy(config), copy.deepcopy(config)
        check_config(ours, SCHEMA, tmp_path / "log")
        validate(theirs, str(SCHEMA))
        assert ours == theirs, name
        assert ours["top_k"] == 9 and ours["train"]["sweep"] == [] and ours["train"]["extra_seeds"] == []
        if name == "planted":
            assert ours["planted"]["shards"] == 2
        else:
            assert ours["dataset"]["limit"] is None and ours["compare"]["planted_pairs"] == "config/planted_compare.yaml"
            assert "precision" not in ours["cache"]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["train"].update(l1_coeficient=c["train"].pop("l1_coefficient")),
         ["train.l1_coeficient: unknown key", "Did you mean 'l1_coefficient'?", "Allowed in train: adam_betas,",
          "train: 'l1_coefficient' is a required property"]),
        (lambda c: c.update(trian=c.pop("train")), ["trian: unknown key", "Did you mean 'train'?"]),
        (lambda c: c["cache"].update(dtype="float61"),
         ["cache.dtype: 'float61' is not one of ['float16', 'float32']. Did you mean 'float16'?"]),
        (lambda c: c["train"].update(lr="fast"), ["train.lr: 'fast' is not of type 'number'"]),
        (lambda c: c["models"]["tiny-ViT"].update(hook="cls"),
         ["models.tiny-ViT.hook: 'cls' does not match", "(attnpool | resid_cls:K)"]),
    ],
)
def test_the_message_names_the_key_the_problem_and_what_is_allowed(tmp_path, edit, expected):
    config = smoke_config()
    edit(config)
    log = tmp_path / "log" / "config-error.log"
    with pytest.raises(ConfigError) as raised:
        check_config(config, SCHEMA, log, source="config/bad.yaml")
    message = str(raised.value)
    for needle in expected:
        assert needle in message, message
    assert message.startswith("config/bad.yaml does not fit") and str(log) in message.splitlines()[0]
    assert len(message.splitlines()) <= 6
    assert "Failed validating" in log.read_text()  # jsonschema's full report: the schema and the config


@pytest.mark.workflow
@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda c: c["train"].update(l1_coeficient=1e-3),
         ["train.l1_coeficient: unknown key", "Did you mean 'l1_coefficient'?"]),
        (lambda c: c["cache"].update(dtype="int8"), ["cache.dtype: 'int8' is not one of ['float16', 'float32']"]),
        (lambda c: c["train"].update(architecture="reul"),
         ["train.architecture: 'reul' is not one of ['relu', 'topk']. Did you mean 'relu'?"]),
    ],
)
def test_snakemake_prints_a_few_lines_naming_the_key(tmp_path, edit, needles):
    from tests.smoke import dry_run_with

    workdir = tmp_path / "workflow"
    config = smoke_config()
    edit(config)
    proc = dry_run_with(workdir, config)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) <= 10, "\n".join(lines)
    text = "\n".join(lines)
    for needle in [*needles, "config/bad.yaml does not fit", ".snakemake/log/config-error.log"]:
        assert needle in text, text
    assert "Failed validating" in (workdir / ".snakemake" / "log" / "config-error.log").read_text()
