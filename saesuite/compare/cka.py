"""Centred kernel alignment (CKA) between two representations of the same ``n`` images.

All sums are float64. ``x [n, p]`` and ``y [n, q]`` may be dense arrays or
``scipy.sparse`` matrices (SAE codes); wide sparse inputs are multiplied in
column blocks so that no ``[p, q]`` matrix is ever held whole.

* ``linear_cka``: biased (Kornblith et al. 2019), feature-space formula on centred
  data, ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``; equals the Gram form
  ``<HKH, HLH> / (||HKH|| ||HLH||)`` with ``K = XX^T``.
* ``debiased_cka``: the same ratio with the unbiased HSIC estimator of Song et al.
  (2012) for linear kernels, computed without an ``[n, n]`` Gram matrix:
  ``HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``
  with ``K~`` the Gram matrix with its diagonal set to zero. Near 0 for independent
  data at any width, where biased CKA is not.
* ``rbf_cka``: Gaussian kernel with bandwidth ``sigma = fraction * median`` pairwise
  distance, minibatch CKA (Nguyen et al. 2021: unbiased HSIC averaged over disjoint
  batches of rows, then the ratio) so that memory is ``[batch, batch]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

Matrix = np.ndarray | sp.spmatrix | sp.sparray


def _dense(block) -> np.ndarray:
    return block.toarray() if sp.issparse(block) else np.asarray(block)


@dataclass(frozen=True)
class CrossMoments:
    """Sufficient statistics of ``x [n, p]`` and ``y [n, q]`` for linear CKA, biased and unbiased.

    ``raw = ||X^T Y||_F^2``, ``centred = ||Xc^T Yc||_F^2``, ``diag = sum_i |x_i|^2 |y_i|^2``,
    ``row_dot = (X s_x - a) . (Y s_y - b)`` with ``s = column sums`` and ``a, b`` squared row norms.
    """

    n: int
    raw: float
    centred: float
    diag: float
    row_dot: float
    ones_k: float  # 1' K~ 1
    ones_l: float  # 1' L~ 1


def _row_sq_norms(x: Matrix) -> np.ndarray:
    if sp.issparse(x):
        return np.asarray(x.multiply(x).sum(axis=1), np.float64).ravel()
    return np.einsum("ij,ij->i", x, x)


def product_frobenius(x: Matrix, y: Matrix, block: int = 2048, on_block=None) -> tuple[float, float]:
    """``(||X^T Y||_F^2, ||Xc^T Yc||_F^2)`` over column blocks of ``x``; ``Xc`` is ``x`` centred.

    ``on_block(start, centred_block [b, q])`` is called with each centred block of ``Xc^T Yc``
    (used to read off correlations in the same pass).
    """
    n = x.shape[0]
    mx = np.asarray(x.mean(axis=0), np.float64).ravel()
    my = np.asarray(y.mean(axis=0), np.float64).ravel()
    xc = sp.csc_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, np.float64)
    yt = sp.csr_matrix(y, dtype=np.float64) if sp.issparse(y) else np.asarray(y, np.float64)
    raw = centred = 0.0
    for s in range(0, x.shape[1], block):
        part = xc[:, s : s + block]
        m = _dense(part.T @ yt)  # [b, q]
        raw += float(np.vdot(m, m))
        m -= n * np.outer(mx[s : s + block], my)
        centred += float(np.vdot(m, m))
        if on_block is not None:
            on_block(s, m)
    return raw, centred


def cross_moments(x: Matrix, y: Matrix, block: int = 2048, on_block=None) -> CrossMoments:
    """The statistics of :class:`CrossMoments` for ``x [n, p]`` and ``y [n, q]``."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} rows and y {y.shape[0]}; CKA needs the same images in the same order")
    raw, centred = product_frobenius(x, y, block, on_block)
    a, b = _row_sq_norms(x), _row_sq_norms(y)
    sx = np.asarray(x.sum(axis=0), np.float64).ravel()
    sy = np.asarray(y.sum(axis=0), np.float64).ravel()
    kx = np.asarray(x @ sx, np.float64).ravel() - a  # K~ 1
    ly = np.asarray(y @ sy, np.float64).ravel() - b  # L~ 1
    return CrossMoments(n, raw, centred, float(a @ b), float(kx @ ly), float(kx.sum()), float(ly.sum()))


def unbiased_hsic(m: CrossMoments) -> float:
    """Song et al.'s unbiased HSIC of linear kernels from :class:`CrossMoments` (needs ``n >= 4``)."""
    n = m.n
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 rows, got {n}")
    trace = m.raw - m.diag
    return (trace + m.ones_k * m.ones_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * m.row_dot) / (n * (n - 3))


def _ratio(cross: float, xx: float, yy: float) -> float:
    denom = np.sqrt(xx * yy)
    return float(cross / denom) if denom > 0 else float("nan")


@dataclass
class LinearCKA:
    """Linear CKA of a fixed ``x`` against any ``y`` with the self terms computed once.

    ``score(y)`` returns ``{"linear_cka", "debiased_cka"}``; the self terms of ``y`` are
    cached by ``id`` so that a permutation null only recomputes the cross terms.
    """

    x: Matrix
    block: int = 2048

    def __post_init__(self):
        self._xx = cross_moments(self.x, self.x, self.block)

    def self_moments(self, y: Matrix) -> CrossMoments:
        return cross_moments(y, y, self.block)

    def score(self, y: Matrix, yy: CrossMoments | None = None, on_block=None) -> dict[str, float]:
        yy = yy if yy is not None else self.self_moments(y)
        xy = cross_moments(self.x, y, self.block, on_block)
        return {
            "linear_cka": _ratio(xy.centred, self._xx.centred, yy.centred),
            "debiased_cka": _ratio(unbiased_hsic(xy), unbiased_hsic(self._xx), unbiased_hsic(yy)),
        }


def linear_cka(x: Matrix, y: Matrix) -> float:
    """Biased linear CKA of ``x [n, p]`` and ``y [n, q]`` (centred, float64, feature-space formula)."""
    xx, yy, xy = cross_moments(x, x), cross_moments(y, y), cross_moments(x, y)
    return _ratio(xy.centred, xx.centred, yy.centred)


def debiased_cka(x: Matrix, y: Matrix) -> float:
    """Linear CKA with the unbiased HSIC estimator (Song et al. 2012), ``x [n, p]``, ``y [n, q]``."""
    xx, yy, xy = cross_moments(x, x), cross_moments(y, y), cross_moments(x, y)
    return _ratio(unbiased_hsic(xy), unbiased_hsic(xx), unbiased_hsic(yy))


def gram_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC of two ``[n, n]`` kernel matrices (their diagonals are ignored)."""
    n = len(k)
    k = k - np.diag(np.diag(k))
    l = l - np.diag(np.diag(l))
    k1, l1 = k.sum(1), l.sum(1)
    return float((np.sum(k * l) + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1 @ l1) / (n * (n - 3)))


def rbf_gram(x: Matrix, fraction: float) -> np.ndarray:
    """``[b, b]`` Gaussian kernel ``exp(-d^2 / (2 sigma^2))`` with ``sigma = fraction * median`` off-diagonal distance."""
    # sparse codes keep their sparsity for the Gram matrix (64 of 16,384 entries a row: a dense product
    # would multiply zeros for 17 GFLOP a batch)
    x = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, np.float64)
    sq = _row_sq_norms(x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * _dense(x @ x.T), 0)
    off = d2[~np.eye(x.shape[0], dtype=bool)]
    median = float(np.sqrt(np.median(off))) if len(off) else 0.0
    if median == 0:
        return np.ones_like(d2)  # all rows identical: a constant kernel (HSIC 0)
    return np.exp(-d2 / (2 * (fraction * median) ** 2))


def rbf_cka(x: Matrix, y: Matrix, *, fraction: float = 1.0, batch: int = 1024, rng: np.random.Generator | None = None) -> float:
    """Minibatch RBF CKA of ``x [n, p]`` and ``y [n, q]`` over disjoint batches of ``batch`` rows.

    Rows are split into ``ceil(n / batch)`` near-equal disjoint batches (in a random order
    when ``rng`` is given, else in index order); per batch the unbiased HSIC of the two
    RBF kernels (bandwidth per batch); CKA = mean HSIC(K,L) / sqrt(mean HSIC(K,K) mean HSIC(L,L)).
    """
    n = x.shape[0]
    order = rng.permutation(n) if rng is not None else np.arange(n)
    parts = np.array_split(order, max(1, int(np.ceil(n / batch))))
    kl = kk = ll = 0.0
    for rows in parts:
        rows = np.sort(rows)
        k, l = rbf_gram(x[rows], fraction), rbf_gram(y[rows], fraction)
        kl += gram_unbiased_hsic(k, l)
        kk += gram_unbiased_hsic(k, k)
        ll += gram_unbiased_hsic(l, l)
    return _ratio(kl, kk, ll)
