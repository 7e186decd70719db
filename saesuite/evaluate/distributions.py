"""Each latent's activations over the whole split: histograms and images sampled from activation bands.

A feature page shows how a latent's positive activations spread over ``(0, M_i]`` (``M_i`` its
largest activation) and images from every part of that range, not only the top. Both place a
value relative to ``M_i``, which is known only once every row has been seen. So the evaluation's
single encoding pass appends each chunk's positive codes to a :class:`CodeSpill` (an anonymous
temporary file), and once ``M_i`` is known (the top-k's first value) :func:`activation_distributions`
reads the spill back chunk by chunk, with no encoding, into:

* ``histogram [F, bins]`` -- the number of activations ``v > 0`` in bin ``min(floor(bins v / M_i), bins - 1)``:
  equal-width bins on ``(0, M_i]``.
* activation bands -- band ``b`` of latent ``i`` holds the rows with ``min(floor(B v / M_i), B - 1) = b``
  (equal-width intervals of its activation range, as in Anthropic's feature pages), and from each band the
  ``s`` rows with the smallest key ``hash(seed, row, latent)`` are kept (:class:`BandSamples`): a uniform
  sample without replacement, drawn independently for each latent (bottom-``s`` sampling, a reservoir whose
  result does not depend on how the rows are chunked, and which the test checks against a direct selection).

Memory stays bounded by one chunk of codes plus ``[F, bins]`` counts and ``[F, B, s]`` samples (20 bytes a
slot: 5 MB for 16,384 latents x 5 bands x 3 images), whatever the number of rows. The spill takes 8 bytes
per positive code and 8 per row on disk (about 0.7 GB for 1.28M rows at L0 = 64) and is removed when closed.

``latent_stats.npz`` (written by :func:`saesuite.evaluate.evaluation.evaluate_sae`, read by
:func:`read_latent_stats`), for ``F`` latents, ``C`` classes, ``B`` bands of ``s`` samples; every
statistic is over the split's valid rows (bad images left out):

==================  ================  ===========================================================
``max_activation``  float32 ``[F]``     largest activation ``M_i`` (0: never fires)
``histogram``       int64 ``[F, bins]`` activation counts in equal bins on ``(0, M_i]`` (edges ``M_i * j / bins``)
``class_activation`` float64 ``[C, F]`` activation mass per class (the label distribution)
``class_fire_count`` int64 ``[C, F]``   inputs of each class the latent fires on
``band_edges``      float32 ``[F, B+1]`` ``M_i * b / B``
``band_counts``     int64 ``[F, B]``    rows in each band
``band_rows``       int64 ``[F, B, s]`` sampled rows, in key order (``-1``: the band has fewer than ``s`` rows)
``band_values``     float32 ``[F, B, s]`` their activations (0 where no row)
``band_seed``       int64 ``[]``        seed of the sampling keys
==================  ================  ===========================================================
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

LATENT_STATS_NPZ = "latent_stats.npz"
SHAPES = {  # array -> its dimensions (see the module docstring)
    "max_activation": ("F",), "histogram": ("F", "bins"), "class_activation": ("C", "F"),
    "class_fire_count": ("C", "F"), "band_edges": ("F", "B+1"), "band_counts": ("F", "B"),
    "band_rows": ("F", "B", "s"), "band_values": ("F", "B", "s"), "band_seed": (),
}
_EMPTY = np.uint64(2**64 - 1)  # key of an empty sample slot; real keys are below 2**63
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), 0x9E3779B97F4A7C15


class CodeSpill:
    """The positive codes of the split's valid rows, appended chunk by chunk to an anonymous temporary
    file in ``directory`` (it has no name, so nothing is left behind however the run ends) and read back
    in the same chunks. Per chunk: row ids and positive-code counts (int32 ``[b]``), then the latents
    (int32) and values (float32) of its positive codes, row by row."""

    def __init__(self, directory: str | Path):
        self._file = tempfile.TemporaryFile(dir=directory)
        self._chunks: list[tuple[int, int]] = []  # (rows, positive codes) of each chunk

    def append(self, rows: np.ndarray, f: torch.Tensor) -> None:
        """``f [b, F]`` codes of the split's rows ``rows [b]``."""
        row, col = torch.nonzero(f > 0, as_tuple=True)
        parts = (np.asarray(rows, np.int32), torch.bincount(row, minlength=len(f)).cpu().numpy().astype(np.int32),
                 col.cpu().numpy().astype(np.int32), f[row, col].float().cpu().numpy())
        for part in parts:
            self._file.write(part.tobytes())
        self._chunks.append((len(rows), len(col)))

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, latents, values)`` of every positive code, one written chunk at a time (row order)."""
        self._file.seek(0)
        for n_rows, n_codes in self._chunks:
            rows = np.frombuffer(self._file.read(4 * n_rows), np.int32).astype(np.int64)
            counts = np.frombuffer(self._file.read(4 * n_rows), np.int32)
            cols = np.frombuffer(self._file.read(4 * n_codes), np.int32).astype(np.int64)
            values = np.frombuffer(self._file.read(4 * n_codes), np.float32)
            yield np.repeat(rows, counts), cols, values

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CodeSpill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bin_index(values: np.ndarray, top: np.ndarray, n_bins: int) -> np.ndarray:
    """``min(floor(n_bins v / M), n_bins - 1)`` in float32 (``values``, ``top`` the latent's ``M``, per code)."""
    return np.minimum((values / top * n_bins).astype(np.int64), n_bins - 1)


def _scale(max_activation: np.ndarray) -> np.ndarray:
    """``M_i``, with 1 for latents that never fire (no value is ever placed against it)."""
    return np.where(max_activation > 0, max_activation, np.float32(1)).astype(np.float32)


def latent_histograms(codes: Iterator[tuple[np.ndarray, np.ndarray]], max_activation: np.ndarray, bins: int) -> np.ndarray:
    """``[F, bins]`` counts of each latent's positive activations in equal bins on ``(0, M_i]``.

    ``codes`` yields ``(latents, values)`` of positive codes; ``max_activation [F]`` is ``M_i``
    (a value above it lands in the last bin).
    """
    n_latents = len(max_activation)
    top = _scale(max_activation)
    counts = np.zeros(n_latents * bins, np.int64)
    for cols, values in codes:
        counts += np.bincount(cols * bins + bin_index(values, top[cols], bins), minlength=n_latents * bins)
    return counts.reshape(n_latents, bins)


def sample_keys(rows: np.ndarray, latents: np.ndarray, n_latents: int, seed: int) -> np.ndarray:
    """Random-looking uint64 keys below 2**63, one per ``(row, latent)``, the same whatever the chunking.

    splitmix64's finaliser (a bijection of uint64) of ``row * n_latents + latent`` offset by the seed, so
    distinct pairs get distinct keys before the final halving.
    """
    z = rows.astype(np.uint64) * np.uint64(n_latents) + latents.astype(np.uint64) + np.uint64((seed * _GOLDEN) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return (z ^ (z >> np.uint64(31))) >> np.uint64(1)


class BandSamples:
    """Per latent and band, the ``samples`` rows with the smallest :func:`sample_keys` seen so far, and the band's count.

    ``max_activation [F]`` fixes the band edges beforehand. Candidates that do not beat their band's
    current ``samples``-th key are dropped at once; the rest are merged with the kept ones by one sort
    by (band, key, row), so the result after every chunk is the bottom-``samples`` of all rows so far.
    """

    def __init__(self, max_activation: np.ndarray, bands: int, samples: int, seed: int):
        self.max_activation, self.bands, self.samples, self.seed = max_activation, bands, samples, seed
        self.top = _scale(max_activation)
        groups = len(max_activation) * bands
        self.keys = np.full((groups, samples), _EMPTY, np.uint64)
        self.rows = np.full((groups, samples), -1, np.int64)
        self.values = np.zeros((groups, samples), np.float32)
        self.counts = np.zeros(groups, np.int64)

    def update(self, rows: np.ndarray, latents: np.ndarray, values: np.ndarray) -> None:
        """Positive codes: ``values [m]`` of ``latents [m]`` on ``rows [m]``."""
        group = latents * self.bands + bin_index(values, self.top[latents], self.bands)
        self.counts += np.bincount(group, minlength=len(self.counts))
        key = sample_keys(rows, latents, len(self.top), self.seed)
        beats = key < self.keys[group, -1]
        if not beats.any():
            return
        touched = np.unique(group[beats])  # each brings its `samples` kept slots into the merge
        group = np.concatenate([np.repeat(touched, self.samples), group[beats]])
        key = np.concatenate([self.keys[touched].ravel(), key[beats]])
        row = np.concatenate([self.rows[touched].ravel(), rows[beats]])
        value = np.concatenate([self.values[touched].ravel(), values[beats]])
        order = np.lexsort((row, key, group))
        group = group[order]
        rank = np.arange(len(order)) - np.searchsorted(group, group)
        keep = rank < self.samples
        slot = (group[keep], rank[keep])
        self.keys[slot], self.rows[slot], self.values[slot] = key[order][keep], row[order][keep], value[order][keep]

    def result(self) -> dict[str, np.ndarray]:
        n, b, s = len(self.top), self.bands, self.samples
        fractions = (np.arange(b + 1) / b).astype(np.float32)
        return {
            "band_edges": self.max_activation[:, None].astype(np.float32) * fractions,
            "band_counts": self.counts.reshape(n, b),
            "band_rows": self.rows.reshape(n, b, s),
            "band_values": self.values.reshape(n, b, s),
            "band_seed": np.int64(self.seed),
        }


def activation_distributions(spill: CodeSpill, max_activation: np.ndarray, bins: int, bands: int, samples: int,
                             seed: int) -> dict:
    """One pass over ``spill``: ``max_activation``, ``histogram`` and the band arrays of ``latent_stats.npz``."""
    max_activation = np.asarray(max_activation, np.float32)
    sampler = BandSamples(max_activation, bands, samples, seed)

    def codes():
        for rows, cols, values in spill.chunks():
            sampler.update(rows, cols, values)
            yield cols, values

    histogram = latent_histograms(codes(), max_activation, bins)
    return {"max_activation": max_activation, "histogram": histogram, **sampler.result()}


def read_latent_stats(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``latent_stats.npz``, checked for the documented names and consistent shapes."""
    with np.load(path) as npz:
        stats = {name: npz[name] for name in npz.files}
    missing = sorted(set(SHAPES) - set(stats))
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (an evaluation older than this format?)")
    sizes: dict[str, int] = {}
    for name, dims in SHAPES.items():
        shape = stats[name].shape
        if len(shape) != len(dims) or any(sizes.setdefault(d, s) != s for d, s in zip(dims, shape)):
            raise ValueError(f"{path}: {name} has shape {shape}, not {dims} as the other arrays")
    if sizes["B+1"] != sizes["B"] + 1:
        raise ValueError(f"{path}: {sizes['B+1']} band edges for {sizes['B']} bands")
    return stats
