"""Comparing two models' SAEs and activations over the same images.

* Top-k image overlap (the plan's metric): for each alive feature of A, the best
  ``|topk_A ∩ topk_B| / k`` over the features of B, averaged over alive features of
  A; and the same from B to A. A feature is alive here when it fires (``f > 0``)
  on at least ``k`` images. Its top-k images are the ``k`` largest activations,
  ties broken toward the lower image index.
* Linear CKA between the two models' raw hooked activations (feature-space
  formula, centred, float64): ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from saesuite.cache import ActivationCache, write_json_atomic
from saesuite.errors import ConfigError
from saesuite.evaluate import encode_chunks
from saesuite.sae import load_sae
from saesuite.schema import validate
from saesuite.topk import StreamingTopK


def topk_indicator(indices: np.ndarray, n: int) -> sp.csr_matrix:
    """Sparse ``[F, n]`` 0/1 matrix with a 1 at each (latent, top-k row); ``-1`` entries are skipped."""
    rows, cols = np.nonzero(indices >= 0)
    return sp.csr_matrix((np.ones(len(rows), np.int32), (rows, indices[rows, cols])), shape=(len(indices), n))


def topk_overlap(indices_a: np.ndarray, indices_b: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best overlap of each alive feature of A with any alive feature of B.

    ``indices_* [F, k]`` top-k rows (``-1`` padded). Returns ``(best [F_A_alive], alive_a [F_A])``
    with ``best = max_j |topk_A(i) ∩ topk_B(j)| / k``, from one sparse product.
    """
    alive_a = (indices_a >= 0).all(axis=1)
    alive_b = (indices_b >= 0).all(axis=1)
    ia = topk_indicator(indices_a[alive_a], n)
    ib = topk_indicator(indices_b[alive_b], n)
    counts = (ia @ ib.T).tocsr()  # [A_alive, B_alive] shared top-k images
    best = np.zeros(ia.shape[0])
    if counts.nnz:
        best = np.asarray(counts.max(axis=1).todense()).ravel() / k
    return best, alive_a


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x [n, d1]`` and ``y [n, d2]`` (centred, float64, feature-space formula)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(x.T @ y) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


class StreamingLinearCKA:
    """Linear CKA accumulated over row-aligned chunks: sums of ``x``, ``y`` and their cross-products."""

    def __init__(self, dx: int, dy: int):
        self.n = 0
        self.sx, self.sy = np.zeros(dx), np.zeros(dy)
        self.xx, self.yy, self.xy = np.zeros((dx, dx)), np.zeros((dy, dy)), np.zeros((dx, dy))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y

    def result(self) -> float:
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xx - self.n * np.outer(mx, mx)
        cyy = self.yy - self.n * np.outer(my, my)
        cxy = self.xy - self.n * np.outer(mx, my)
        return float(np.linalg.norm(cxy) ** 2 / (np.linalg.norm(cxx) * np.linalg.norm(cyy)))


def check_aligned(a: ActivationCache, b: ActivationCache) -> None:
    """Both caches must hold the same images in the same order."""
    ma, mb = a.manifest, b.manifest
    same = ma["dataset"] == mb["dataset"] and ma["split"] == mb["split"] and a.n == b.n
    if not same or not np.array_equal(a.labels(), b.labels()):
        raise ConfigError(
            f"caches {a.path} ({ma['dataset']}/{ma['split']}, n={a.n}) and {b.path} "
            f"({mb['dataset']}/{mb['split']}, n={b.n}) do not hold the same images in the same order; "
            "compare caches of one dataset split"
        )


def sae_topk(sae_dir: str | Path, cache: ActivationCache, k: int, chunk_rows: int, device: str) -> np.ndarray:
    """Top-k row indices ``[F, k]`` of every latent of the SAE over the cache (``-1`` padded)."""
    sae, _ = load_sae(sae_dir, device)
    top = StreamingTopK(sae.d_sae, k)
    for start, _, f, _ in encode_chunks(sae, cache, chunk_rows, device):
        top.update(start, f)
    return top.indices.numpy()


def compare_saes(
    cache_a: str | Path,
    sae_a: str | Path,
    cache_b: str | Path,
    sae_b: str | Path,
    out_dir: str | Path,
    *,
    k: int = 9,
    chunk_rows: int = 4096,
    device: str = "cpu",
) -> dict:
    """Write ``comparison.json`` (schema-checked) and ``topk_overlap.npz`` for two models."""
    ca, cb = ActivationCache.open(cache_a), ActivationCache.open(cache_b)
    check_aligned(ca, cb)
    if k > ca.n:
        raise ConfigError(f"top-k with k={k} needs at least k images; the caches hold {ca.n}")
    top_a = sae_topk(sae_a, ca, k, chunk_rows, device)
    top_b = sae_topk(sae_b, cb, k, chunk_rows, device)
    best_ab, alive_a = topk_overlap(top_a, top_b, ca.n, k)
    best_ba, alive_b = topk_overlap(top_b, top_a, ca.n, k)
    cka = StreamingLinearCKA(ca.d, cb.d)
    for (_, xa), (_, xb) in zip(ca.chunks(chunk_rows), cb.chunks(chunk_rows)):
        cka.update(xa, xb)

    def mean_or_none(v: np.ndarray):
        return float(v.mean()) if len(v) else None

    result = {
        "model_a": ca.manifest["model"],
        "hook_a": ca.manifest["hook"],
        "model_b": cb.manifest["model"],
        "hook_b": cb.manifest["hook"],
        "dataset": ca.manifest["dataset"],
        "split": ca.manifest["split"],
        "n_images": ca.n,
        "k": k,
        "alive_a": int(alive_a.sum()),
        "alive_b": int(alive_b.sum()),
        "latents_a": int(len(alive_a)),
        "latents_b": int(len(alive_b)),
        "topk_overlap_a_to_b": mean_or_none(best_ab),
        "topk_overlap_b_to_a": mean_or_none(best_ba),
        "topk_overlap_chance": k / ca.n,
        "linear_cka": cka.result(),
    }
    validate(result, "comparison")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "topk_overlap.npz", best_a_to_b=best_ab, best_b_to_a=best_ba, topk_a=top_a, topk_b=top_b)
    write_json_atomic(out_dir / "comparison.json", result)
    return result
