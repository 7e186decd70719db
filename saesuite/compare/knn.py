"""Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic Representation Hypothesis").

For each image ``i`` the ``k`` nearest other images by cosine similarity in each
representation (the image itself excluded); the score is the mean over images of
``|N_x(i) ∩ N_y(i)| / k``. Independent representations score ``k / (n - 1)`` in
expectation. Rows with zero norm have no cosine: :func:`knn_indices` refuses them,
:func:`mutual_knn` and the comparison leave them out (:func:`nonzero_rows`). Equal
distances are ordered as scikit-learn's brute-force search orders them (by distance,
then a stable sort by index).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors


def nonzero_rows(*mats) -> np.ndarray:
    """Boolean ``[n]``: rows that are non-zero in every matrix (cosine is undefined on a zero row)."""
    keep = None
    for m in mats:
        norms = np.asarray(abs(m).sum(axis=1)).ravel() if sp.issparse(m) else np.abs(np.asarray(m)).sum(axis=1)
        keep = norms > 0 if keep is None else keep & (norms > 0)
    return keep


def knn_indices(x, k: int) -> np.ndarray:
    """``[n, k]`` indices of each row's ``k`` nearest other rows of ``x [n, d]`` by cosine (self excluded)."""
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"mutual kNN needs 0 < k < n; got k={k}, n={n}")
    if not nonzero_rows(x).all():
        raise ValueError("kNN by cosine over rows of zeros is undefined; drop them with nonzero_rows first")
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x)
    return nn.kneighbors(return_distance=False)  # X=None: each point is not its own neighbour


def mutual_knn_from_indices(ia: np.ndarray, ib: np.ndarray) -> float:
    """Mean over rows of ``|ia[i] ∩ ib[i]| / k`` for two ``[n, k]`` neighbour lists."""
    n, k = ia.shape
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(n * k), (rows, ia.ravel())), shape=(n, n))
    b = sp.csr_matrix((np.ones(n * k), (rows, ib.ravel())), shape=(n, n))
    return float(a.multiply(b).sum() / (n * k))


def relabel_neighbours(ib: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Neighbour lists of ``y[perm]`` from those of ``y``: row ``i`` is old row ``perm[i]``, relabelled."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return inverse[ib[perm]]


def mutual_knn(x, y, k: int) -> float:
    """Mutual kNN alignment of ``x [n, p]`` and ``y [n, q]`` (cosine, self excluded) over the rows that are
    non-zero in both (cosine is undefined on a row of zeros); chance ``k / (n' - 1)`` for those ``n'`` rows."""
    keep = nonzero_rows(x, y)
    return mutual_knn_from_indices(knn_indices(x[keep], k), knn_indices(y[keep], k))
