"""A generated ImageFolder in ImageNet's on-disk layout, for rehearsing the paper run without ImageNet.

``train/<wnid>/<wnid>_<i>.JPEG`` and ``val/<wnid>/ILSVRC2012_val_<i>.JPEG``, JPEGs of
ImageNet-like size (500 x 375 by default), so torchvision's ``ImageFolder`` reads it exactly as it
reads ImageNet, and decoding, resizing and thumbnailing cost what they cost on ImageNet's files.
Class folders have synthetic WordNet-style ids (``n00000000``, ...). Each class has its own
colour and ring spacing around a random centre, plus a dark disc at a random place and pixel
noise (:class:`ClassCanvases`), so a model's activations carry some label information; the images
are not ImageNet and say so: ``saesuite-fixture.json`` at the root records what they are and how
they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from saesuite.data.datasets import FIXTURE_FILE


def class_ids(n_classes: int) -> list[str]:
    """The class folders: synthetic WordNet-style ids, sorted as ``ImageFolder`` sorts them."""
    return [f"n{i:08d}" for i in range(n_classes)]


class ClassCanvases:
    """Each class's pattern drawn once, on a canvas twice the image size: concentric rings of the
    class's colour and spacing, plus one field of Gaussian pixel noise shared by all classes. An image
    is a random crop of its class's canvas (so the rings' centre moves) plus a random crop of the
    noise and a dark disc at a random place: a few milliseconds an image, most of it JPEG encoding."""

    def __init__(self, n_classes: int, width: int, height: int, rng: np.random.Generator):
        self.width, self.height = width, height
        yy, xx = np.mgrid[0 : 2 * height, 0 : 2 * width].astype(np.float32)
        radius = np.hypot(yy - height, xx - width)
        self.canvases = []
        for label in range(n_classes):
            spacing = 12.0 + 40.0 * label / max(n_classes - 1, 1)  # px between rings
            rings = 0.5 + 0.5 * np.cos(2 * np.pi * radius / spacing)
            colour = 0.5 + 0.5 * np.cos(2 * np.pi * label / n_classes + np.array([0.0, 2.0, 4.0], np.float32) * np.pi / 3)
            self.canvases.append(rings[..., None] * colour * 200.0 + 30.0)
        self.noise = rng.normal(0.0, 6.0, size=(2 * height, 2 * width, 3)).astype(np.float32)

    def image(self, label: int, rng: np.random.Generator) -> Image.Image:
        """One ``width`` x ``height`` RGB image of class ``label``."""
        h, w = self.height, self.width
        (y, x), (ny, nx) = rng.integers(0, (h, w), size=2), rng.integers(0, (h, w), size=2)
        pixels = self.canvases[label][y : y + h, x : x + w] + self.noise[ny : ny + h, nx : nx + w]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.15) * min(w, h)
        ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(20, 20, 20))
        return image


def _write_split(folder: Path, n: int, canvases: ClassCanvases, rng: np.random.Generator, name: str) -> None:
    """``n`` images of ``folder``, classes cycling so every class has ``n // n_classes`` or one more."""
    wnids = class_ids(len(canvases.canvases))
    for wnid in wnids:
        (folder / wnid).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = i % len(wnids)
        stem = f"ILSVRC2012_val_{i + 1:08d}" if name == "val" else f"{wnids[label]}_{i}"
        canvases.image(label, rng).save(folder / wnids[label] / f"{stem}.JPEG", quality=85)


def make_imagefolder_fixture(root: str | Path, n_train: int, n_val: int, *, classes: int = 10,
                             width: int = 500, height: int = 375, seed: int = 0) -> Path:
    """Write ``n_train`` train and ``n_val`` val images of ``classes`` classes under ``root`` in
    ImageNet's layout; return the marker ``root/saesuite-fixture.json``, written last (its presence
    means the folder is whole)."""
    if n_train < classes or n_val < classes:
        raise ValueError(f"the fixture needs at least one image per class in each split ({classes} classes)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    canvases = ClassCanvases(classes, width, height, rng)
    for split, n in (("train", n_train), ("val", n_val)):
        _write_split(root / split, n, canvases, rng, split)
    marker = root / FIXTURE_FILE
    marker.write_text(json.dumps({
        "what": "saesuite ImageFolder fixture: generated images in ImageNet's layout (rings and a disc per "
                "image, one colour and ring spacing per class), not ImageNet",
        "n_train": n_train, "n_val": n_val, "width": width, "height": height, "seed": seed,
        "classes": class_ids(classes),
    }, indent=2) + "\n")
    return marker
