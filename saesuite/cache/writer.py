"""Filling an activation cache (the format of :mod:`saesuite.cache.format`) from a backbone.

:func:`cache_shard` computes one shard, a range of rows; the workflow runs the shards of a cache
as separate jobs, side by side, then gathers them (:func:`saesuite.cache.format.write_manifest`).
:func:`cache_activations` does both in one process (``saesuite cache``).

A shard is written under a temporary name (a memory map, so host memory stays bounded by the
batch) and renamed once complete, beside it the images' CLIP embeddings from the same forward pass
(``embed-NNNNN.npy``, the same way), then its labels and, last, its record are written, so a killed
run redoes only the shards without a record and a half-written shard never looks complete.

Concurrency. A shard being written is locked (``.shard-NNNNN.lock``, see
:mod:`saesuite.outputs`), and so is the folder while its manifest is written: a second process
writing the same shard is refused with the holder's PID, and temporary names are unique per
writer.

Bad images. An image that cannot be read or decoded does not stop the run: its row is written
as zeros and listed in the record's ``bad_rows``. More than ``max_bad_fraction`` of a shard's
rows stops the job with the list.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from saesuite.cache.format import (
    DTYPES, LABELS, MANIFEST, cache_meta, embed_name, labels_name, record_name, shard_name, write_manifest,
)
from saesuite.cache.loader import BadImage, shard_loader
from saesuite.cache.planted import SyntheticRows
from saesuite.device import resolve_device
from saesuite.errors import CacheError, ConfigError
from saesuite.files import save_npy_atomic, sha256_file, write_json_atomic
from saesuite.models.backbones import EMBED, Backbone, HookSpec, resolve_hook
from saesuite.outputs import atomic_path, output_lock


def shard_rows(n: int, n_shards: int, index: int) -> tuple[int, int]:
    """Row range ``(start, stop)`` of shard ``index`` when ``range(n)`` is cut into ``n_shards`` near-equal parts."""
    if n_shards < 1 or not 0 <= index < n_shards:
        raise ConfigError(f"shard {index} of {n_shards} does not exist (need n_shards >= 1, 0 <= index < n_shards)")
    if n_shards > n:
        raise ConfigError(f"{n_shards} shards for {n} images leaves empty shards; use at most {n} shards")
    return index * n // n_shards, (index + 1) * n // n_shards


def cache_length(dataset: Dataset, limit: int | None) -> int:
    """Number of images cached: the whole split, or its first ``limit`` images."""
    return len(dataset) if limit is None else min(int(limit), len(dataset))


@dataclass
class _Target:
    """One hook's shard being written: the hook, its width and the cache directory it goes to."""

    hook: HookSpec
    d: int
    out_dir: Path
    index: int

    @property
    def shard_path(self) -> Path:
        return self.out_dir / shard_name(self.index)

    @property
    def embed_path(self) -> Path:
        return self.out_dir / embed_name(self.index)

    @property
    def record_path(self) -> Path:
        return self.out_dir / record_name(self.index)

    @property
    def lock_name(self) -> str:
        return f".{shard_name(self.index).removesuffix('.npy')}.lock"

    def owns(self, name: str) -> bool:
        """The files of this shard (whose stale temporary copies its lock holder removes)."""
        return name in (shard_name(self.index), embed_name(self.index), labels_name(self.index), record_name(self.index))


def cache_shard(
    backbone: Backbone,
    dataset: Dataset,
    out_dir: str | Path,
    index: int,
    n_shards: int,
    *,
    dataset_name: str,
    split: str,
    limit: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    dtype: str = "float16",
    device: str = "cpu",
    precision: str = "auto",
    max_bad_fraction: float = 0.001,
    prefetch_factor: int = 4,
    also: Mapping[str, str | Path] | None = None,
    synthetic: SyntheticRows | None = None,
) -> dict:
    """Compute and write shard ``index`` of ``n_shards`` of ``dataset``; return its record.

    The shard holds rows ``shard_rows(n, n_shards, index)`` with ``n`` the number of
    images cached. A shard whose record already exists is complete and is not
    recomputed. Writes ``shard-NNNNN.npy`` (through a memory-mapped temporary file
    renamed when whole), ``labels-NNNNN.npy`` and, last, the record ``shard-NNNNN.json``.
    Host memory is bounded by the batch (images in flight) plus 8 bytes a row for labels. The
    images' embeddings go to ``embed-NNNNN.npy`` of each directory the same way.

    ``also`` maps further hook points (``"mlp_hidden:22"``) to their own cache
    directories, filled from the same forward pass. An image that cannot be read is
    written as a row of zeros and listed in the record's ``bad_rows``; more than
    ``max_bad_fraction`` of the shard's rows stops the job with the list.
    ``precision`` is ``auto`` (bf16 autocast on CUDA), ``fp32`` or ``bf16``. ``synthetic`` (a rehearsal)
    fills the cache past its images up to ``synthetic.rows`` with planted rows (:class:`SyntheticRows`),
    recorded in the manifest's ``synthetic``.
    """
    if synthetic is not None and also:
        raise ConfigError("synthetic rows fill one hook's cache; cache further hooks (also) without them")
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    targets = _targets(backbone, Path(out_dir), index, also)
    if done := _finished_record(targets):
        return done
    with contextlib.ExitStack() as locks:  # one writer per shard; other shards' jobs go on beside it
        for t in targets:
            locks.enter_context(output_lock(t.out_dir, t.lock_name, owns=t.owns))
        if done := _finished_record(targets):  # finished by another run while we waited to lock
            return done
        torch_device = resolve_device(device)
        backbone.prepare(torch_device, precision)
        n_images = cache_length(dataset, limit)
        synthetic = synthetic and synthetic.for_width(backbone.d)
        start, stop = shard_rows(max(n_images, synthetic.rows) if synthetic else n_images, n_shards, index)
        loader, on_device = shard_loader(
            dataset, min(start, n_images), min(stop, n_images), getattr(dataset, "transform", None) or backbone.preprocess,
            batch_size=batch_size, num_workers=num_workers, pin_memory=torch_device.type == "cuda",
            prefetch_factor=prefetch_factor,
        )
        shard = _Shard(backbone, targets, start, stop - start, dtype, backbone.embed_dim,
                       to_model=lambda images: on_device(images.to(torch_device, non_blocking=True)),
                       synthetic=synthetic, images=n_images, n_classes=len(getattr(dataset, "classes", [])))
        labels, bad = shard.fill(loader, max_bad_fraction)
        extra = {"synthetic": synthetic.describe(n_images)} if synthetic else {}
        return shard.publish(labels, bad, lambda t: {**cache_meta(backbone, dataset, dataset_name, split, dtype,
                                                                  hook=t.hook, d=t.d), **extra})


def _targets(backbone: Backbone, out_dir: Path, index: int, also: Mapping[str, str | Path] | None) -> list[_Target]:
    """The backbone's own hook into ``out_dir``, then each hook of ``also`` into its directory."""
    targets = [_Target(backbone.hook, backbone.d, out_dir, index)]
    for hook, path in (also or {}).items():
        spec, _, d = resolve_hook(backbone.model, backbone.name, HookSpec.parse(hook))
        targets.append(_Target(spec, d, Path(path), index))
    if len({t.out_dir.resolve() for t in targets}) != len(targets):
        raise ConfigError("each hook point needs its own cache directory; two of them share one")
    return targets


def _finished_record(targets: list[_Target]) -> dict | None:
    """The first target's record when every target's shard is already complete, else None."""
    if all(t.record_path.exists() for t in targets):
        return json.loads(targets[0].record_path.read_text())
    return None


@dataclass
class _Shard:
    """One shard being computed (its shard lock held): the backbone, the hooks it writes, its rows."""

    backbone: Backbone
    targets: list[_Target]
    start: int
    rows: int
    dtype: str
    embed_dim: int
    to_model: Callable[[torch.Tensor], torch.Tensor]  # a loader batch, moved to the device and normalised
    synthetic: SyntheticRows | None = None  # planted rows past the dataset's images (a rehearsal)
    images: int = 0  # the dataset's images cached: rows from there on are synthetic
    n_classes: int = 0

    def fill(self, loader: Iterable, max_bad_fraction: float) -> tuple[np.ndarray, list[BadImage]]:
        """Run the backbone over the loader's batches into each target's shard and embedding files
        (renamed into place once whole); return the shard's labels and its unreadable images."""
        labels = np.empty(self.rows, dtype=np.int64)
        bad: list[BadImage] = []
        timer = ShardTimer()
        desc = f"{self.backbone.name} {self.backbone.hook} shard {self.targets[0].index}"
        with contextlib.ExitStack() as files, tqdm(total=self.rows, unit="img", desc=desc) as bar:
            files_widths = [(path, width) for t in self.targets
                            for path, width in ((t.shard_path, t.d), (t.embed_path, self.embed_dim))]
            maps = [np.lib.format.open_memmap(files.enter_context(atomic_path(path)), mode="w+", dtype=self.dtype,
                                              shape=(self.rows, width)) for path, width in files_widths]  # renamed on leaving
            for batch_rows, images, ok, batch_labels, bad_items in timer.wrap(loader):
                local = batch_rows.numpy() - self.start
                labels[local] = batch_labels.numpy()
                bad.extend(bad_items)
                if len(bad) > int(max_bad_fraction * self.rows):
                    raise CacheError(_too_many_bad(bad, self.rows, max_bad_fraction))
                self._write_batch(maps, local, images, ok.numpy())
                timer.model_done(len(local))
                bar.update(len(local))
                if bad:
                    bar.set_postfix(bad=len(bad))
            if self.synthetic is not None:
                self.synthetic.fill(maps[0], labels, self.start, self.images, self.n_classes, bar.update)
            for mm in maps:
                mm.flush()
            del maps
        print(timer.summary(self.rows), flush=True)
        return labels, bad

    def _write_batch(self, maps: list[np.ndarray], local: np.ndarray, images: torch.Tensor, ok: np.ndarray) -> None:
        """Rows ``local`` of the shard (``maps``: each target's shard then its embeddings): the hooked
        activations and the embeddings of the good images, zeros for the bad ones."""
        if len(images):
            outs = self.backbone.capture(self.to_model(images), [t.hook for t in self.targets], embed=True)
            embed = _to_host(outs[EMBED], self.dtype, self.backbone.name, EMBED, self.start + local[0])
            for t, mm, em in zip(self.targets, maps[::2], maps[1::2]):
                mm[local[ok]] = _to_host(outs[str(t.hook)], self.dtype, self.backbone.name, t.hook,
                                         self.start + local[0])
                em[local[ok]] = embed
        for mm in maps:
            mm[local[~ok]] = 0

    def publish(self, labels: np.ndarray, bad: list[BadImage], meta: Callable[[_Target], dict]) -> dict:
        """Write each target's labels and, last, its record (whose presence marks the shard
        complete); return the first target's record. ``meta(target)``: the record's ``meta``."""
        records = []
        for t in self.targets:
            save_npy_atomic(t.out_dir / labels_name(t.index), labels)
            records.append({
                "file": t.shard_path.name,
                "rows": int(self.rows),
                "start": int(self.start),
                "sha256": sha256_file(t.shard_path),
                "embed": {"file": t.embed_path.name, "sha256": sha256_file(t.embed_path)},
                "bad_rows": [b.record() for b in bad],
                "meta": meta(t),
            })
        for t, record in zip(self.targets, records):
            write_json_atomic(t.record_path, record)
        return records[0]


def _to_host(out: torch.Tensor, dtype: str, model: str, hook: HookSpec | str, first_row: int) -> np.ndarray:
    """``[B, d]`` activations as a host array of ``dtype``; a CacheError if any value is not finite."""
    arr = out.to(getattr(torch, dtype)).cpu().numpy()
    if not np.isfinite(arr).all():
        hint = " (float16 overflows past 65504: set cache.dtype: float32)" if dtype == "float16" and torch.isfinite(out).all() else ""
        raise CacheError(f"{model} {hook} produced non-finite activations in the batch starting at row {first_row}{hint}")
    return arr


def _too_many_bad(bad: list[BadImage], rows: int, fraction: float) -> str:
    listing = "\n".join(f"  row {b.row}: {b.path or '?'}: {b.error}" for b in bad)
    return (
        f"{len(bad)} unreadable images in a shard of {rows} rows, more than cache.max_bad_fraction={fraction} allows. "
        f"Repair or remove them (or raise the fraction):\n{listing}"
    )


class ShardTimer:
    """Splits a shard's wall time into waiting for the loader (decode + preprocess) and the model.
    Printed to the job's log, not kept in the shard record: a shard's outputs depend on its inputs only."""

    def __init__(self) -> None:
        self.data_s = self.model_s = 0.0
        self.t0 = self.mark = time.perf_counter()

    def wrap(self, loader: Iterable) -> Iterator:
        for batch in loader:
            now = time.perf_counter()
            self.data_s += now - self.mark
            self.mark = now
            yield batch

    def model_done(self, _images: int) -> None:
        now = time.perf_counter()
        self.model_s += now - self.mark
        self.mark = now

    def record(self, rows: int) -> dict:
        seconds = time.perf_counter() - self.t0
        return {
            "seconds": round(seconds, 3),
            "data_wait_s": round(self.data_s, 3),
            "model_s": round(self.model_s, 3),
            "images_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        }

    def summary(self, rows: int) -> str:
        r = self.record(rows)
        return (
            f"{rows} images in {r['seconds']} s ({r['images_per_s']} img/s): waiting for data {r['data_wait_s']} s, "
            f"model {r['model_s']} s"
        )


def cache_activations(
    backbone: Backbone,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    dataset_name: str,
    split: str,
    batch_size: int = 256,
    num_workers: int = 0,
    dtype: str = "float16",
    n_shards: int = 1,
    device: str = "cpu",
    limit: int | None = None,
    precision: str = "auto",
    max_bad_fraction: float = 0.001,
    prefetch_factor: int = 4,
    also: Mapping[str, str | Path] | None = None,
) -> dict:
    """Cache ``backbone``'s hooked activation for every image of ``dataset``; return the manifest.

    The shards are computed one after another here; the workflow runs them as
    separate jobs and then calls :func:`~saesuite.cache.format.write_manifest`. ``also`` and
    the other options are those of :func:`cache_shard`; each directory of ``also`` gets its
    own manifest.
    """
    if cache_length(dataset, limit) == 0:
        raise ConfigError(f"dataset {dataset_name} split {split} has no images to cache")
    folders = [out_dir, *(also or {}).values()]
    with contextlib.ExitStack() as locks:  # the whole folder: no other run gathers or clears it meanwhile
        for folder in folders:
            locks.enter_context(output_lock(folder, owns=lambda name: name in (MANIFEST, LABELS)))
        for index in range(n_shards):
            cache_shard(
                backbone, dataset, out_dir, index, n_shards,
                dataset_name=dataset_name, split=split, limit=limit, batch_size=batch_size, num_workers=num_workers,
                dtype=dtype, device=device, precision=precision, max_bad_fraction=max_bad_fraction,
                prefetch_factor=prefetch_factor, also=also,
            )
        manifests = [write_manifest(folder, n_shards) for folder in folders]
        for folder in folders:  # the per-shard parts are folded into the manifest and labels.npy
            for index in range(n_shards):
                (Path(folder) / labels_name(index)).unlink()
                (Path(folder) / record_name(index)).unlink()
        return manifests[0]
