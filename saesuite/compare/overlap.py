"""Top-k image sets of SAE features and their overlap across two SAEs (the plan's metric).

A feature's top-k images are the ``k`` images with the largest positive activation,
ties broken toward the lower image index (the rule of :class:`saesuite.evaluate.topk.StreamingTopK`).
A feature is *alive* here when it fires (``f > 0``) on at least ``k`` images; the
others are *dead* for this metric, excluded and counted. Overlap of features ``i`` of A
and ``j`` of B is ``|topk_A(i) ∩ topk_B(j)| / k``. Two independent random k-sets out of
``n`` images share ``k^2 / n`` images in expectation, so the chance overlap of one pair
is ``k / n``.

The ``[F_A, F_B]`` overlap counts are a product of two sparse 0/1 indicator matrices
``[F, n]`` with ``k`` ones per row, done in row blocks of A; only non-zero counts are
stored, so 16,384 x 16,384 features never make a dense matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def sparse_topk(codes: sp.spmatrix, k: int) -> np.ndarray:
    """``[F, k]`` rows of the ``k`` largest positive entries of each column of ``codes [n, F]``.

    Ties go to the lower row index; ``-1`` pads a feature with fewer than ``k`` positive rows.
    """
    c = sp.coo_matrix(codes)
    pos = c.data > 0
    rows, cols, vals = c.row[pos], c.col[pos], c.data[pos]
    order = np.lexsort((rows, -vals, cols))  # by column, then value descending, then row ascending
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(cols, np.arange(codes.shape[1]))
    rank = np.arange(len(cols)) - starts[cols]
    keep = rank < k
    out = np.full((codes.shape[1], k), -1, np.int64)
    out[cols[keep], rank[keep]] = rows[keep]
    return out


def alive_features(indices: np.ndarray) -> np.ndarray:
    """Boolean ``[F]``: features with a full top-k (positive on at least ``k`` images)."""
    return (indices >= 0).all(axis=1)


def topk_indicator(indices: np.ndarray, n: int) -> sp.csr_matrix:
    """Sparse ``[F, n]`` 0/1 matrix with a 1 at each (feature, top-k row); ``-1`` entries are skipped."""
    rows, cols = np.nonzero(indices >= 0)
    return sp.csr_matrix((np.ones(len(rows), np.int32), (rows, indices[rows, cols])), shape=(len(indices), n))


def overlap_counts(indices_a: np.ndarray, indices_b: np.ndarray, n: int, block: int = 4096) -> sp.csr_matrix:
    """Sparse ``[F_A, F_B]`` counts ``|topk_A(i) ∩ topk_B(j)|`` (rows of A in blocks of ``block``)."""
    ib_t = topk_indicator(indices_b, n).T.tocsr()
    parts = [topk_indicator(indices_a[s : s + block], n) @ ib_t for s in range(0, len(indices_a), block)]
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, len(indices_b)), dtype=np.int32)


def best_overlap(counts: sp.csr_matrix, k: int, axis: int = 1) -> np.ndarray:
    """Best overlap ``max_j counts[i, j] / k`` of every row (``axis=1``) or column (``axis=0``)."""
    if counts.nnz == 0:
        return np.zeros(counts.shape[1 - axis])
    return np.asarray(counts.max(axis=axis).todense()).ravel() / k


def topk_overlap(indices_a: np.ndarray, indices_b: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best overlap of each alive feature of A with any alive feature of B.

    ``indices_* [F, k]`` top-k rows (``-1`` padded). Returns ``(best [F_A_alive], alive_a [F_A])``.
    """
    alive_a, alive_b = alive_features(indices_a), alive_features(indices_b)
    return best_overlap(overlap_counts(indices_a[alive_a], indices_b[alive_b], n), k), alive_a


def relabel_rows(indices: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Top-k row indices of ``codes[perm]`` from those of ``codes`` (``-1`` kept): old row ``r`` is new ``perm^-1[r]``."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return np.where(indices >= 0, inverse[np.maximum(indices, 0)], -1)
