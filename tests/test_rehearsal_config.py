"""config/rehearsal.yaml, the paper's DAG at the paper's shapes on CPU (benchmarks/README.md, "Rehearsal").

The config fits the schema and keeps the paper's shapes; a dry run plans the paper's rules plus the
rule that generates its images; the generated ImageFolder reads as ImageNet does; and a cache filled
past its images with planted rows (``cache.synthetic``) holds the backbone's rows first, the same
planted rows however it is sharded, and says which rows are synthetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from saesuite.schema import check_config
from tests.smoke import workflow_copy

REPO = Path(__file__).resolve().parents[1]


def rehearsal() -> dict:
    return yaml.safe_load((REPO / "config" / "rehearsal.yaml").read_text())


def test_the_config_fits_the_schema_at_the_paper_s_shapes(tmp_path):
    config = rehearsal()
    check_config(config, REPO / "config" / "config.schema.yaml", tmp_path / "log", source="config/rehearsal.yaml")
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert {m: s["hook"] for m, s in config["models"].items()} == {m: s["hook"] for m, s in paper["models"].items()}
    assert all(spec["pretrained"] is None for spec in config["models"].values())  # random weights, stated
    for key in ("expansion", "batch_size", "architecture", "k"):
        assert config["train"][key] == paper["train"][key]
    assert config["replication"]["expansion"] == paper["replication"]["expansion"]
    assert config["cache"]["synthetic"]["rows"]["val"] == 50_000  # ImageNet's val split
    assert config["fixture"]["n_test"] == 50_000  # an image behind every eval row (the explorer's thumbnails)
    train = config["train"]
    steps = train["samples"] // train["batch_size"]
    # every schedule is passed: warm-up, a dead window (AuxK / resampling), a resampling, a checkpoint
    assert max(train["lr_warmup_samples"], train["dead_window_samples"], train["resample_every_samples"]) < train["samples"]
    assert train["checkpoint_every_steps"] < steps


def dry_run(workdir: Path, configfile: str) -> dict[str, int]:
    """The rules (and their job counts) ``snakemake -n all paper`` plans; the preflight's machine checks off."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "paper", "--configfile", configfile],
                          cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "SAESUITE_PREFLIGHT_SKIP": "dataset,device"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {name: int(count) for name, count in map(str.split, table) if name != "total"}


@pytest.mark.workflow
def test_a_dry_run_plans_the_paper_s_rules_and_the_image_generator(tmp_path):
    workdir = workflow_copy(tmp_path / "workflow")
    paper, rehearsed = dry_run(workdir, "config/config.yaml"), dry_run(workdir, "config/rehearsal.yaml")
    assert set(rehearsed) == set(paper) | {"imagenet_fixture"}
    assert rehearsed["cache_shard"] == 8 and rehearsed["evaluate_sae"] == 3  # 2 models x 2 splits x 2 shards


def test_the_generated_imagefolder_reads_as_imagenet_does(tmp_path):
    from torchvision.datasets import ImageFolder

    from saesuite.data.datasets import DatasetSpec, load_dataset
    from saesuite.data.imagefolder_fixture import class_ids, make_imagefolder_fixture

    marker = make_imagefolder_fixture(tmp_path, 6, 4, classes=2, width=40, height=30, seed=1)
    assert json.loads(marker.read_text())["classes"] == class_ids(2) == ["n00000000", "n00000001"]
    val = load_dataset(DatasetSpec("imagenet", str(tmp_path)), "val")
    assert isinstance(val, ImageFolder) and len(val) == 4 and val.classes == class_ids(2)
    assert sorted(Path(p).name for p, _ in val.samples)[0] == "ILSVRC2012_val_00000001.JPEG"
    train = load_dataset(DatasetSpec("imagenet", str(tmp_path)), "train")
    images = [train[i] for i in range(len(train))]
    assert len(images) == 6 and all(img.size == (40, 30) and img.mode == "RGB" for img, _ in images)
    assert [label for _, label in images] == [0, 0, 0, 1, 1, 1]
    # each class has its own colour: the classes' mean colours differ
    means = [np.mean([np.asarray(img, float).mean((0, 1)) for img, lab in images if lab == c], 0) for c in (0, 1)]
    assert np.abs(means[0] - means[1]).max() > 10


def test_a_cache_past_its_images_holds_planted_rows_and_says_so(tmp_path):
    from saesuite.cache.format import write_manifest
    from saesuite.cache.planted import SyntheticRows
    from saesuite.cache.reader import ActivationCache
    from saesuite.cache.writer import cache_shard
    from saesuite.data.datasets import DatasetSpec, load_dataset
    from saesuite.data.imagefolder_fixture import make_imagefolder_fixture
    from saesuite.models.backbones import load_backbone

    make_imagefolder_fixture(tmp_path / "img", 4, 6, classes=2, width=40, height=30)
    dataset = load_dataset(DatasetSpec("imagenet", str(tmp_path / "img")), "val")
    backbone = load_backbone("tiny-RN", None, "attnpool", init_seed=0)
    synthetic = SyntheticRows.from_config({"rows": {"val": 5000}, "n_true": 32, "k": 3}, "val", "tiny-RN")
    caches = {}
    for shards in (1, 3):
        out = tmp_path / f"cache{shards}"
        for index in range(shards):
            cache_shard(backbone, dataset, out, index, shards, dataset_name="imagenet", split="val", limit=5,
                        synthetic=synthetic)
        write_manifest(out, shards)
        caches[shards] = ActivationCache.open(out)
    cache = caches[3]
    x = cache.gather(np.arange(cache.n))
    assert cache.n == 5000 and cache.manifest["synthetic"]["rows"] == [5, 5000]
    assert cache.manifest["synthetic"]["planted"]["d"] == backbone.d
    np.testing.assert_array_equal(x, caches[1].gather(np.arange(5000)))  # the same rows however sharded
    # the first rows are the backbone's own activations of the first images
    first = backbone.activations(torch_stack(dataset, backbone, 5)).numpy()
    np.testing.assert_allclose(x[:5], first, rtol=1e-2, atol=1e-3 * np.abs(first).max())
    # each planted row is a non-negative mix of exactly k unit directions: its norm lies in k's range
    norms = np.linalg.norm(x[5:].astype(np.float64), axis=1)
    assert norms.min() > 0.5 and norms.max() < 3 * 1.5
    assert set(np.unique(cache.labels()[5:])) <= {0, 1}  # labels are the dataset's classes


def torch_stack(dataset, backbone, n: int):
    import torch

    return torch.stack([backbone.preprocess(dataset[i][0]) for i in range(n)])
