import json
import pickle

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from saesuite.data.datasets import CIFAR_DIR, FIXTURE_FILE, DatasetSpec, load_dataset
from saesuite.errors import ConfigError
from saesuite.data.fixture import LABEL_NAMES, make_cifar10_fixture


def test_real_layout_read_by_torchvision(fixture_root):
    base = fixture_root / CIFAR_DIR
    names = sorted(p.name for p in base.iterdir())
    assert names == sorted([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta", FIXTURE_FILE])
    with open(base / "data_batch_1", "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    assert entry["data"].dtype == np.uint8 and entry["data"].shape[1] == 3072
    train = load_dataset(DatasetSpec("cifar10", str(fixture_root), fixture=True), "train")
    test = load_dataset(DatasetSpec("cifar10", str(fixture_root), fixture=True), "test")
    assert isinstance(train, CIFAR10)  # torchvision's own reader
    assert (len(train), len(test)) == (300, 120)
    assert train.classes == LABEL_NAMES
    assert train.data.shape == (300, 32, 32, 3)
    assert np.bincount(train.targets, minlength=10).tolist() == [30] * 10


def test_images_carry_class_structure(fixture_root):
    """A nearest-centroid classifier on raw pixels beats chance (0.1) by far on held-out images."""
    train = load_dataset(DatasetSpec("cifar10", str(fixture_root), fixture=True), "train")
    test = load_dataset(DatasetSpec("cifar10", str(fixture_root), fixture=True), "test")
    xtr, ytr = train.data.reshape(len(train.data), -1).astype(float), np.array(train.targets)
    xte, yte = test.data.reshape(len(test.data), -1).astype(float), np.array(test.targets)
    # mean colour per channel is a class signature (each class has its own hue)
    ftr, fte = xtr.reshape(-1, 1024, 3).mean(1), xte.reshape(-1, 1024, 3).mean(1)
    centroids = np.stack([ftr[ytr == c].mean(0) for c in range(10)])
    pred = np.argmin(((fte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).mean() > 0.6


def test_fixture_is_deterministic(tmp_path):
    make_cifar10_fixture(tmp_path / "a", n=20, n_test=10, seed=3)
    make_cifar10_fixture(tmp_path / "b", n=20, n_test=10, seed=3)
    ma = json.loads((tmp_path / "a" / CIFAR_DIR / FIXTURE_FILE).read_text())
    mb = json.loads((tmp_path / "b" / CIFAR_DIR / FIXTURE_FILE).read_text())
    assert ma["md5"] == mb["md5"]


def test_fixture_needs_fixture_flag_and_checks_its_checksums(fixture_root, tmp_path):
    # torchvision's official checksums reject the fixture: it is not real CIFAR-10
    with pytest.raises(ConfigError, match="fixture: true"):
        load_dataset(DatasetSpec("cifar10", str(fixture_root), fixture=False), "train")
    make_cifar10_fixture(tmp_path, n=20, n_test=10)
    with open(tmp_path / CIFAR_DIR / "test_batch", "ab") as fh:
        fh.write(b"corrupt")
    with pytest.raises(ConfigError, match="fails its own checksums"):
        load_dataset(DatasetSpec("cifar10", str(tmp_path), fixture=True), "test")


def test_missing_datasets_say_where_and_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"looked for the folder .*imagenet/val.*dataset.root"):
        load_dataset(DatasetSpec("imagenet", str(tmp_path / "imagenet")), "val")
    with pytest.raises(ConfigError, match="download: true"):
        load_dataset(DatasetSpec("cifar10", str(tmp_path / "nowhere")), "train")
    with pytest.raises(ConfigError, match="saesuite make-cifar10-fixture"):
        load_dataset(DatasetSpec("cifar10", str(tmp_path / "nowhere"), fixture=True), "train")
    with pytest.raises(ConfigError, match="has splits train, val"):
        load_dataset(DatasetSpec("imagenet", str(tmp_path)), "test")


def test_imagenet_layout_reads_through_imagefolder(tmp_path):
    from PIL import Image

    for cls in ("n01440764", "n01443537"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), (i * 80, 10, 200)).save(tmp_path / "val" / cls / f"img{i}.JPEG")
    ds = load_dataset(DatasetSpec("imagenet", str(tmp_path)), "val")
    assert len(ds) == 4 and ds.classes == ["n01440764", "n01443537"]
    assert [label for _, label in ds] == [0, 0, 1, 1]
