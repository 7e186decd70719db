"""config/cifar10.yaml, the plan's preliminary experiment on real CIFAR-10, checked without network.

It downloads CIFAR-10 and the OpenAI weights, so it cannot run here: the config is checked against
the schema and the plan's section 4.1 (one epoch over one-eighth of the train set, the plan's ReLU
recipe), every SAE it names is built as the training script builds it, and dry runs show that it
plans the same rules as the smoke run, and stops with the preflight's missing-dataset message
when the data is neither there nor to be downloaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saesuite.schema import check_config
from tests.smoke import SMOKE, workflow_copy

REPO = Path(__file__).resolve().parents[1]
CIFAR10_TRAIN_IMAGES = 50_000


def cifar10_config() -> dict:
    return yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text())


def test_the_config_fits_the_schema_and_is_the_plan_s_preliminary_experiment(tmp_path):
    config = cifar10_config()
    check_config(config, REPO / "config" / "config.schema.yaml", tmp_path / "log", source="config/cifar10.yaml")
    dataset, train = config["dataset"], config["train"]
    # real CIFAR-10 through torchvision, not the smoke fixture
    assert dataset["kind"] == "cifar10" and dataset["download"] and not dataset["fixture"]
    assert config.get("fixture") is None
    # the real towers with the OpenAI weights
    assert {name: m["pretrained"] for name, m in config["models"].items()} == {"RN50": "openai", "ViT-L-14": "openai"}
    # one-eighth of the train set, one epoch, the plan's recipe (section 3.1: ReLU, L1 8e-5, lr 4e-4, 16x)
    assert dataset["limit"] * 8 == CIFAR10_TRAIN_IMAGES
    assert train["samples"] == dataset["limit"]
    assert (train["architecture"], train["l1_coefficient"], train["lr"], train["expansion"]) == ("relu", 8e-5, 4e-4, 16)
    # every stage runs on whichever device the machine has
    assert {config[s]["device"] for s in ("cache", "train", "evaluate", "compare")} == {"auto"}


def test_every_sae_it_names_is_a_valid_training_config():
    """As workflow/scripts/train_sae.py builds them: the main options, each sweep entry over them, the replication."""
    from saesuite.sae.config import TrainConfig

    config = cifar10_config()
    options = {k: v for k, v in config["train"].items() if k not in ("sweep", "extra_seeds")}
    main = TrainConfig.from_dict({**options, "seed": config["seed"]})
    configs = [main] + [cfg for _, cfg in main.sweep(options, config["train"]["sweep"])]
    replication = TrainConfig.from_dict({k: v for k, v in config["replication"].items() if k != "model"})
    for cfg in [*configs, replication]:
        # each schedule happens within the one epoch: warm-ups, the dead window, a checkpoint
        assert max(cfg.lr_warmup_samples, cfg.l1_warmup_samples, cfg.dead_window_samples) < cfg.samples
        assert cfg.checkpoint_every_steps < cfg.steps and cfg.b_dec_init_samples <= config["dataset"]["limit"]
    assert main.steps == 98 and main.dead_method == "resample"
    assert main.resample_every_samples // main.batch_size < main.resample_until_fraction * main.steps  # resamples once
    assert {c.architecture for c in configs} == {"relu", "topk"} and replication.recipe == "fry2024"


def dry_run(workdir: Path, configfile: str, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", *targets, "--configfile", configfile],
                          cwd=workdir, capture_output=True, text=True)


def planned_rules(proc: subprocess.CompletedProcess) -> dict[str, int]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]  # past the header and its rule
    return {name: int(count) for name, count in map(str.split, table) if name != "total"}


@pytest.mark.workflow
def test_a_dry_run_plans_the_rules_the_smoke_run_exercises(tmp_path):
    from saesuite.data.fixture import make_cifar10_fixture

    workdir = workflow_copy(tmp_path / "workflow")
    smoke = planned_rules(dry_run(workdir, SMOKE[1], "all", "paper"))
    downloading = planned_rules(dry_run(workdir, "config/cifar10.yaml", "all", "paper"))
    # real data: no fixture to build; one download job before every cache job
    assert set(downloading) == set(smoke) - {"cifar10_fixture"} | {"cifar10_download"}
    assert downloading["cifar10_download"] == 1
    assert downloading["cache_shard"] == 4  # 2 models x 2 splits x 1 shard
    # the data already in place (a CIFAR-10-format stand-in where the config points), no download
    make_cifar10_fixture(workdir / "data" / "cifar10", n=20, n_test=10)
    config = cifar10_config()
    config["dataset"]["download"] = False
    (workdir / "config" / "offline.yaml").write_text(yaml.safe_dump(config))
    assert planned_rules(dry_run(workdir, "config/offline.yaml", "all", "paper")) == {
        rule: n for rule, n in downloading.items() if rule != "cifar10_download"}


@pytest.mark.workflow
def test_without_the_data_or_its_download_the_dry_run_stops_at_the_missing_dataset(tmp_path):
    workdir = workflow_copy(tmp_path / "workflow")
    config = cifar10_config()
    config["dataset"]["download"] = False
    (workdir / "config" / "offline.yaml").write_text(yaml.safe_dump(config))
    proc = dry_run(workdir, "config/offline.yaml")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"dataset.root: {workdir / 'data' / 'cifar10'} is missing; it must hold cifar-10-batches-py/" in text, text
    assert "or dataset.download: true" in text and "1 problem found before any job ran" in text
    assert "Job stats" not in text and "Traceback" not in text
    assert not (workdir / "results").exists()
