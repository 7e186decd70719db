"""ImageNet through ImageFolder: labels named in words when the folders are ImageNet-1k's 1,000 ids."""

from __future__ import annotations

import numpy as np
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from saesuite.data.datasets import DatasetSpec, load_dataset


def folders(root, names):
    for name in names:
        (root / "val" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "val" / name / "a.JPEG")


def test_imagenet_1k_folders_get_the_class_names_in_sorted_id_order(tmp_path):
    wnids = [f"n{i:08d}" for i in range(1000)]
    folders(tmp_path, reversed(wnids))  # made in another order: ImageFolder sorts them
    data = load_dataset(DatasetSpec(kind="imagenet", root=str(tmp_path)), "val")
    assert data.wnids == wnids
    assert data.classes == list(IMAGENET_CLASSNAMES) and data.classes[0] == "tench"
    assert data.classes[data[5][1]] == IMAGENET_CLASSNAMES[5]  # image of folder n00000005, label 5


def test_other_folders_keep_their_names(tmp_path):
    folders(tmp_path, ["n00000001", "n00000002", "cat"])
    data = load_dataset(DatasetSpec(kind="imagenet", root=str(tmp_path)), "val")
    assert data.classes == data.wnids == ["cat", "n00000001", "n00000002"]
