"""Generic file I/O that every stage shares: a file's sha256, and JSON and ``.npy`` files written
atomically (through :func:`saesuite.outputs.atomic_path`, so a reader never sees half a file)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from saesuite.outputs import atomic_path

HASH_BLOCK = 1 << 22  # bytes hashed at a time: bounds the memory of hashing a large file


def sha256_file(path: str | Path, chunk: int | None = None) -> str:
    """Hex sha256 of a file, read ``chunk`` bytes (default :data:`HASH_BLOCK`) at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk or HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, obj) -> None:
    """Write ``obj`` to ``path`` as JSON (indented, sorted keys, a final newline), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` in ``.npy`` format (as :func:`numpy.save`), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
