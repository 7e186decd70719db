"""Planted ground truth: synthetic activations from a known sparse dictionary.

Each sample is a non-negative combination of exactly ``k`` of ``n_true`` unit-norm
directions in ``d`` dimensions (plus optional Gaussian noise). Features are drawn
with power-law frequencies (feature ``i`` is chosen with weight ``(i + 1)^-alpha``,
sampled without replacement per row), coefficients are uniform in
``[coef_low, coef_high]``. An SAE that recovers the dictionary has, for each true
direction, a decoder row at cosine near 1.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from saesuite.cache.format import write_array_cache as cache_write_array_cache
from saesuite.files import save_npy_atomic


@dataclass(frozen=True)
class PlantedSpec:
    d: int = 64
    n_true: int = 256
    k: int = 4
    alpha: float = 0.5
    coef_low: float = 0.5
    coef_high: float = 1.5
    noise: float = 0.0
    seed: int = 0


def planted_dictionary(spec: PlantedSpec) -> np.ndarray:
    """The true features: ``[n_true, d]`` unit rows (fixed by ``spec.seed``)."""
    rng = np.random.default_rng([spec.seed, 0])
    true = rng.normal(size=(spec.n_true, spec.d))
    return true / np.linalg.norm(true, axis=1, keepdims=True)


def planted_codes(spec: PlantedSpec, n: int, stream: int) -> np.ndarray:
    """Sparse codes ``[n, n_true]`` with exactly ``k`` positive entries per row; ``stream`` picks the sample set."""
    rng = np.random.default_rng([spec.seed, 1, stream])
    log_weight = -spec.alpha * np.log(np.arange(1, spec.n_true + 1))
    gumbel = rng.gumbel(size=(n, spec.n_true))
    chosen = np.argpartition(-(log_weight + gumbel), spec.k - 1, axis=1)[:, : spec.k]  # weighted, no replacement
    codes = np.zeros((n, spec.n_true))
    np.put_along_axis(codes, chosen, rng.uniform(spec.coef_low, spec.coef_high, size=(n, spec.k)), axis=1)
    return codes


def planted_activations(spec: PlantedSpec, n: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, d] float32, codes [n, n_true])`` for one sample set."""
    codes = planted_codes(spec, n, stream)
    x = codes @ planted_dictionary(spec)
    if spec.noise:
        x += np.random.default_rng([spec.seed, 2, stream]).normal(scale=spec.noise, size=x.shape)
    return x.astype(np.float32), codes


def write_array_cache(path: str | Path, x: np.ndarray, *, labels: np.ndarray | None = None, n_shards: int = 1,
                      model: str = "planted", hook: str = "planted", dataset: str = "planted",
                      split: str = "train", extra: dict | None = None, bad_rows: list[dict] = ()) -> Path:
    """Write ``x [n, d]`` as an activation cache (:func:`saesuite.cache.format.write_array_cache`) named
    as planted data; ``extra``: more manifest fields."""
    meta = {"model": model, "pretrained": None, "hook": hook, "dataset": dataset, "split": split, "classes": [],
            **(extra or {})}
    return cache_write_array_cache(path, x, meta, labels=labels, n_shards=n_shards, bad_rows=bad_rows)


def write_planted_cache(spec: PlantedSpec, out_dir: str | Path, n: int, split: str, n_shards: int = 2) -> Path:
    """A planted cache for ``split`` (train and eval draw different samples) plus ``dictionary.npy``."""
    stream = {"train": 0}.get(split, 1)
    x, codes = planted_activations(spec, n, stream)
    labels = codes.argmax(axis=1)  # the strongest true feature: a label for label-based metrics
    out = write_array_cache(out_dir, x, labels=labels, n_shards=n_shards, split=split,
                            extra={"planted": asdict(spec)})
    save_npy_atomic(Path(out_dir) / "dictionary.npy", planted_dictionary(spec))
    return out


@dataclass(frozen=True)
class SyntheticRows:
    """Planted rows that fill a cache past its images, so a rehearsal (config/rehearsal.yaml) has the
    paper's row counts from a few generated images: the cache's rows ``0..images`` are the backbone's,
    ``images..rows`` are planted activations of the model's width, and the manifest's ``synthetic``
    says which. Every model draws the same codes for a row (the same "image" has the same causes) from
    its own dictionary, so two models' SAEs have features to share. Rows are drawn in blocks of
    :data:`BLOCK` (a block's draw depends only on its index), so any shard makes the same rows."""

    rows: int  # the cache's row count, its images first
    spec: PlantedSpec  # d is set to the model's width by :meth:`for_width`
    stream: int  # the split's sample set
    dictionary_seed: int  # the model's own directions

    BLOCK = 4096

    @classmethod
    def from_config(cls, section: dict | None, split: str, model: str) -> "SyntheticRows | None":
        """The config's ``cache.synthetic`` (``rows: {split: n}`` and PlantedSpec options but ``d``) for one
        split of one model's cache; None without a section or a row count for the split."""
        if not section or split not in section["rows"]:
            return None
        options = {key: value for key, value in section.items() if key != "rows"}
        return cls(int(section["rows"][split]), PlantedSpec(**options), zlib.crc32(split.encode()),
                   zlib.crc32(model.encode()))

    def for_width(self, d: int) -> "SyntheticRows":
        return replace(self, spec=replace(self.spec, d=d))

    def describe(self, images: int) -> dict:
        """The manifest's ``synthetic`` record."""
        return {"rows": [images, max(self.rows, images)], "source": "planted",
                "what": "rows past the images are synthetic planted activations, not a model's",
                "planted": asdict(self.spec), "stream": self.stream, "dictionary_seed": self.dictionary_seed}

    def block(self, start: int, stop: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start..stop``: ``(x [rows, d] float32, labels [rows])``, a row's label its strongest true
        feature modulo ``n_classes`` (so label-based metrics have classes to count)."""
        dictionary = planted_dictionary(replace(self.spec, seed=self.dictionary_seed))
        xs, labels = [], []
        for b in range(start // self.BLOCK, (stop - 1) // self.BLOCK + 1):
            codes = planted_codes(self.spec, self.BLOCK, self.stream * 2**20 + b)
            lo, hi = max(start - b * self.BLOCK, 0), min(stop - b * self.BLOCK, self.BLOCK)
            x = sp.csr_matrix(codes[lo:hi]) @ dictionary
            if self.spec.noise:
                x += np.random.default_rng([self.spec.seed, 2, self.stream * 2**20 + b]).normal(
                    scale=self.spec.noise, size=(self.BLOCK, self.spec.d))[lo:hi]
            xs.append(x)
            labels.append(codes[lo:hi].argmax(axis=1) % max(n_classes, 1))
        return np.concatenate(xs).astype(np.float32), np.concatenate(labels)


    def fill(self, rows: np.ndarray, labels: np.ndarray, start: int, images: int, n_classes: int,
             progress: Callable[[int], object] = lambda n: None) -> None:
        """Fill a shard's rows past the ``images`` (``rows [m, d]`` and ``labels [m]`` hold rows ``start..start + m``)
        with planted rows, a block at a time (memory bounded by the block); ``progress(rows done)``."""
        for first in range(max(start, images), start + len(rows), self.BLOCK):
            last = min(first + self.BLOCK, start + len(rows))
            x, labels[first - start : last - start] = self.block(first, last, n_classes)
            rows[first - start : last - start] = x.astype(rows.dtype)
            progress(last - first)


def recovery(true: np.ndarray, W_dec: np.ndarray, threshold: float = 0.9) -> dict:
    """How well decoder rows ``W_dec [F, d]`` recover true features ``true [n_true, d]``.

    For each true feature, the best cosine with any decoder row; reported as their
    mean and the fraction above ``threshold``.
    """
    t = true / np.linalg.norm(true, axis=1, keepdims=True)
    w = W_dec / np.maximum(np.linalg.norm(W_dec, axis=1, keepdims=True), 1e-12)
    best = (t @ w.T).max(axis=1)
    return {"mean_best_cosine": float(best.mean()), f"fraction_above_{threshold}": float((best > threshold).mean()),
            "threshold": threshold, "n_true": int(len(t)), "d_sae": int(len(w)), "best_cosine": best.tolist()}

