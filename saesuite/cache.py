"""The activation cache: hooked activations of a backbone over a dataset split, on disk.

Layout of a cache directory (the contract of DESIGN.md)::

    manifest.json        n, d, dtype, model, pretrained, hook, dataset, split,
                         classes, shards: [{file, rows, sha256}, ...]
    shard-00000.npy      [rows, d] float16 or float32, rows of images in index order
    shard-00000.json     that shard's record (written after the shard is complete)
    labels.npy           int64 [n]

Row i of the concatenated shards is image i of the dataset. Each shard is written
under a temporary name and renamed once complete, then its record is written, so a
killed run redoes only the shards without a record and a half-written shard never
looks complete. ``manifest.json`` is written last: its presence means the cache is
whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from saesuite.backbones import Backbone
from saesuite.errors import CacheError, ConfigError

MANIFEST = "manifest.json"
DTYPES = ("float16", "float32")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present). Asking for CUDA without it is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but torch sees no CUDA GPU. Run on a GPU machine, or set "
            "device: cpu (or auto) in the config."
        )
    return torch.device(device)


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
) -> dict:
    """Compute and write shard ``index`` of ``n_shards`` of ``dataset``; return its record.

    The shard holds rows ``shard_rows(n, n_shards, index)`` with ``n`` the number of
    images cached. A shard whose record already exists is complete and is not
    recomputed. Writes ``shard-NNNNN.npy``, ``labels-NNNNN.npy`` and, last,
    the record ``shard-NNNNN.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / shard_name(index).replace(".npy", ".json")
    if record_path.exists():
        return json.loads(record_path.read_text())
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    torch_device = resolve_device(device)
    backbone.model.to(torch_device)
    start, stop = shard_rows(cache_length(dataset, limit), n_shards, index)
    loader = DataLoader(
        Subset(dataset, range(start, stop)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch_device.type == "cuda",
    )
    acts = np.empty((stop - start, backbone.d), dtype=dtype)
    labels = np.empty(stop - start, dtype=np.int64)
    at = 0
    with tqdm(total=stop - start, unit="img", desc=f"{backbone.name} {backbone.hook} shard {index}") as bar:
        for images, targets in loader:
            out = backbone.activations(images.to(torch_device, non_blocking=True))
            if not torch.isfinite(out).all():
                raise CacheError(f"{backbone.name} produced non-finite activations at rows {start + at}..")
            acts[at : at + len(out)] = out.float().cpu().numpy()
            labels[at : at + len(out)] = targets.numpy()
            at += len(out)
            bar.update(len(out))
    name = shard_name(index)
    tmp = out_dir / (name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, acts)
    os.replace(tmp, out_dir / name)
    np.save(out_dir / f"labels-{index:05d}.npy", labels)
    record = {
        "file": name,
        "rows": int(stop - start),
        "start": int(start),
        "sha256": sha256_file(out_dir / name),
        "meta": cache_meta(backbone, dataset, dataset_name, split, dtype),
    }
    write_json_atomic(record_path, record)
    return record


def write_manifest(out_dir: str | Path, n_shards: int) -> dict:
    """Gather the shard records into ``manifest.json`` and ``labels.npy`` (the last step).

    Every shard must be complete, describe the same model, hook and split, and
    the shards must tile the rows without gap or overlap.
    """
    out_dir = Path(out_dir)
    records, labels, meta = [], [], None
    for index in range(n_shards):
        record_path = out_dir / shard_name(index).replace(".npy", ".json")
        if not record_path.exists():
            raise CacheError(f"{out_dir}: shard {index} is not complete ({record_path.name} missing); rerun caching")
        record = json.loads(record_path.read_text())
        if meta is None:
            meta = record["meta"]
        elif record["meta"] != meta:
            raise CacheError(f"{out_dir}: shard {index} was made with different settings than shard 0; rebuild the cache")
        if record["start"] != sum(r["rows"] for r in records):
            raise CacheError(f"{out_dir}: shard {index} starts at row {record['start']}, not where shard {index - 1} ends")
        records.append({"file": record["file"], "rows": record["rows"], "sha256": record["sha256"]})
        labels.append(np.load(out_dir / f"labels-{index:05d}.npy"))
    all_labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
    np.save(out_dir / "labels.npy", all_labels)
    manifest = dict(meta, n=int(len(all_labels)), shards=records)
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


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
) -> dict:
    """Cache ``backbone``'s hooked activation for every image of ``dataset``; return the manifest.

    The shards are computed one after another here; the workflow runs them as
    separate jobs and then calls :func:`write_manifest`.
    """
    if cache_length(dataset, limit) == 0:
        raise ConfigError(f"dataset {dataset_name} split {split} has no images to cache")
    for index in range(n_shards):
        cache_shard(
            backbone, dataset, out_dir, index, n_shards,
            dataset_name=dataset_name, split=split, limit=limit, batch_size=batch_size, num_workers=num_workers, dtype=dtype, device=device,
        )
    manifest = write_manifest(out_dir, n_shards)
    for index in range(n_shards):  # the per-shard parts are folded into the manifest and labels.npy
        (Path(out_dir) / f"labels-{index:05d}.npy").unlink()
        (Path(out_dir) / f"shard-{index:05d}.json").unlink()
    return manifest


def cache_meta(backbone: Backbone, dataset: Dataset, dataset_name: str, split: str, dtype: str) -> dict:
    """The manifest's description of what was cached (all but ``n`` and ``shards``)."""
    return {
        "d": backbone.d,
        "dtype": dtype,
        "model": backbone.name,
        "pretrained": backbone.pretrained,
        "init_seed": backbone.init_seed,
        "hook": str(backbone.hook),
        "dataset": dataset_name,
        "split": split,
        "classes": list(getattr(dataset, "classes", [])),
    }


@dataclass
class ActivationCache:
    """Read access to a cache directory through memory maps; checks the manifest on open."""

    path: Path
    manifest: dict
    shards: list[np.ndarray]
    offsets: np.ndarray  # [n_shards + 1] first row of each shard

    @classmethod
    def open(cls, path: str | Path, *, checksums: bool = True) -> "ActivationCache":
        path = Path(path)
        manifest = verify_cache(path, checksums=checksums)
        shards = [np.load(path / s["file"], mmap_mode="r") for s in manifest["shards"]]
        offsets = np.concatenate([[0], np.cumsum([s["rows"] for s in manifest["shards"]])]).astype(np.int64)
        return cls(path, manifest, shards, offsets)

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def d(self) -> int:
        return int(self.manifest["d"])

    def labels(self) -> np.ndarray:
        return np.load(self.path / "labels.npy")

    def chunks(self, rows: int = 8192) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, x)`` with ``x`` a float32 ``[<=rows, d]`` block, in row order."""
        for shard, offset in zip(self.shards, self.offsets[:-1]):
            for s in range(0, len(shard), rows):
                yield int(offset + s), np.array(shard[s : s + rows], dtype=np.float32)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` ``[b]`` as float32 ``[b, d]``, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.d), dtype=np.float32)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        for s in np.unique(which):
            mask = which == s
            local = indices[mask] - self.offsets[s]
            order = np.argsort(local)
            rows = self.shards[s][local[order]]  # sorted reads are friendlier to the page cache
            block = np.empty_like(rows, dtype=np.float32)
            block[order] = rows
            out[mask] = block
        return out

    def read_all(self) -> np.ndarray:
        """The whole cache as float32 ``[n, d]`` (small caches only)."""
        return np.concatenate([np.asarray(s, dtype=np.float32) for s in self.shards]) if self.shards else np.empty((0, self.d), np.float32)


def verify_cache(path: str | Path, *, checksums: bool = True, finite: bool = False) -> dict:
    """Check a cache directory against its manifest; return the manifest or raise :class:`CacheError`.

    Checks that every shard exists, holds ``[rows, d]`` of the stated dtype, that
    the rows add up to ``n`` and match ``labels.npy``, and (``checksums``) its sha256;
    with ``finite`` also that no value is NaN or inf. The message names the shard at fault.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CacheError(
            f"{path}: no {MANIFEST}, so this is not a complete activation cache. Build it with "
            "'saesuite cache' (or the workflow's cache rule); an interrupted run resumes where it stopped."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise CacheError(f"{manifest_path}: not valid JSON ({err}); delete the cache and rebuild it") from err
    missing = [k for k in ("n", "d", "dtype", "model", "hook", "shards") if k not in manifest]
    if missing:
        raise CacheError(f"{manifest_path}: missing keys {missing}; delete the cache and rebuild it")
    total = 0
    for record in manifest["shards"]:
        shard_path = path / record["file"]
        where = f"{path}: shard {record['file']}"
        if not shard_path.is_file():
            raise CacheError(f"{where} is missing; delete the cache directory and rebuild it")
        try:
            arr = np.load(shard_path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise CacheError(f"{where} is unreadable or truncated ({err}); delete it and its .json and rerun caching") from err
        if arr.shape != (record["rows"], manifest["d"]):
            raise CacheError(
                f"{where} has shape {arr.shape}, the manifest says ({record['rows']}, {manifest['d']}); rebuild it"
            )
        if str(arr.dtype) != manifest["dtype"]:
            raise CacheError(f"{where} has dtype {arr.dtype}, the manifest says {manifest['dtype']}; rebuild it")
        if checksums and sha256_file(shard_path) != record["sha256"]:
            raise CacheError(f"{where} fails its sha256 check (corrupted or modified); delete it and its .json and rerun caching")
        if finite:
            for s in range(0, len(arr), 65536):
                if not np.isfinite(arr[s : s + 65536]).all():
                    raise CacheError(f"{where} holds NaN or inf values near row {s}; rebuild it")
        total += record["rows"]
    if total != manifest["n"]:
        raise CacheError(f"{path}: shards hold {total} rows, the manifest says n={manifest['n']}; rebuild the cache")
    labels_path = path / "labels.npy"
    if not labels_path.is_file():
        raise CacheError(f"{path}: labels.npy is missing; rebuild the cache")
    labels = np.load(labels_path, mmap_mode="r")
    if labels.shape != (manifest["n"],):
        raise CacheError(f"{path}: labels.npy has shape {labels.shape}, expected ({manifest['n']},); rebuild the cache")
    return manifest
