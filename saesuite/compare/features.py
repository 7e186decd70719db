"""Every cross-model score of two representations of the same images, in memory.

Model A and model B each give raw hooked activations ``x [n, d]`` and SAE codes
``codes [n, F]`` (``scipy.sparse``) over the same ``n`` images in the same order.
:class:`PairComparison` computes, for the images as given or with B's images
shuffled against A's by a permutation (the null):

* top-k image overlap both ways over alive features, and the overlap of all pairs;
* one-to-one pairing (maximum-weight matching) on the overlap counts and, separately,
  on the Pearson correlation of the two features' activations across images;
* linear, debiased and RBF CKA and mutual kNN on the activations and on the codes.

Cross-model feature matching uses activations on the same images, never decoder
cosines (the two SAEs live in different spaces). Features alive for the overlap
(positive on at least ``k`` images) are the ones that take part in both pairings.

Rows of zeros (an image on which no latent fires, an all-zero activation row) have no
cosine: mutual kNN leaves them out of its rows (counted in :meth:`PairComparison.excluded`).
Every other score is defined on them: top-k sets take positive rows only, CKA and the
feature correlations (of columns, across images) count a zero row as an observation, and
a feature constant over the images (no correlation) takes no part in the correlation pairing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from saesuite.compare.chance import disjoint_halves
from saesuite.compare.cka import LinearCKA, rbf_cka
from saesuite.errors import ConfigError
from saesuite.compare.knn import knn_indices, mutual_knn_from_indices, nonzero_rows, relabel_neighbours
from saesuite.compare.overlap import alive_features, best_overlap, overlap_counts, relabel_rows, sparse_topk
from saesuite.compare.pairing import match_sparse


@dataclass(frozen=True)
class CompareSettings:
    """Knobs of the comparison; every one is written into ``comparison.json``."""

    k: int = 9  # top-k images per feature
    knn_k: int = 10  # neighbours for mutual kNN
    knn_rows: int = 10_000  # images (random, without replacement) for kNN; all when fewer
    rbf_rows: int = 10_000  # images for RBF CKA
    rbf_fraction: float = 1.0  # bandwidth = fraction * median pairwise distance (per batch)
    rbf_batch: int = 1024  # minibatch CKA batch size
    overlap_threshold: float = 0.5  # a pair counts as shared when its top-k overlap is at least this
    correlation_threshold: float = 0.5  # ... or its activation correlation is at least this
    correlation_candidates: int = 32  # per feature, the best-correlated partners kept for matching
    permutations: int = 100  # R of the permutation null
    interval_splits: int = 50  # random splits into two disjoint halves for each score's interval; 0: none
    interval_level: float = 0.95  # coverage of the interval
    seed: int = 0
    block: int = 2048  # feature columns per block of a sparse product

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Side:
    """One model's view of the images: ``x [n, d]`` float64, ``codes [n, F]`` CSR, ``topk [F, k]``, ``alive [F]``."""

    x: np.ndarray
    codes: sp.csr_matrix
    topk: np.ndarray
    alive: np.ndarray

    @classmethod
    def build(cls, x: np.ndarray, codes, k: int) -> "Side":
        codes = sp.csr_matrix(codes, dtype=np.float64)
        if codes.shape[0] != len(x):
            raise ConfigError(f"activations have {len(x)} rows but codes {codes.shape[0]}")
        topk = sparse_topk(codes, k)
        return cls(np.asarray(x, np.float64), codes, topk, alive_features(topk))

    def rows(self, index: np.ndarray, k: int) -> "Side":
        """The same model on a subset of images (top-k recomputed on it)."""
        return Side.build(self.x[index], self.codes[index], k)


def _subset(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)


def _positions(rows: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Positions within sorted ``rows`` of the members of sorted ``subset`` that ``rows`` holds."""
    return np.searchsorted(rows, np.intersect1d(rows, subset))


class _CorrelationCandidates:
    """Collects, from column blocks of the centred cross-product ``[b, F_B]``, each alive
    feature's ``m`` best-correlated alive partners in both directions (positive correlations only)."""

    def __init__(self, codes_a, codes_b, alive_a, alive_b, m: int):
        n = codes_a.shape[0]
        self.n, self.m = n, m
        self.sd_a = _column_sd(codes_a)
        self.sd_b = _column_sd(codes_b)
        self.ok_a = alive_a & (self.sd_a > 0)
        self.ok_b = alive_b & (self.sd_b > 0)
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.col_best: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, start: int, centred: np.ndarray) -> None:
        b = len(centred)
        denom = self.n * np.outer(self.sd_a[start : start + b], self.sd_b)
        corr = np.divide(centred, denom, out=np.zeros_like(centred), where=denom > 0)
        corr[~self.ok_a[start : start + b]] = 0
        corr[:, ~self.ok_b] = 0
        # candidates are chosen on a float32 copy (a selection several times faster than in float64; only
        # pairs within 1e-7 of the m-th best can swap) and keep their float64 correlations
        rank = -corr.astype(np.float32)
        m = min(self.m, corr.shape[1])
        cols = np.argpartition(rank, m - 1, axis=1)[:, :m]
        rows = np.repeat(np.arange(b), m)
        self.entries.append((rows + start, cols.ravel(), corr[rows, cols.ravel()]))
        mb = min(self.m, b)
        top_rows = np.argpartition(np.ascontiguousarray(rank.T), mb - 1, axis=1)[:, :mb].T
        cidx = np.tile(np.arange(corr.shape[1]), mb)
        self.col_best.append((top_rows.ravel() + start, cidx, corr[top_rows.ravel(), cidx]))

    def matrix(self, shape: tuple[int, int]) -> sp.csr_matrix:
        """Sparse ``[F_A, F_B]`` positive correlations of the candidate pairs."""
        r, c, v = (np.concatenate(p) for p in zip(*self.entries)) if self.entries else (np.empty(0),) * 3
        cr, cc, cv = (np.concatenate(p) for p in zip(*self.col_best)) if self.col_best else (np.empty(0),) * 3
        if len(cv):  # global top-m per column of B over all blocks of A
            order = np.lexsort((-cv, cc))
            cr, cc, cv = cr[order], cc[order], cv[order]
            rank = np.arange(len(cc)) - np.searchsorted(cc, cc)
            keep = rank < self.m
            cr, cc, cv = cr[keep], cc[keep], cv[keep]
        rows, cols, vals = np.concatenate([r, cr]), np.concatenate([c, cc]), np.concatenate([v, cv])
        pos = vals > 0
        key = np.unique(np.stack([rows[pos], cols[pos]]).astype(np.int64), axis=1, return_index=True)[1]
        rows, cols, vals = rows[pos][key], cols[pos][key], vals[pos][key]
        return sp.csr_matrix((vals, (rows.astype(np.int64), cols.astype(np.int64))), shape=shape)


def _column_moments(codes: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and (population) variance from sparse sums, in float64. A column whose variance
    is below 1e-12 of its mean square is constant (its spread is rounding): its variance is 0."""
    n = codes.shape[0]
    col_mean = lambda m: np.asarray(m.sum(axis=0, dtype=np.float64)).ravel() / n  # noqa: E731
    mean, sq = col_mean(codes), col_mean(codes.multiply(codes))
    var = sq - mean**2
    var[var <= 1e-12 * sq] = 0
    return mean, var


def _column_sd(codes: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(_column_moments(codes)[1])


def pair_correlations(codes_a: sp.csr_matrix, codes_b: sp.csr_matrix, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Pearson correlation across images of feature ``fa[i]`` of A with ``fb[i]`` of B, ``[len(fa)]``.

    From sparse column moments (``mean(a b) - mean_a mean_b`` over ``sd_a sd_b``), never densifying the
    codes (16,384 dense columns of 50,000 images would be 6.5 GB per model). A constant column has no
    correlation (0)."""
    if len(fa) == 0:
        return np.empty(0)
    a, b = sp.csc_matrix(codes_a[:, fa], dtype=np.float64), sp.csc_matrix(codes_b[:, fb], dtype=np.float64)
    (mean_a, var_a), (mean_b, var_b) = _column_moments(a), _column_moments(b)
    cross = np.asarray(a.multiply(b).sum(axis=0), np.float64).ravel() / a.shape[0] - mean_a * mean_b
    denom = np.sqrt(var_a * var_b)
    return np.divide(cross, denom, out=np.zeros(len(fa)), where=denom > 0)


class PairComparison:
    """Scores of side A against side B; ``scores(perm)`` recomputes them with B's images permuted.

    Statistics restricted to a subset of images (kNN, RBF CKA) permute B within that subset;
    ``rbf_rows`` and ``knn_rows`` give those subsets (sorted row indices), else they are drawn.
    RBF CKA's minibatches are a random partition of its rows (dataset order may be sorted by
    class), the same for A and B. Top-k sets and kNN lists are permutation-equivariant, so under
    a permutation they are relabelled rather than searched again (the same sets, up to the tie rule).
    """

    def __init__(self, a: Side, b: Side, settings: CompareSettings, rng: np.random.Generator,
                 rbf_rows: np.ndarray | None = None, knn_rows: np.ndarray | None = None):
        self.a, self.b, self.s = a, b, settings
        self.n = n = len(a.x)
        if len(b.x) != n:
            raise ConfigError(f"A has {n} images and B {len(b.x)}; compare the same images")
        if settings.k > n:
            raise ConfigError(f"top-k with k={settings.k} needs at least k images; there are {n}")
        self.cka_x, self.cka_c = LinearCKA(a.x, settings.block), LinearCKA(a.codes, settings.block)
        self.yy_x, self.yy_c = self.cka_x.self_moments(b.x), self.cka_c.self_moments(b.codes)
        self.rbf_rows = _subset(n, settings.rbf_rows, rng) if rbf_rows is None else np.asarray(rbf_rows, np.int64)
        self.rbf_batches = self.rbf_rows[rng.permutation(len(self.rbf_rows))]  # batch i: consecutive rows of this order
        self.knn_rows = _subset(n, settings.knn_rows, rng) if knn_rows is None else np.asarray(knn_rows, np.int64)
        self.knn_x_rows = self.knn_rows[nonzero_rows(a.x[self.knn_rows], b.x[self.knn_rows])]
        self.knn_code_rows = self.knn_rows[nonzero_rows(a.codes[self.knn_rows], b.codes[self.knn_rows])]
        self.knn_x = self._knn(a.x, b.x, self.knn_x_rows)
        self.knn_c = self._knn(a.codes, b.codes, self.knn_code_rows)

    def sizes(self) -> dict[str, int]:
        """Rows each subset-based score runs on (the others use all ``n``)."""
        return {"rbf_cka": len(self.rbf_rows), "rbf_cka_codes": len(self.rbf_rows),
                "mutual_knn": len(self.knn_x_rows), "mutual_knn_codes": len(self.knn_code_rows)}

    def excluded(self) -> dict[str, int]:
        """Rows of a score's subset left out because the score is undefined on them (rows of zeros)."""
        return {"mutual_knn": len(self.knn_rows) - len(self.knn_x_rows),
                "mutual_knn_codes": len(self.knn_rows) - len(self.knn_code_rows)}

    def halves(self, rng: np.random.Generator) -> tuple["PairComparison", "PairComparison"]:
        """Two comparisons on disjoint random halves of the images; each subset-based score runs on half of its subset."""
        strata = np.zeros(self.n, np.int64)
        strata[self.rbf_rows] += 1
        strata[self.knn_rows] += 2
        out = []
        for rows in disjoint_halves(strata, rng):
            out.append(PairComparison(self.a.rows(rows, self.s.k), self.b.rows(rows, self.s.k), self.s, rng,
                                      rbf_rows=_positions(rows, self.rbf_rows), knn_rows=_positions(rows, self.knn_rows)))
        return out[0], out[1]

    def _knn(self, xa, xb, rows):
        if len(rows) <= self.s.knn_k:
            return None
        return knn_indices(xa[rows], self.s.knn_k), knn_indices(xb[rows], self.s.knn_k)

    def scores(self, perm: np.ndarray | None = None, rng: np.random.Generator | None = None, details: bool = False) -> dict:
        """All scores (a flat dict); ``perm [n]`` shuffles B's images, ``rng`` draws the within-subset shuffles."""
        a, b, s, n = self.a, self.b, self.s, self.n
        out: dict = {}
        top_b = b.topk if perm is None else relabel_rows(b.topk, perm)
        counts = overlap_counts(a.topk[a.alive], top_b[b.alive], n).tocsr()
        fa, fb = np.flatnonzero(a.alive), np.flatnonzero(b.alive)
        best_ab = best_overlap(counts, s.k, axis=1)
        best_ba = best_overlap(counts, s.k, axis=0)
        out["topk_overlap"] = float(best_ab.mean()) if len(best_ab) else None
        out["topk_overlap_b_to_a"] = float(best_ba.mean()) if len(best_ba) else None
        out["topk_overlap_all_pairs"] = float(counts.sum() / (s.k * len(fa) * len(fb))) if len(fa) and len(fb) else None
        r, c = match_sparse(counts)
        overlap_scores = _lookup(counts, r, c) / s.k
        out.update(_pairing_fractions("overlap_pairing", overlap_scores >= s.overlap_threshold, len(fa), len(fb)))

        xb = b.x if perm is None else b.x[perm]
        cb = b.codes if perm is None else b.codes[perm]
        out.update(self.cka_x.score(xb, self.yy_x))
        topk_b_alive = b.alive  # aliveness is permutation invariant
        collector = _CorrelationCandidates(a.codes, cb, a.alive, topk_b_alive, s.correlation_candidates)
        codes = self.cka_c.score(cb, self.yy_c, on_block=collector)
        out.update({f"{key}_codes": value for key, value in codes.items()})
        corr = collector.matrix((a.codes.shape[1], b.codes.shape[1]))
        cr, cc = match_sparse(corr)
        corr_scores = _lookup(corr, cr, cc)
        out.update(_pairing_fractions("correlation_pairing", corr_scores >= s.correlation_threshold, len(fa), len(fb)))

        sub = self.rbf_batches
        sigma = np.arange(len(sub)) if perm is None else rng.permutation(len(sub))
        for key, xa, xb in (("rbf_cka", a.x, b.x), ("rbf_cka_codes", a.codes, b.codes)):
            out[key] = rbf_cka(xa[sub], xb[sub][sigma], fraction=s.rbf_fraction, batch=s.rbf_batch) if len(sub) >= 4 else None
        for key, knn in (("mutual_knn", self.knn_x), ("mutual_knn_codes", self.knn_c)):
            if knn is None:
                out[key] = None
                continue
            ka, kb = knn
            out[key] = mutual_knn_from_indices(ka, kb if perm is None else relabel_neighbours(kb, rng.permutation(len(kb))))
        if details:
            out["_details"] = {
                "best_a_to_b": best_ab, "best_b_to_a": best_ba, "alive_a": fa, "alive_b": fb, "topk_b": top_b,
                "overlap_pairs": self._pairs_frame("overlap", fa[r], fb[c], overlap_scores, cb),
                "correlation_pairs": self._pairs_frame("correlation", cr, cc, corr_scores, cb, counts=counts),
            }
        return out

    def _pairs_frame(self, method, fa, fb, scores, codes_b, counts=None) -> pd.DataFrame:
        """The matched pairs with both scores, best first."""
        s = self.s
        corr = pair_correlations(self.a.codes, codes_b, fa, fb) if method == "overlap" else scores
        if method == "overlap":
            overlap = scores
        else:  # look the pairs' overlap up in the alive-by-alive count matrix
            pos_a = np.searchsorted(np.flatnonzero(self.a.alive), fa)
            pos_b = np.searchsorted(np.flatnonzero(self.b.alive), fb)
            overlap = _lookup(counts, pos_a, pos_b) / s.k
        threshold = s.overlap_threshold if method == "overlap" else s.correlation_threshold
        frame = pd.DataFrame({
            "method": method, "feature_a": fa.astype(int), "feature_b": fb.astype(int),
            "topk_overlap": overlap, "correlation": corr, "above_threshold": scores >= threshold,
        })
        return frame.sort_values(["above_threshold", "topk_overlap" if method == "overlap" else "correlation"],
                                 ascending=False, kind="stable").reset_index(drop=True)


def _lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries ``matrix[rows[i], cols[i]]`` as a float ``[len(rows)]`` array."""
    if len(rows) == 0:
        return np.empty(0)
    return np.asarray(matrix[rows, cols], np.float64).ravel()


def _pairing_fractions(name: str, above: np.ndarray, alive_a: int, alive_b: int) -> dict:
    """Fractions of alive features of A and of B whose matched partner scores above the threshold."""
    count = int(above.sum())
    return {
        name: count / alive_a if alive_a else None,
        f"{name}_b": count / alive_b if alive_b else None,
        f"{name}_count": count,
    }
