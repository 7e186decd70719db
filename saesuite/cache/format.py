"""The activation cache's format: the contract between its writers and every reader.

Layout of a cache directory (docs/architecture.md, "Contracts")::

    manifest.json        n, d, dtype, precision, model, pretrained, init_seed, hook, dataset, split,
                         classes, embed_dim, shards: [{file, rows, sha256, embed: {file, sha256}}, ...],
                         n_bad, bad_rows
    shard-00000.npy      [rows, d] float16 or float32, rows of images in index order
    embed-00000.npy      [rows, embed_dim] of the same dtype: each image's final CLIP image embedding
    labels.npy           int64 [n]

Row i of the concatenated shards is image i of the dataset. An image that could not be read is
a row of zeros (so rows stay aligned with the dataset index, and two caches of the same images
stay row-aligned), listed in ``bad_rows: [{row, path, error}]``; readers skip those rows.

The image embeddings (the vision tower's output, what ``encode_image`` returns before
normalising; for an ``attnpool`` hook the same values as the shard) come from the same forward
pass as the hook; latents are named in words from them (:mod:`saesuite.evaluate.naming`). A cache
without them (arrays from elsewhere, unless given) has no ``embed_dim`` and no shard ``embed``.
``manifest.json`` is written last: its presence means the cache is whole.

While a cache is being written, each shard also has its labels (``labels-00000.npy``) and its
record (``shard-00000.json``: ``{file, rows, start, sha256, bad_rows, meta}``, written once the
shard is complete); :func:`write_manifest` folds them into ``labels.npy`` and the manifest.

The names of a shard's files are made here alone: :data:`SHARD_FILES` holds their patterns,
whose ``{index}`` placeholder is also the workflow's wildcard (``rules/activations.smk``), and
:data:`INDEX_REGEX` what an index looks like.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saesuite.errors import CacheError
from saesuite.files import save_npy_atomic, sha256_file, write_json_atomic
from saesuite.outputs import output_lock

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from saesuite.models.backbones import Backbone, HookSpec

MANIFEST = "manifest.json"
LABELS = "labels.npy"
DTYPES = ("float16", "float32")
#: keys every manifest has (the readers' minimum; a cache written by a backbone has all the above)
MANIFEST_KEYS = ("n", "d", "dtype", "model", "hook", "shards")

INDEX_DIGITS = 5
INDEX_REGEX = rf"\d{{{INDEX_DIGITS}}}"
#: a shard's files by kind: its rows, its labels and its record (the last two while being written)
SHARD_FILES = {"npy": "shard-{index}.npy", "embed": "embed-{index}.npy", "labels": "labels-{index}.npy",
               "record": "shard-{index}.json"}


def shard_file(kind: str, index: int) -> str:
    """The file name of shard ``index``'s ``kind`` file (a key of :data:`SHARD_FILES`)."""
    return SHARD_FILES[kind].format(index=f"{index:0{INDEX_DIGITS}d}")


def shard_name(index: int) -> str:
    return shard_file("npy", index)


def record_name(index: int) -> str:
    return shard_file("record", index)


def labels_name(index: int) -> str:
    return shard_file("labels", index)


def embed_name(index: int) -> str:
    return shard_file("embed", index)


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
        "embed_dim": backbone.embed_dim,
    }


def finish_cache(out_dir: Path, meta: dict, shards: list[dict], labels: np.ndarray, bad: list[dict]) -> dict:
    """Write ``labels.npy`` and, last, ``manifest.json`` (the manifest's fields, in one place)."""
    save_npy_atomic(out_dir / LABELS, labels)
    manifest = dict(meta, n=int(len(labels)), shards=shards, n_bad=len(bad), bad_rows=bad)
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


def write_manifest(out_dir: str | Path, n_shards: int) -> dict:
    """Gather the shard records into ``manifest.json`` and ``labels.npy`` (the last step).

    Every shard must be complete, describe the same model, hook and split, and
    the shards must tile the rows without gap or overlap. The shards' unreadable
    images are gathered into ``bad_rows`` (``[{row, path, error}]``) and ``n_bad``.
    """
    out_dir = Path(out_dir)
    with output_lock(out_dir, owns=lambda name: name in (MANIFEST, LABELS)):
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
        records.append({key: record[key] for key in ("file", "rows", "sha256", "embed") if key in record})
        bad.extend(record.get("bad_rows", []))
        labels.append(np.load(out_dir / labels_name(index)))
    all_labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
    return finish_cache(out_dir, meta, records, all_labels, bad)


def write_array_cache(out_dir: str | Path, x: np.ndarray, meta: dict, *, labels: np.ndarray | None = None,
                      n_shards: int = 1, bad_rows: list[dict] = (), embed: np.ndarray | None = None) -> Path:
    """Write activations ``x [n, d]`` that did not come from a backbone (the planted benchmark,
    tests) as a cache: ``n_shards`` shards, ``labels.npy`` (zeros without ``labels``), the
    manifest with ``meta`` (model, pretrained, hook, dataset, split, classes; d and dtype are
    taken from ``x``). ``bad_rows``: ``[{row, path, error}]`` to mark as unreadable images;
    ``embed [n, e]``: the images' CLIP embeddings, if there are any (stored in ``x``'s dtype)."""
    out_dir = Path(out_dir)
    with output_lock(out_dir):
        shards = []
        for i, part in enumerate(np.array_split(np.arange(len(x)), n_shards)):
            path = out_dir / shard_name(i)
            save_npy_atomic(path, x[part])
            shards.append({"file": path.name, "rows": len(part), "sha256": sha256_file(path)})
            if embed is not None:
                save_npy_atomic(out_dir / embed_name(i), np.asarray(embed[part], x.dtype))
                shards[-1]["embed"] = {"file": embed_name(i), "sha256": sha256_file(out_dir / embed_name(i))}
        labels = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels, np.int64)
        meta = {**meta, "d": int(x.shape[1]), "dtype": str(x.dtype)}
        if embed is not None:
            meta["embed_dim"] = int(embed.shape[1])
        finish_cache(out_dir, meta, shards, labels, list(bad_rows))
    return out_dir


def read_manifest(path: Path) -> dict:
    """The manifest of the cache directory ``path``, checked: present, JSON, with :data:`MANIFEST_KEYS`,
    and ``bad_rows`` naming distinct rows in range. Raises :class:`CacheError` saying how to repair it."""
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
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise CacheError(f"{manifest_path}: missing keys {missing}; delete the cache and rebuild it")
    bad = bad_rows(manifest)
    if len(bad) and (bad[0] < 0 or bad[-1] >= manifest["n"] or np.any(np.diff(bad) == 0)):
        raise CacheError(f"{manifest_path}: bad_rows must name distinct rows in 0..{manifest['n'] - 1}; rebuild the cache")
    return manifest


def bad_rows(manifest: dict) -> np.ndarray:
    """int64, ascending: the rows of the images that could not be read (zeros in the shards)."""
    return np.array(sorted(int(b["row"]) for b in manifest.get("bad_rows", [])), dtype=np.int64)
