"""Reading an activation cache (the format of :mod:`saesuite.cache.format`) through memory maps.

Every consumer of a cache (training, evaluation, comparison) opens it with
:meth:`ActivationCache.open`, which verifies it first, and skips the rows of unreadable images
(:meth:`ActivationCache.valid_indices`). The images' CLIP embeddings, where the cache has them,
are read with :meth:`ActivationCache.embeddings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from saesuite.cache.format import LABELS, bad_rows
from saesuite.cache.verify import verify_cache
from saesuite.errors import CacheError


@dataclass
class ActivationCache:
    """Read access to a cache directory through memory maps; checks the manifest on open."""

    path: Path
    manifest: dict
    shards: list[np.ndarray]
    offsets: np.ndarray  # [n_shards + 1] first row of each shard
    embeds: list[np.ndarray] | None = None  # each shard's image embeddings [rows, embed_dim], if the cache has them

    @classmethod
    def open(cls, path: str | Path, *, checksums: bool = True, finite: bool = True,
             embeddings: bool = False) -> "ActivationCache":
        """Open a cache after :func:`~saesuite.cache.verify.verify_cache` (the check ``saesuite verify-cache``
        runs). The image embeddings are verified and opened only with ``embeddings`` (evaluation's naming):
        a training or comparison job reads, and declares, the shards alone."""
        path = Path(path)
        manifest = verify_cache(path, checksums=checksums, finite=finite, embeddings=embeddings)
        shards = [np.load(path / s["file"], mmap_mode="r") for s in manifest["shards"]]
        offsets = np.concatenate([[0], np.cumsum([s["rows"] for s in manifest["shards"]])]).astype(np.int64)
        embeds = ([np.load(path / s["embed"]["file"], mmap_mode="r") for s in manifest["shards"]]
                  if embeddings and "embed_dim" in manifest else None)
        return cls(path, manifest, shards, offsets, embeds)

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def d(self) -> int:
        return int(self.manifest["d"])

    def labels(self) -> np.ndarray:
        return np.load(self.path / LABELS)

    @property
    def n_bad(self) -> int:
        """Rows of images that could not be read (zeros in the shards)."""
        return len(self.manifest.get("bad_rows", []))

    def valid_mask(self) -> np.ndarray:
        """bool ``[n]``: True for rows of images that were read, False for the zero rows of bad images."""
        mask = np.ones(self.n, dtype=bool)
        mask[bad_rows(self.manifest)] = False
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
        return self._gather(self.shards, indices, self.d)

    def embeddings(self, indices: np.ndarray) -> np.ndarray:
        """The CLIP image embeddings of rows ``indices`` ``[b]`` as float32 ``[b, embed_dim]`` (not normalised;
        zeros for bad images), in the order given. A :class:`CacheError` for a cache that has none."""
        if self.embeds is None:
            raise CacheError(f"{self.path}: no image embeddings opened (its manifest has no embed_dim, or the cache "
                             "was opened without embeddings=True)")
        return self._gather(self.embeds, indices, int(self.manifest["embed_dim"]))

    def _gather(self, arrays: list[np.ndarray], indices: np.ndarray, width: int) -> np.ndarray:
        """Rows ``indices`` of the per-shard ``arrays`` as float32 ``[b, width]``, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), width), dtype=np.float32)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        for s in np.unique(which):
            mask = which == s
            local = indices[mask] - self.offsets[s]
            order = np.argsort(local)
            rows = arrays[s][local[order]]  # sorted reads are friendlier to the page cache
            block = np.empty_like(rows, dtype=np.float32)
            block[order] = rows
            out[mask] = block
        return out

    def read_all(self) -> np.ndarray:
        """The whole cache as float32 ``[n, d]`` (small caches only)."""
        return np.concatenate([np.asarray(s, dtype=np.float32) for s in self.shards]) if self.shards else np.empty((0, self.d), np.float32)
