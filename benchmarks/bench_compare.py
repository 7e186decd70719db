"""Scale benchmark of the comparison: 16,384 x 16,384 SAE features over 50,000 images.

Synthetic sparse codes (each image fires ``l0`` random features of each SAE, with a
block of shared structure so that matches exist) stand in for two SAEs; the timed
steps are the ones ``saesuite compare`` runs: top-k sets, blocked sparse overlap
counts, sparse Hungarian on them, one permutation of the null, the blocked
correlation pass with candidate matching, and linear/debiased CKA on activations.
Each is timed against a straightforward implementation in the same run; where that
would take hours or not fit in memory it is timed on a subset and extrapolated (the
JSON says which, and how). Writes ``results/bench/compare_scale.json``.

    .venv/bin/python benchmarks/bench_compare.py [--features 16384 --images 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from saesuite.compare.cka import cross_moments, debiased_cka, linear_cka
from saesuite.compare.features import _CorrelationCandidates
from saesuite.compare.overlap import best_overlap, overlap_counts, relabel_rows, sparse_topk
from saesuite.compare.pairing import match_sparse


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def synthetic_codes(n: int, f: int, l0: int, shared: np.ndarray, rng) -> sp.csr_matrix:
    """``[n, f]`` CSR codes: ``l0`` features per image; the first half driven by the shared ``[n, l0/2]`` draw."""
    own = rng.integers(0, f, size=(n, l0 - shared.shape[1]))
    cols = np.concatenate([shared, own], axis=1)
    vals = rng.exponential(size=cols.shape)
    m = sp.csr_matrix((vals.ravel(), (np.repeat(np.arange(n), l0), cols.ravel())), shape=(n, f))
    m.sum_duplicates()
    return m


def naive_overlap_rows(top_a, top_b, rows):
    """Straightforward: Python sets, every pair, for ``rows`` features of A."""
    sets_b = [set(r) for r in top_b]
    return [max(len(set(top_a[i]) & s) for s in sets_b) for i in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16384)
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--l0", type=int, default=64)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--out", default="results/bench/compare_scale.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, f, k = args.images, args.features, args.k
    shared = rng.integers(0, f, size=(n, args.l0 // 2))
    ca = synthetic_codes(n, f, args.l0, shared, rng)
    cb = synthetic_codes(n, f, args.l0, shared, rng)
    report: dict = {"images": n, "features_a": f, "features_b": f, "l0": args.l0, "k": k, "steps": {}}
    steps = report["steps"]

    (ta, t1) = timed(sparse_topk, ca, k)
    tb, t2 = timed(sparse_topk, cb, k)
    steps["topk_sets_both"] = {"seconds": t1 + t2}
    counts, t = timed(overlap_counts, ta, tb, n)
    best, t_best = timed(best_overlap, counts, k)
    steps["overlap_counts_sparse_blocked"] = {"seconds": t + t_best, "nonzero_pairs": int(counts.nnz),
                                              "dense_pairs": f * f, "mean_best_overlap": float(best.mean())}
    sample = rng.choice(f, 64, replace=False)
    naive, t_naive = timed(naive_overlap_rows, ta, tb, sample)
    assert np.allclose(np.array(naive) / k, best[sample]), "sparse overlap disagrees with the set loop"
    steps["overlap_counts_naive_python_sets"] = {
        "seconds_extrapolated": t_naive * f / len(sample), "measured_seconds": t_naive,
        "how": f"measured on {len(sample)} features of A against all of B, scaled by {f}/{len(sample)}; agrees exactly on them"}
    dense_bytes = 2 * f * n * 4 + f * f * 4
    steps["overlap_dense_indicator_matmul"] = {
        "memory_gib": dense_bytes / 2**30, "how": "not run: two dense float32 [F, n] indicators and an [F, F] product"}

    (r, c), t = timed(match_sparse, counts)
    steps["hungarian_sparse_overlap"] = {"seconds": t, "pairs": int(len(r)), "total_overlap": float(counts[r, c].sum())}
    m = min(2048, f)
    sub = counts[:m][:, :m].toarray()
    _, t_lsa = timed(linear_sum_assignment, -sub)
    steps["hungarian_dense_linear_sum_assignment"] = {
        "seconds_extrapolated": t_lsa * (f / m) ** 3, "measured_seconds": t_lsa,
        "how": f"linear_sum_assignment on the dense {m} x {m} corner, scaled by (F/{m})^3 (its worst-case order)"}

    perm = rng.permutation(n)
    def one_null():
        cnt = overlap_counts(ta, relabel_rows(tb, perm), n)
        best_overlap(cnt, k)
        return match_sparse(cnt)
    _, t = timed(one_null)
    steps["one_permutation_overlap_and_matching"] = {"seconds": t}

    alive_a, alive_b = (ta >= 0).all(1), (tb >= 0).all(1)
    collector = _CorrelationCandidates(ca, cb, alive_a, alive_b, 32)
    _, t = timed(cross_moments, ca, cb, 2048, collector)
    corr, t2 = timed(collector.matrix, (f, f))
    (r2, c2), t3 = timed(match_sparse, corr)
    steps["correlation_blocked_pass_and_matching"] = {"seconds": t + t2 + t3, "candidate_pairs": int(corr.nnz),
                                                      "matched_above_0.5": int((np.asarray(corr[r2, c2]).ravel() >= 0.5).sum())}
    cols = 256
    dense_a = ca[:, :cols].toarray().astype(np.float32)
    dense_b = cb[:, : min(4096, f)].toarray().astype(np.float32)
    t0 = time.perf_counter()
    za = (dense_a - dense_a.mean(0)) / (dense_a.std(0) + 1e-12)
    zb = (dense_b - dense_b.mean(0)) / (dense_b.std(0) + 1e-12)
    _ = za.T @ zb / n
    t_dense = time.perf_counter() - t0
    steps["correlation_dense_numpy"] = {
        "seconds_extrapolated": t_dense * (f / cols) * (f / dense_b.shape[1]), "measured_seconds": t_dense,
        "how": f"dense standardised product of {cols} features of A with {dense_b.shape[1]} of B, scaled to {f} x {f}"}
    del dense_a, dense_b, za, zb

    xa = rng.normal(size=(n, 1024)).astype(np.float32)
    xb = (xa[:, :768] + rng.normal(size=(n, 768))).astype(np.float32)
    _, t = timed(lambda: (linear_cka(xa, xb), debiased_cka(xa, xb)))
    steps["linear_and_debiased_cka_feature_space"] = {"seconds": t, "d_a": 1024, "d_b": 768}
    s = min(4000, n)
    t0 = time.perf_counter()
    ka, kb = xa[:s].astype(np.float64) @ xa[:s].T.astype(np.float64), xb[:s].astype(np.float64) @ xb[:s].T.astype(np.float64)
    h = np.eye(s) - 1.0 / s
    hk, hl = h @ ka @ h, h @ kb @ h
    _ = np.sum(hk * hl) / np.sqrt(np.sum(hk * hk) * np.sum(hl * hl))
    t_gram = time.perf_counter() - t0
    steps["linear_cka_gram_matrices"] = {
        "seconds_extrapolated": t_gram * (n / s) ** 3, "measured_seconds": t_gram, "memory_gib_at_n": 3 * n * n * 8 / 2**30,
        "how": f"[n, n] Gram matrices with the centring matrix on {s} images, scaled by (n/{s})^3"}
    report["peak_rss_gib"] = peak_gib()
    fast = sum(v["seconds"] for key, v in steps.items() if "seconds" in v and key in (
        "topk_sets_both", "overlap_counts_sparse_blocked", "hungarian_sparse_overlap", "correlation_blocked_pass_and_matching"))
    report["summary"] = {
        "suite_seconds_overlap_pairing_and_correlation_pairing": fast,
        "straightforward_seconds_extrapolated": steps["overlap_counts_naive_python_sets"]["seconds_extrapolated"]
        + steps["hungarian_dense_linear_sum_assignment"]["seconds_extrapolated"]
        + steps["correlation_dense_numpy"]["seconds_extrapolated"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
