"""A small CIFAR-10 in the real on-disk layout, with class-dependent structure.

``cifar-10-batches-py/`` holds pickled ``data_batch_1..5``, ``test_batch`` and
``batches.meta`` exactly as the official archive does, so torchvision's own
``CIFAR10`` reads it. Each class has its own colour and stripe orientation and
frequency, with random phase, position of a bright square, and pixel noise, so a
model's activations (and an SAE's latents) carry real label information.
``saesuite-fixture.json`` records how it was made and the md5 of every file.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np

from saesuite.data.datasets import CIFAR_DIR, FIXTURE_FILE

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SIZE = 32


def render_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images for ``labels`` ``[n]`` as uint8 ``[n, 32, 32, 3]`` (HWC), class-structured."""
    n = len(labels)
    c = labels.astype(np.float64)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    angle = (c * np.pi / 10.0)[:, None, None]
    freq = (0.25 + 0.08 * (c % 5))[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)  # [n, H, W]
    hue = c / 10.0
    colour = 0.5 + 0.5 * np.stack([np.cos(2 * np.pi * (hue + k / 3.0)) for k in range(3)], axis=-1)  # [n, 3]
    img = stripes[..., None] * colour[:, None, None, :] * 200.0 + 25.0
    # a bright square at a random position: structure shared by all classes
    corner = rng.integers(0, SIZE - 8, size=(n, 2))
    inside = (
        (yy[None] >= corner[:, 0, None, None])
        & (yy[None] < corner[:, 0, None, None] + 8)
        & (xx[None] >= corner[:, 1, None, None])
        & (xx[None] < corner[:, 1, None, None] + 8)
    )
    img[inside] = 240.0
    img += rng.normal(0.0, 12.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # CIFAR rows: 1024 R, 1024 G, 1024 B
    entry = {
        "batch_label": name,
        "labels": [int(v) for v in labels],
        "data": np.ascontiguousarray(data),
        "filenames": [f"fixture_{name.replace(' ', '_')}_{i:06d}.png" for i in range(len(labels))],
    }
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)


def make_cifar10_fixture(root: str | Path, n: int = 1000, n_test: int | None = None, seed: int = 0) -> Path:
    """Write ``n`` train and ``n_test`` (default ``n // 2``) test images under ``root``.

    Labels cycle through the 10 classes in a shuffled order, so every class is
    present once ``n >= 10``. Returns the ``cifar-10-batches-py`` folder.
    """
    n_test = n // 2 if n_test is None else n_test
    if n < 5 or n_test < 1:
        raise ValueError("the fixture needs n >= 5 train images (one per batch file) and n_test >= 1")
    rng = np.random.default_rng(seed)
    base = Path(root) / CIFAR_DIR
    base.mkdir(parents=True, exist_ok=True)

    def labels_for(count: int) -> np.ndarray:
        return rng.permutation(np.arange(count) % 10)

    train_labels = labels_for(n)
    train_images = render_images(train_labels, rng)
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    for i, part in enumerate(np.array_split(np.arange(n), 5)):
        _write_batch(base / train_files[i], train_images[part], train_labels[part], f"training batch {i + 1} of 5")
    test_labels = labels_for(n_test)
    _write_batch(base / "test_batch", render_images(test_labels, rng), test_labels, "testing batch 1 of 1")
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": LABEL_NAMES, "num_cases_per_batch": int(np.ceil(n / 5)), "num_vis": 3072}, fh)

    files = train_files + ["test_batch", "batches.meta"]
    manifest = {
        "what": "saesuite CIFAR-10-format fixture: synthetic class-structured images, not real CIFAR-10",
        "n_train": n,
        "n_test": n_test,
        "seed": seed,
        "train_files": train_files,
        "test_files": ["test_batch"],
        "md5": {name: _md5(base / name) for name in files},
    }
    (base / FIXTURE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return base
