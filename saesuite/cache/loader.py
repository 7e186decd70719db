"""The image side of caching: a DataLoader over a shard's rows that survives bad images.

* :func:`split_preprocess` cuts a model's eval transform where it turns a PIL
  image into a float tensor: the workers decode, resize and crop to ``uint8``
  ``[3, H, W]`` (4x less to copy and pin), and the device does ``/255`` and the
  normalisation on the whole batch -- the same arithmetic as ``ToTensor`` +
  ``Normalize``, so the result is identical.
* :class:`GuardedRows` reads rows ``start..stop`` of a dataset and turns an image
  that cannot be read or transformed into a marked gap instead of an exception;
  :func:`collate_rows` batches the good images and lists the bad ones.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import functional as TF

#: What reading or transforming a corrupt image raises (UnidentifiedImageError and
#: "image file is truncated" are OSErrors). Anything else is a bug and propagates.
BAD_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError)


def split_preprocess(preprocess: Callable | None) -> tuple[Callable | None, Callable[[torch.Tensor], torch.Tensor]]:
    """``(cpu_part, device_part)`` with ``device_part(stack(cpu_part(img)))`` equal to ``stack(preprocess(img))``.

    A ``Compose`` ending in ``ToTensor`` (or open_clip's subclass) and ``Normalize``
    becomes ``[..., PILToTensor]`` (uint8 ``[3, H, W]``) and a batched
    ``float / 255`` then normalise on ``[B, 3, H, W]``. Any other transform runs
    whole on the CPU and the device part only casts to float32.
    """
    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) >= 2 and isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize):
        mean, std = list(steps[-1].mean), list(steps[-1].std)

        def on_device(images: torch.Tensor) -> torch.Tensor:
            return TF.normalize(images.float().div(255), mean, std)

        return T.Compose(steps[:-2] + [T.PILToTensor()]), on_device
    return preprocess, lambda images: images.float()


@dataclass(frozen=True)
class BadImage:
    """An image that could not be read: its dataset row, its file (when known) and the error."""

    row: int
    path: str | None
    error: str

    def record(self) -> dict:
        return {"row": self.row, "path": self.path, "error": self.error}


class GuardedRows(Dataset):
    """Rows ``start..stop`` of ``dataset`` with ``transform``; item ``j`` is ``(row, image | None, label, BadImage | None)``.

    ``dataset`` is shallow-copied with its transform replaced, so the caller's
    object is left as it was. The label of a bad image comes from ``targets``
    when the dataset has them (ImageFolder, CIFAR10), else it is -1.
    """

    def __init__(self, dataset: Dataset, start: int, stop: int, transform: Callable | None):
        self.dataset = copy.copy(dataset)
        if hasattr(self.dataset, "transform"):
            self.dataset.transform = transform
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int):
        row = self.start + j
        try:
            image, label = self.dataset[row]
            return row, image, int(label), None
        except BAD_IMAGE_ERRORS as err:
            samples = getattr(self.dataset, "samples", None)
            path = str(samples[row][0]) if samples is not None else None
            targets = getattr(self.dataset, "targets", None)
            label = int(targets[row]) if targets is not None else -1
            return row, None, label, BadImage(row, path, f"{type(err).__name__}: {err}"[:300])


def collate_rows(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[BadImage]]:
    """``(rows [B], images [G, 3, H, W] of the good ones, ok [B] bool, labels [B], bad images)``."""
    rows = torch.tensor([it[0] for it in items], dtype=torch.int64)
    ok = torch.tensor([it[1] is not None for it in items], dtype=torch.bool)
    good = [it[1] for it in items if it[1] is not None]
    images = torch.stack(good) if good else torch.empty(0)
    labels = torch.tensor([it[2] for it in items], dtype=torch.int64)
    return rows, images, ok, labels, [it[3] for it in items if it[3] is not None]


def shard_loader(
    dataset: Dataset,
    start: int,
    stop: int,
    preprocess: Callable | None,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    prefetch_factor: int = 4,
) -> tuple[DataLoader, Callable[[torch.Tensor], torch.Tensor]]:
    """A DataLoader over rows ``start..stop`` in order, and the device half of ``preprocess``."""
    cpu_part, device_part = split_preprocess(preprocess)
    loader = DataLoader(
        GuardedRows(dataset, start, stop, cpu_part),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_rows,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=False,
    )
    return loader, device_part
