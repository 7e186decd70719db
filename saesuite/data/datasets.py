"""Datasets: ImageNet through torchvision's ``ImageFolder``, CIFAR-10 through ``CIFAR10``.

Nothing here invents data. A dataset that is not where the config says stops the
run with an error naming the place looked at and the fix. The CIFAR-10 fixture
(:mod:`saesuite.data.fixture`) is real CIFAR-10 *format*: torchvision's own loader
reads it, checking the fixture's own checksums instead of the official ones, and
only when the config says ``fixture: true``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, ImageFolder

from saesuite.errors import ConfigError
from saesuite.schema import stage_options

KINDS = ("imagenet", "cifar10")
FIXTURE_FILE = "saesuite-fixture.json"
CIFAR_DIR = "cifar-10-batches-py"


@dataclass(frozen=True)
class DatasetSpec:
    """Which images: ``kind`` (imagenet | cifar10), ``root`` on disk, and options."""

    kind: str
    root: str
    download: bool = False
    fixture: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> "DatasetSpec":
        """The workflow config's ``dataset`` section (:func:`saesuite.schema.stage_options`)."""
        return cls(**stage_options("dataset", cfg))


def split_names(kind: str) -> tuple[str, ...]:
    return {"imagenet": ("train", "val"), "cifar10": ("train", "test")}[kind]


def load_dataset(spec: DatasetSpec, split: str, transform: Callable | None = None) -> Dataset:
    """The dataset of ``spec`` for ``split``, items ``(image, label)``; ``.classes`` names the labels."""
    if spec.kind not in KINDS:
        raise ConfigError(f"dataset kind {spec.kind!r} is not known; choose one of {', '.join(KINDS)}")
    if split not in split_names(spec.kind):
        raise ConfigError(
            f"dataset {spec.kind} has splits {', '.join(split_names(spec.kind))}; {split!r} is not one of them"
        )
    if spec.kind == "imagenet":
        return _imagenet(spec, split, transform)
    return _cifar10(spec, split, transform)


def _imagenet(spec: DatasetSpec, split: str, transform):
    folder = Path(spec.root) / split
    if not folder.is_dir():
        raise ConfigError(
            f"ImageNet split {split!r} not found: looked for the folder {folder.resolve()} "
            f"(one sub-folder per class, e.g. {folder}/n01440764/*.JPEG). Set dataset.root in the config "
            "to the directory that holds train/ and val/, with val/ sorted into class folders "
            "(e.g. with the standard valprep.sh)."
        )
    try:
        return ImageNetFolder(str(folder), transform=transform)
    except FileNotFoundError as err:
        raise ConfigError(f"ImageNet split at {folder.resolve()} holds no images: {err}") from err


class ImageNetFolder(ImageFolder):
    """torchvision's ``ImageFolder`` whose ``.classes`` are words when the folders are ImageNet-1k's.

    ImageFolder names each label by its folder, a WordNet id (``n01440764``), which is no use as a
    zero-shot prompt or a name on a page. When the folders are exactly 1,000 WordNet ids, the labels
    are ImageNet-1k's in the order of their sorted ids, and ``.classes`` becomes open_clip's class
    names (``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES``, OpenAI's CLIP names in that same
    order: ``tench``, ``goldfish``, ...). The ids stay in ``.wnids``. Any other set of folders (a
    subset, a generated fixture) keeps its folder names.
    """

    def __init__(self, root: str, **kwargs):
        super().__init__(root, **kwargs)
        self.wnids = list(self.classes)
        if len(self.wnids) == 1000 and all(re.fullmatch(r"n\d{8}", w) for w in self.wnids):
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

            self.classes = list(IMAGENET_CLASSNAMES)


def _cifar10(spec: DatasetSpec, split: str, transform):
    train = split == "train"
    base = Path(spec.root) / CIFAR_DIR
    if spec.fixture:
        manifest = base / FIXTURE_FILE
        if not manifest.is_file():
            raise ConfigError(
                f"dataset.fixture is true but {manifest.resolve()} does not exist. Build the fixture with "
                f"'saesuite make-cifar10-fixture {spec.root}', or set fixture: false to read real CIFAR-10."
            )
        return CIFAR10Fixture(spec.root, json.loads(manifest.read_text()), train=train, transform=transform)
    if not base.is_dir() and not spec.download:
        raise ConfigError(
            f"CIFAR-10 not found: looked for {base.resolve()}. Put the extracted 'cifar-10-batches-py' folder "
            f"under dataset.root ({spec.root}), or set dataset.download: true to let torchvision download it."
        )
    try:
        return CIFAR10(spec.root, train=train, transform=transform, download=spec.download)
    except RuntimeError as err:
        raise ConfigError(
            f"CIFAR-10 at {base.resolve()} is incomplete or corrupted ({err}). Re-extract it, or set "
            "dataset.download: true. A saesuite fixture needs dataset.fixture: true."
        ) from err


def download_cifar10(root: str | Path) -> None:
    """Fetch real CIFAR-10 into ``root`` with torchvision, which checks the archive's md5 and each
    file's (a complete copy already there is only checked)."""
    for train in (True, False):
        CIFAR10(str(root), train=train, download=True)


class CIFAR10Fixture(CIFAR10):
    """torchvision's CIFAR10 reader, checking the fixture's own md5 sums instead of the official ones."""

    def __init__(self, root: str, manifest: dict, **kwargs):
        md5 = manifest["md5"]
        self.train_list = [[name, md5[name]] for name in manifest["train_files"]]
        self.test_list = [[name, md5[name]] for name in manifest["test_files"]]
        self.meta = {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]}
        try:
            super().__init__(root, download=False, **kwargs)
        except RuntimeError as err:
            raise ConfigError(
                f"the CIFAR-10 fixture at {Path(root).resolve()} fails its own checksums ({err}); "
                "rebuild it with 'saesuite make-cifar10-fixture'."
            ) from err
