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
* ``StreamingMoments``: the statistics of ``debiased_cka`` from row chunks, in memory set by the
  widths (torch, on any device: on a GPU the cross-products are float32 GEMMs there).
* ``rbf_cka``: Gaussian kernel with bandwidth ``sigma = fraction * median`` pairwise
  distance, minibatch CKA (Nguyen et al. 2021: unbiased HSIC averaged over disjoint
  batches of rows, then the ratio) so that memory is ``[batch, batch]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

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


class StreamingMoments:
    """:class:`CrossMoments` of ``x [n, p]`` and ``y [n, q]`` from their rows given in chunks, in memory that
    does not grow with ``n``: the ``[p, q]`` cross-product ``G = X^T Y`` (float64, on ``device``) and a few
    vectors.

    A chunk ``add(xc, yc)`` is either a pair of ``scipy.sparse`` matrices (SAE codes with few non-zeros:
    multiplied sparsely, on the CPU) or dense (torch tensors on ``device``, or arrays): a float32 GEMM of
    the chunks after subtracting a fixed shift, the first dense chunk's column means, so that the float32
    products are of centred-sized numbers; the shift is added back in float64 when the moments are read.
    A sparse chunk beside a dense one is made dense. The row terms expand as
    ``1'K~L~1 = sx'G sy - (sum_i |y_i|^2 x_i).sx - (sum_i |x_i|^2 y_i).sy + sum_i |x_i|^2 |y_i|^2``
    and ``1'K~1 = |sx|^2 - sum_i |x_i|^2``. Nothing waits for the device until :meth:`moments`.
    """

    def __init__(self, p: int, q: int, device: str | torch.device = "cpu", block: int = 2048):
        self.device, self.block = torch.device(device), block
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=self.device)  # noqa: E731
        self.n = 0
        self.g = zeros(p, q)
        self.sx, self.sy = zeros(p), zeros(q)
        self.wx, self.wy = zeros(p), zeros(q)  # sum_i |y_i|^2 x_i, sum_i |x_i|^2 y_i
        self.scalars = zeros(3)  # sum_i |x_i|^2 |y_i|^2, sum_i |x_i|^2, sum_i |y_i|^2
        self.shift: tuple[torch.Tensor, torch.Tensor] | None = None  # (c_x, c_y) of the dense chunks, float32
        self.dense_n = 0
        self.dense_sx, self.dense_sy = zeros(p), zeros(q)  # sums of the shifted dense rows

    def add(self, xc, yc) -> None:
        """One chunk of rows of ``x`` and ``y`` (the same object for a Gram's moments: converted once)."""
        if sp.issparse(xc) and sp.issparse(yc):
            x = sp.csr_matrix(xc, dtype=np.float64)
            self._add_sparse(x, x if yc is xc else sp.csr_matrix(yc, dtype=np.float64))
        else:
            x = self._tensor(xc)
            self._add_dense(x, x if yc is xc else self._tensor(yc))

    def _tensor(self, m) -> torch.Tensor:
        m = m.toarray() if sp.issparse(m) else m
        return (torch.from_numpy(np.asarray(m)) if not isinstance(m, torch.Tensor) else m).to(self.device)

    def _add_rows(self, a, b, sx, sy, wx, wy) -> None:
        """The sums over rows of one chunk (float64 tensors): squared row norms ``a``, ``b``, column sums,
        and ``wx = x^T b``, ``wy = y^T a``."""
        self.n += len(a)
        self.scalars += torch.stack([a @ b, a.sum(), b.sum()])
        self.sx += sx
        self.sy += sy
        self.wx += wx
        self.wy += wy

    def _add_sparse(self, xc: sp.csr_matrix, yc: sp.csr_matrix) -> None:
        if self.device.type != "cpu":
            raise ValueError(f"sparse chunks are multiplied on the CPU; give dense tensors on {self.device}")
        a, b = _row_sq_norms(xc), _row_sq_norms(yc)
        vec = lambda m: torch.from_numpy(np.asarray(m, np.float64).ravel())  # noqa: E731
        self._add_rows(vec(a), vec(b), vec(xc.sum(axis=0)), vec(yc.sum(axis=0)), vec(xc.T @ b), vec(yc.T @ a))
        prod = (xc.T @ yc).tocoo()
        self.g.numpy()[prod.row, prod.col] += prod.data  # a canonical product: each (row, col) once

    def _add_dense(self, x: torch.Tensor, y: torch.Tensor) -> None:
        same = y is x  # a Gram's chunk: each conversion made once
        x64 = x.double()
        y64 = x64 if same else y.double()
        a = (x64 * x64).sum(1)
        b = a if same else (y64 * y64).sum(1)
        self._add_rows(a, b, x64.sum(0), y64.sum(0), x64.T @ b, y64.T @ a)
        del x64, y64
        x = x.float()
        y = x if same else y.float()
        if self.shift is None:
            self.shift = (x.mean(0), y.mean(0))
        xs = x - self.shift[0]
        ys = xs if same else y - self.shift[1]
        for s in range(0, self.g.shape[0], self.block):  # [block, q] float32 temporaries, added into float64
            self.g[s : s + self.block] += xs[:, s : s + self.block].T @ ys
        self.dense_n += len(xs)
        self.dense_sx += xs.sum(0, dtype=torch.float64)
        self.dense_sy += ys.sum(0, dtype=torch.float64)

    def moments(self) -> CrossMoments:
        """The statistics so far, over row blocks of ``G`` (no second ``[p, q]`` array; the accumulator is
        left as it was, so more chunks may follow)."""
        raw, centred, row_dot = (torch.zeros((), dtype=torch.float64, device=self.device) for _ in range(3))
        mean_y = self.sy / self.n
        if self.shift is not None:  # undo the shift: sum (x'+cx)(y'+cy)^T = G' + sx' cy^T + cx (sy' + m cy)^T
            cx, cy = (c.double() for c in self.shift)
            sy_shifted = self.dense_sy + self.dense_n * cy
        for s in range(0, self.g.shape[0], self.block):
            part = self.g[s : s + self.block]
            if self.shift is not None:
                part = part + (torch.outer(self.dense_sx[s : s + self.block], cy) + torch.outer(cx[s : s + self.block], sy_shifted))
            raw += torch.sum(part * part)
            c = part - torch.outer(self.sx[s : s + self.block], mean_y)
            centred += torch.sum(c * c)
            row_dot += self.sx[s : s + self.block] @ part @ self.sy
        diag, sq_x, sq_y = self.scalars.tolist()
        row_dot = row_dot.item() + diag - float(self.wx @ self.sx + self.wy @ self.sy)
        return CrossMoments(self.n, raw.item(), centred.item(), diag, row_dot,
                            float(self.sx @ self.sx) - sq_x, float(self.sy @ self.sy) - sq_y)


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
    return debiased_from_moments(cross_moments(x, y), cross_moments(x, x), cross_moments(y, y))


def debiased_from_moments(xy: CrossMoments, xx: CrossMoments, yy: CrossMoments) -> float:
    """Debiased linear CKA from the three :class:`CrossMoments` (e.g. of :class:`StreamingMoments`)."""
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
