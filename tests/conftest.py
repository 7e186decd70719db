"""Shared test data: a small CIFAR-10-format fixture and caches of the tiny models over it."""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per test process: the suite runs on 2 cores next to subprocesses
# (snakemake jobs, a training run to kill), and spinning OpenMP teams oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest

from saesuite.models.backbones import load_backbone
from saesuite.cache.writer import cache_activations
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.data.fixture import make_cifar10_fixture

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    make_cifar10_fixture(root, n=300, n_test=120, seed=0)
    return root


@pytest.fixture(scope="session")
def fixture_spec(fixture_root) -> DatasetSpec:
    return DatasetSpec("cifar10", str(fixture_root), fixture=True)


def build_cache(spec: DatasetSpec, model: str, hook: str, split: str, out: Path, n_shards: int = 2, dtype="float32"):
    backbone = load_backbone(model, None, hook)
    dataset = load_dataset(spec, split, transform=backbone.preprocess)
    cache_activations(
        backbone, dataset, out, dataset_name="cifar10", split=split, batch_size=64, n_shards=n_shards, dtype=dtype
    )
    return out


@pytest.fixture(scope="session")
def caches(fixture_spec, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """``{(model, split): cache_dir}`` for tiny-ViT (resid_cls:-2) and tiny-RN (attnpool)."""
    base = tmp_path_factory.mktemp("caches")
    out = {}
    for model, hook in (("tiny-ViT", "resid_cls:-2"), ("tiny-RN", "attnpool")):
        for split in ("train", "test"):
            out[(model, split)] = build_cache(fixture_spec, model, hook, split, base / model / split)
    return out

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars are for people; keep test logs readable
