"""Checking a cache directory against its manifest, naming the shard at fault and how to redo it.

:func:`verify_cache` runs for ``saesuite verify-cache DIR``, at the end of the workflow's
gather step, and in :meth:`saesuite.cache.reader.ActivationCache.open`, which training and
evaluation call. It checks every shard's rows, dtype and sha256 and, on request, that it holds
no NaN or inf and that the rows of unreadable images are zeros; the same for each shard's image
embeddings (``embed-NNNNN.npy``) where the manifest has them (``embed_dim``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saesuite.cache.format import LABELS, bad_rows, read_manifest, record_name
from saesuite.errors import CacheError
from saesuite.files import sha256_file

FINITE_BLOCK = 16384  # rows checked for NaN/inf at a time: bounds verify's memory


def verify_cache(path: str | Path, *, checksums: bool = True, finite: bool = False, embeddings: bool = True) -> dict:
    """Check a cache directory against its manifest; return the manifest or raise :class:`CacheError`.

    Checks that every shard exists, holds ``[rows, d]`` of the stated dtype, that
    the rows add up to ``n`` and match ``labels.npy``, that ``bad_rows`` name distinct
    rows in range, and (``checksums``) its sha256; with ``finite`` also that no value
    is NaN or inf and that bad rows are zeros. The message names the shard at fault. The image
    embeddings are checked the same way, unless ``embeddings`` is False (a reader that does not use
    them: a job then needs only the shards among its inputs).
    """
    path = Path(path)
    manifest = read_manifest(path)
    bad = bad_rows(manifest)
    total = 0
    for index, record in enumerate(manifest["shards"]):
        for part in _parts(path, manifest, index, embeddings):
            _check_shard(path, manifest, index, part, first_row=total, bad=bad, checksums=checksums, finite=finite)
        total += record["rows"]
    if total != manifest["n"]:
        raise CacheError(f"{path}: shards hold {total} rows, the manifest says n={manifest['n']}; rebuild the cache")
    labels_path = path / LABELS
    if not labels_path.is_file():
        raise CacheError(f"{path}: {LABELS} is missing; rebuild the cache")
    labels = np.load(labels_path, mmap_mode="r")
    if labels.shape != (manifest["n"],):
        raise CacheError(f"{path}: {LABELS} has shape {labels.shape}, expected ({manifest['n']},); rebuild the cache")
    return manifest


def _parts(path: Path, manifest: dict, index: int, embeddings: bool) -> list[tuple[str, str, int]]:
    """``(file, sha256, width)`` of shard ``index``'s arrays: its rows, then its embeddings if the cache has
    them and ``embeddings``."""
    record = manifest["shards"][index]
    parts = [(record["file"], record["sha256"], manifest["d"])]
    if embeddings and "embed_dim" in manifest:
        if "embed" not in record:
            raise CacheError(f"{path}: shard {record['file']} lists no image embeddings though the manifest has "
                             "embed_dim; rebuild the cache")
        parts.append((record["embed"]["file"], record["embed"]["sha256"], manifest["embed_dim"]))
    return parts


def _check_shard(path: Path, manifest: dict, index: int, part: tuple[str, str, int], *, first_row: int,
                 bad: np.ndarray, checksums: bool, finite: bool) -> None:
    """Array ``part`` (file, sha256, width; :func:`_parts`) of shard ``index``: present, readable, of its shape
    and dtype, (``checksums``) its sha256 and (``finite``) finite values and zero bad rows. ``first_row``: the
    shard's first row in the cache."""
    record = manifest["shards"][index]
    file, sha256, width = part
    shard_path = path / file
    where = f"{path}: shard {file}"
    if not shard_path.is_file():
        raise CacheError(f"{where} is missing; delete the cache directory and rebuild it")
    try:
        arr = np.load(shard_path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise CacheError(f"{where} is unreadable or truncated ({err}); {_redo_advice(path, index)}") from err
    if arr.shape != (record["rows"], width):
        raise CacheError(f"{where} has shape {arr.shape}, the manifest says ({record['rows']}, {width}); rebuild it")
    if str(arr.dtype) != manifest["dtype"]:
        raise CacheError(f"{where} has dtype {arr.dtype}, the manifest says {manifest['dtype']}; rebuild it")
    if checksums and sha256_file(shard_path) != sha256:
        raise CacheError(f"{where} fails its sha256 check (corrupted or modified); {_redo_advice(path, index)}")
    if not finite:
        return
    for s in range(0, len(arr), FINITE_BLOCK):
        finite_rows = np.isfinite(arr[s : s + FINITE_BLOCK]).all(axis=1)
        if not finite_rows.all():
            row = s + int(np.argmin(finite_rows))
            raise CacheError(
                f"{where} holds NaN or inf values, first in its row {row} (row {first_row + row} of the cache); "
                f"{_redo_advice(path, index)}"
            )
    local = bad[(bad >= first_row) & (bad < first_row + record["rows"])] - first_row
    if len(local) and np.any(arr[local] != 0):
        raise CacheError(f"{where}: rows listed as bad images are not zeros; rebuild it")


def _redo_advice(path: Path, index: int) -> str:
    """How to redo damaged shard ``index``: alone while its record (``shard-NNNNN.json``) is still beside it,
    else (a finished cache: the records were folded into the manifest and removed) the whole cache."""
    record_file = path / record_name(index)
    if record_file.is_file():
        return f"delete it and {record_file.name} and rerun caching: only this shard is redone"
    return (f"delete the cache folder {path} and rerun caching (the workflow, or 'saesuite cache'); a finished "
            "cache keeps no per-shard records, so the whole cache is rebuilt")
