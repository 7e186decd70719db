"""The activation cache: hooked activations of a backbone over a dataset split, on disk.

Layout of a cache directory (the contract of DESIGN.md)::

    manifest.json        n, d, dtype, model, pretrained, hook, dataset, split,
                         classes, shards: [{file, rows, sha256}, ...]
    shard-00000.npy      [rows, d] float16 or float32, rows of images in index order
    shard-00000.json     that shard's record (written after the shard is complete)
    labels.npy           int64 [n]

Row i of the concatenated shards is image i of the dataset. Each shard is written
under a temporary name (a memory map, so host memory stays bounded by the batch)
and renamed once complete, then its record is written, so a killed run redoes
only the shards without a record and a half-written shard never looks complete.
``manifest.json`` is written last: its presence means the cache is whole.

Concurrency. A shard being written is locked (``.shard-NNNNN.lock``, see
:mod:`saesuite.outputs`), and so is the folder while its manifest is written: a
second process writing the same shard is refused with the holder's PID, and
temporary names are unique per writer. Shard jobs of one cache run side by side.

Bad images. An image that cannot be read or decoded does not stop the run: its
row is written as zeros (so rows stay aligned with the dataset index, and two
caches of the same images stay row-aligned) and listed in the manifest as
``bad_rows: [{row, path, error}]`` with ``n_bad``. Readers must skip those rows:
:meth:`ActivationCache.valid_mask` (bool ``[n]``) and
:meth:`ActivationCache.valid_indices` (the usable rows) say which. More than
``max_bad_fraction`` of a shard's rows stops the job with the list.

Verification. :func:`verify_cache` (``saesuite verify-cache DIR``, and
:meth:`ActivationCache.open`, which training and evaluation call) checks every
shard's rows, dtype, sha256 and that it holds no NaN/inf, and names the shard at fault.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from saesuite.models.backbones import Backbone, HookSpec, resolve_hook
from saesuite.errors import CacheError, ConfigError
from saesuite.cache.loader import BadImage, shard_loader
from saesuite.outputs import atomic_path, output_lock, temp_path

MANIFEST = "manifest.json"
DTYPES = ("float16", "float32")
HASH_BLOCK = 1 << 22  # bytes hashed at a time
FINITE_BLOCK = 16384  # rows checked for NaN/inf at a time: bounds verify's memory


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def record_name(index: int) -> str:
    return f"shard-{index:05d}.json"


def labels_name(index: int) -> str:
    return f"labels-{index:05d}.npy"


def sha256_file(path: Path, chunk: int | None = None) -> str:
    """Hex sha256 of a file, read ``chunk`` bytes (default :data:`HASH_BLOCK`) at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk or HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` through a uniquely named temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


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


@dataclass
class _Target:
    """One hook's shard being written: where, and the temporary file of its memory map."""

    hook: HookSpec
    d: int
    out_dir: Path
    index: int

    def __post_init__(self):
        self.tmp_path = temp_path(self.out_dir / shard_name(self.index))  # unique to this writer

    @property
    def record_path(self) -> Path:
        return self.out_dir / record_name(self.index)

    @property
    def lock_name(self) -> str:
        return f".{shard_name(self.index).removesuffix('.npy')}.lock"

    def owns(self, name: str) -> bool:
        """The files of this shard (whose stale temporary copies its lock holder removes)."""
        return name in (shard_name(self.index), labels_name(self.index), record_name(self.index))


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
) -> dict:
    """Compute and write shard ``index`` of ``n_shards`` of ``dataset``; return its record.

    The shard holds rows ``shard_rows(n, n_shards, index)`` with ``n`` the number of
    images cached. A shard whose record already exists is complete and is not
    recomputed. Writes ``shard-NNNNN.npy`` (through a memory-mapped temporary file
    renamed when whole), ``labels-NNNNN.npy`` and, last, the record ``shard-NNNNN.json``.
    Host memory is bounded by the batch (images in flight) plus 8 bytes a row for labels.

    ``also`` maps further hook points (``"mlp_hidden:22"``) to their own cache
    directories, filled from the same forward pass. An image that cannot be read is
    written as a row of zeros and listed in the record's ``bad_rows``; more than
    ``max_bad_fraction`` of the shard's rows stops the job with the list.
    ``precision`` is ``auto`` (bf16 autocast on CUDA), ``fp32`` or ``bf16``.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    targets = [_Target(backbone.hook, backbone.d, Path(out_dir), index)]
    for hook, path in (also or {}).items():
        spec, _, d = resolve_hook(backbone.model, backbone.name, HookSpec.parse(hook))
        targets.append(_Target(spec, d, Path(path), index))
    if len({t.out_dir.resolve() for t in targets}) != len(targets):
        raise ConfigError("each hook point needs its own cache directory; two of them share one")
    if all(t.record_path.exists() for t in targets):
        return json.loads(targets[0].record_path.read_text())
    with contextlib.ExitStack() as locks:  # one writer per shard; other shards' jobs go on beside it
        for t in targets:
            locks.enter_context(output_lock(t.out_dir, t.lock_name, owns=t.owns))
        if all(t.record_path.exists() for t in targets):  # finished by another run while we waited to lock
            return json.loads(targets[0].record_path.read_text())
        return _compute_shard(
            backbone, dataset, targets, index, n_shards, dataset_name=dataset_name, split=split, limit=limit,
            batch_size=batch_size, num_workers=num_workers, dtype=dtype, device=device, precision=precision,
            max_bad_fraction=max_bad_fraction, prefetch_factor=prefetch_factor,
        )


def _compute_shard(
    backbone: Backbone, dataset: Dataset, targets: list[_Target], index: int, n_shards: int, *, dataset_name: str,
    split: str, limit: int | None, batch_size: int, num_workers: int, dtype: str, device: str, precision: str,
    max_bad_fraction: float, prefetch_factor: int,
) -> dict:
    """The body of :func:`cache_shard` once its shard is locked."""
    torch_device = resolve_device(device)
    backbone.prepare(torch_device, precision)
    start, stop = shard_rows(cache_length(dataset, limit), n_shards, index)
    rows = stop - start
    loader, on_device = shard_loader(
        dataset, start, stop, getattr(dataset, "transform", None) or backbone.preprocess,
        batch_size=batch_size, num_workers=num_workers, pin_memory=torch_device.type == "cuda",
        prefetch_factor=prefetch_factor,
    )
    maps = [np.lib.format.open_memmap(t.tmp_path, mode="w+", dtype=dtype, shape=(rows, t.d)) for t in targets]
    labels = np.empty(rows, dtype=np.int64)
    bad: list[BadImage] = []
    allowed = int(max_bad_fraction * rows)
    timer = ShardTimer()
    hooks = [t.hook for t in targets]
    with tqdm(total=rows, unit="img", desc=f"{backbone.name} {backbone.hook} shard {index}") as bar:
        for batch_rows, images, ok, batch_labels, bad_items in timer.wrap(loader):
            local = batch_rows.numpy() - start
            labels[local] = batch_labels.numpy()
            bad.extend(bad_items)
            if len(bad) > allowed:
                raise CacheError(_too_many_bad(bad, rows, max_bad_fraction))
            if len(images):
                outs = backbone.capture(on_device(images.to(torch_device, non_blocking=True)), hooks)
                for t, mm in zip(targets, maps):
                    mm[local[ok.numpy()]] = _to_host(outs[str(t.hook)], dtype, backbone.name, t.hook, start + local[0])
            for mm in maps:
                mm[local[~ok.numpy()]] = 0
            timer.model_done(len(local))
            bar.update(len(local))
            if bad:
                bar.set_postfix(bad=len(bad))
    for mm in maps:
        mm.flush()
    del maps
    print(timer.summary(rows), flush=True)
    records = []
    for t in targets:
        final = t.out_dir / shard_name(index)
        os.replace(t.tmp_path, final)
        _save_atomic(t.out_dir / labels_name(index), labels)
        records.append({
            "file": final.name,
            "rows": int(rows),
            "start": int(start),
            "sha256": sha256_file(final),
            "bad_rows": [b.record() for b in bad],
            "meta": cache_meta(backbone, dataset, dataset_name, split, dtype, hook=t.hook, d=t.d),
        })
    for t, record in zip(targets, records):  # records last: their presence marks the shard complete
        write_json_atomic(t.record_path, record)
    return records[0]


def _to_host(out: torch.Tensor, dtype: str, model: str, hook: HookSpec, first_row: int) -> np.ndarray:
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


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


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


def write_manifest(out_dir: str | Path, n_shards: int) -> dict:
    """Gather the shard records into ``manifest.json`` and ``labels.npy`` (the last step).

    Every shard must be complete, describe the same model, hook and split, and
    the shards must tile the rows without gap or overlap. The shards' unreadable
    images are gathered into ``bad_rows`` (``[{row, path, error}]``) and ``n_bad``.
    """
    out_dir = Path(out_dir)
    with output_lock(out_dir, owns=lambda name: name in (MANIFEST, "labels.npy")):
        return _gather_shards(out_dir, n_shards)


def _gather_shards(out_dir: Path, n_shards: int) -> dict:
    records, labels, bad, meta = [], [], [], None
    for index in range(n_shards):
        record_path = out_dir / record_name(index)
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
        bad.extend(record.get("bad_rows", []))
        labels.append(np.load(out_dir / labels_name(index)))
    all_labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
    return _finish_cache(out_dir, meta, records, all_labels, bad)


def _finish_cache(out_dir: Path, meta: dict, shards: list[dict], labels: np.ndarray, bad: list[dict]) -> dict:
    """Write ``labels.npy`` and, last, ``manifest.json`` (the cache's format, in one place)."""
    _save_atomic(out_dir / "labels.npy", labels)
    manifest = dict(meta, n=int(len(labels)), shards=shards, n_bad=len(bad), bad_rows=bad)
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


def write_array_cache(out_dir: str | Path, x: np.ndarray, meta: dict, *, labels: np.ndarray | None = None,
                      n_shards: int = 1, bad_rows: list[dict] = ()) -> Path:
    """Write activations ``x [n, d]`` that did not come from a backbone (the planted benchmark,
    tests) as a cache: ``n_shards`` shards, ``labels.npy`` (zeros without ``labels``), the
    manifest with ``meta`` (model, pretrained, hook, dataset, split, classes; d and dtype are
    taken from ``x``). ``bad_rows``: ``[{row, path, error}]`` to mark as unreadable images."""
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        return _write_array_cache(out_dir, x, meta, labels, n_shards, bad_rows)


def _write_array_cache(out_dir: Path, x: np.ndarray, meta: dict, labels: np.ndarray | None, n_shards: int,
                       bad_rows) -> Path:
    shards = []
    for i, part in enumerate(np.array_split(x, n_shards)):
        path = out_dir / shard_name(i)
        _save_atomic(path, part)
        shards.append({"file": path.name, "rows": len(part), "sha256": sha256_file(path)})
    labels = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels, np.int64)
    _finish_cache(out_dir, {**meta, "d": int(x.shape[1]), "dtype": str(x.dtype)}, shards, labels, list(bad_rows))
    return out_dir


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
    separate jobs and then calls :func:`write_manifest`. ``also`` and the other
    options are those of :func:`cache_shard`; each directory of ``also`` gets its
    own manifest.
    """
    if cache_length(dataset, limit) == 0:
        raise ConfigError(f"dataset {dataset_name} split {split} has no images to cache")
    with contextlib.ExitStack() as locks:  # the whole folder: no other run gathers or clears it meanwhile
        for folder in [out_dir, *(also or {}).values()]:
            locks.enter_context(output_lock(folder, owns=lambda name: name in (MANIFEST, "labels.npy")))
        return _cache_all_shards(
            backbone, dataset, out_dir, dataset_name=dataset_name, split=split, batch_size=batch_size,
            num_workers=num_workers, dtype=dtype, n_shards=n_shards, device=device, limit=limit,
            precision=precision, max_bad_fraction=max_bad_fraction, prefetch_factor=prefetch_factor, also=also,
        )


def _cache_all_shards(backbone, dataset, out_dir, *, dataset_name, split, batch_size, num_workers, dtype, n_shards,
                      device, limit, precision, max_bad_fraction, prefetch_factor, also) -> dict:
    for index in range(n_shards):
        cache_shard(
            backbone, dataset, out_dir, index, n_shards,
            dataset_name=dataset_name, split=split, limit=limit, batch_size=batch_size, num_workers=num_workers,
            dtype=dtype, device=device, precision=precision, max_bad_fraction=max_bad_fraction,
            prefetch_factor=prefetch_factor, also=also,
        )
    manifests = [write_manifest(d, n_shards) for d in [out_dir, *(also or {}).values()]]
    for d in [out_dir, *(also or {}).values()]:  # the per-shard parts are folded into the manifest and labels.npy
        for index in range(n_shards):
            (Path(d) / labels_name(index)).unlink()
            (Path(d) / record_name(index)).unlink()
    return manifests[0]


def cache_meta(
    backbone: Backbone, dataset: Dataset, dataset_name: str, split: str, dtype: str,
    hook: HookSpec | None = None, d: int | None = None,
) -> dict:
    """The manifest's description of what was cached (all but ``n``, ``shards`` and the bad rows)."""
    return {
        "d": backbone.d if d is None else d,
        "dtype": dtype,
        "precision": backbone.precision,
        "model": backbone.name,
        "pretrained": backbone.pretrained,
        "init_seed": backbone.init_seed,
        "hook": str(backbone.hook if hook is None else hook),
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
    def open(cls, path: str | Path, *, checksums: bool = True, finite: bool = True) -> "ActivationCache":
        """Open a cache after :func:`verify_cache` (the check ``saesuite verify-cache`` runs)."""
        path = Path(path)
        manifest = verify_cache(path, checksums=checksums, finite=finite)
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

    @property
    def n_bad(self) -> int:
        """Rows of images that could not be read (zeros in the shards)."""
        return len(self.manifest.get("bad_rows", []))

    def valid_mask(self) -> np.ndarray:
        """bool ``[n]``: True for rows of images that were read, False for the zero rows of bad images."""
        mask = np.ones(self.n, dtype=bool)
        mask[[int(b["row"]) for b in self.manifest.get("bad_rows", [])]] = False
        return mask

    def valid_indices(self) -> np.ndarray:
        """int64 ``[n - n_bad]``: the usable rows, ascending. Sample training batches from these."""
        return np.flatnonzero(self.valid_mask()).astype(np.int64)

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


def _redo_advice(path: Path, record: dict) -> str:
    """How to redo one damaged shard: alone while its record (``shard-NNNNN.json``) is still beside it,
    else (a finished cache: the records were folded into the manifest and removed) the whole cache."""
    record_file = path / Path(record["file"]).with_suffix(".json").name
    if record_file.is_file():
        return f"delete it and {record_file.name} and rerun caching: only this shard is redone"
    return (f"delete the cache folder {path} and rerun caching (the workflow, or 'saesuite cache'); a finished "
            "cache keeps no per-shard records, so the whole cache is rebuilt")


def verify_cache(path: str | Path, *, checksums: bool = True, finite: bool = False) -> dict:
    """Check a cache directory against its manifest; return the manifest or raise :class:`CacheError`.

    Checks that every shard exists, holds ``[rows, d]`` of the stated dtype, that
    the rows add up to ``n`` and match ``labels.npy``, that ``bad_rows`` name distinct
    rows in range, and (``checksums``) its sha256; with ``finite`` also that no value
    is NaN or inf and that bad rows are zeros. The message names the shard at fault.
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
    bad = np.array(sorted(int(b["row"]) for b in manifest.get("bad_rows", [])), dtype=np.int64)
    if len(bad) and (bad[0] < 0 or bad[-1] >= manifest["n"] or np.any(np.diff(bad) == 0)):
        raise CacheError(f"{manifest_path}: bad_rows must name distinct rows in 0..{manifest['n'] - 1}; rebuild the cache")
    total = 0
    for record in manifest["shards"]:
        shard_path = path / record["file"]
        where = f"{path}: shard {record['file']}"
        if not shard_path.is_file():
            raise CacheError(f"{where} is missing; delete the cache directory and rebuild it")
        try:
            arr = np.load(shard_path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise CacheError(f"{where} is unreadable or truncated ({err}); {_redo_advice(path, record)}") from err
        if arr.shape != (record["rows"], manifest["d"]):
            raise CacheError(
                f"{where} has shape {arr.shape}, the manifest says ({record['rows']}, {manifest['d']}); rebuild it"
            )
        if str(arr.dtype) != manifest["dtype"]:
            raise CacheError(f"{where} has dtype {arr.dtype}, the manifest says {manifest['dtype']}; rebuild it")
        if checksums and sha256_file(shard_path) != record["sha256"]:
            raise CacheError(f"{where} fails its sha256 check (corrupted or modified); {_redo_advice(path, record)}")
        if finite:
            for s in range(0, len(arr), FINITE_BLOCK):
                finite_rows = np.isfinite(arr[s : s + FINITE_BLOCK]).all(axis=1)
                if not finite_rows.all():
                    row = s + int(np.argmin(finite_rows))
                    raise CacheError(
                        f"{where} holds NaN or inf values, first in its row {row} (row {total + row} of the cache); "
                        f"{_redo_advice(path, record)}"
                    )
            local = bad[(bad >= total) & (bad < total + record["rows"])] - total
            if len(local) and np.any(arr[local] != 0):
                raise CacheError(f"{where}: rows listed as bad images are not zeros; rebuild it")
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
