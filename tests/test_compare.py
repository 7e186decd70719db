"""The comparison's formulas against independent computations, and the compare command end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from saesuite.compare.cka import debiased_cka, linear_cka, rbf_cka
from saesuite.compare.saes import compare_saes
from saesuite.errors import ConfigError
from saesuite.compare.features import CompareSettings, PairComparison, Side
from saesuite.compare.knn import knn_indices, mutual_knn, mutual_knn_from_indices, relabel_neighbours
from saesuite.compare.overlap import overlap_counts, relabel_rows, sparse_topk, topk_overlap
from saesuite.compare.pairing import match_dense, match_sparse
from saesuite.schema import validate
from saesuite.evaluate.topk import StreamingTopK
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_sae


def cka_by_kernels(x, y):
    """Independent CKA: HSIC of linear Gram matrices with the centring matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def unbiased_hsic_direct(k, l):
    """Song et al. (2012) eq. 5, written out with explicit loops' worth of sums on [n, n] Grams."""
    n = len(k)
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2 / (n - 2) * (one @ kt @ lt @ one)
    return (term1 + term2 - term3) / (n * (n - 3))


def test_linear_cka_is_the_gram_formula_and_invariant_to_rotation_scale_shift():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
    assert linear_cka(x, y) == pytest.approx(cka_by_kernels(x, y), rel=1e-10)
    assert linear_cka(sp.csr_matrix(x), sp.csr_matrix(y)) == pytest.approx(cka_by_kernels(x, y), rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)
    assert debiased_cka(x, x @ q) == pytest.approx(1.0)


def test_debiased_cka_is_the_unbiased_hsic_and_near_zero_for_independent_wide_data():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 7)) + 2, rng.normal(size=(40, 5))
    direct = unbiased_hsic_direct(x @ x.T, y @ y.T) / np.sqrt(
        unbiased_hsic_direct(x @ x.T, x @ x.T) * unbiased_hsic_direct(y @ y.T, y @ y.T))
    assert debiased_cka(x, y) == pytest.approx(direct, rel=1e-9)
    assert debiased_cka(sp.csr_matrix(np.maximum(x, 0)), y) == pytest.approx(debiased_cka(np.maximum(x, 0), y), rel=1e-9)
    # independent 128- and 96-wide data at n=300: biased CKA is far from 0, debiased is not
    a, b = rng.normal(size=(300, 128)), rng.normal(size=(300, 96))
    assert linear_cka(a, b) > 0.2 and abs(debiased_cka(a, b)) < 0.02


def test_rbf_cka_of_a_rotation_is_one_and_minibatches_agree_with_one_batch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert rbf_cka(x, x @ q, batch=50) == pytest.approx(1.0)
    y = x[:, :2] + 0.5 * rng.normal(size=(200, 2))
    assert rbf_cka(x, y, batch=200) == pytest.approx(rbf_cka(x, y, batch=100), abs=0.1)
    assert abs(rbf_cka(x, rng.normal(size=(200, 3)), batch=100)) < 0.05


def test_mutual_knn_identical_inputs_is_one_and_independent_inputs_near_chance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8))
    assert mutual_knn(x, 2 * x, 10) == 1.0
    ia = knn_indices(x, 10)
    assert not (ia == np.arange(400)[:, None]).any()  # self excluded
    chance = 10 / 399
    values = [mutual_knn(x, rng.normal(size=(400, 8)), 10) for _ in range(3)]
    assert np.mean(values) == pytest.approx(chance, abs=0.01)
    perm = rng.permutation(400)
    assert np.array_equal(np.sort(relabel_neighbours(ia, perm), 1), np.sort(knn_indices(x[perm], 10), 1))
    assert mutual_knn_from_indices(ia, ia) == 1.0


def brute_topk(f, k):
    out = []
    for j in range(f.shape[1]):
        rows = sorted((i for i in range(len(f)) if f[i, j] > 0), key=lambda i: (-f[i, j], i))[:k]
        out.append(rows + [-1] * (k - len(rows)))
    return np.array(out)


def test_sparse_topk_matches_brute_force_and_streaming_topk_with_ties():
    rng = np.random.default_rng(0)
    f = np.round(rng.exponential(size=(60, 7)), 1) * (rng.random((60, 7)) < 0.5)
    f[:, 6] = 0
    f[5, 6] = 1.0
    expected = brute_topk(f, 4)
    np.testing.assert_array_equal(sparse_topk(sp.csr_matrix(f), 4), expected)
    top = StreamingTopK(7, 4)
    for s in range(0, 60, 11):
        top.update(s, torch.from_numpy(f[s : s + 11]).float())
    np.testing.assert_array_equal(top.indices.numpy(), expected)


def test_topk_overlap_matches_set_arithmetic_and_a_set_with_itself_is_one():
    rng = np.random.default_rng(1)
    n, k = 40, 5
    a = np.array([rng.choice(n, k, replace=False) for _ in range(6)])
    b = np.array([rng.choice(n, k, replace=False) for _ in range(9)])
    a[0] = b[3]
    a[5, 2:] = -1  # dead: fewer than k images
    best, alive = topk_overlap(a, b, n, k)
    assert alive.tolist() == [True] * 5 + [False]
    np.testing.assert_allclose(best, [max(len(set(ra) & set(rb)) / k for rb in b) for ra in a[:5]])
    self_best, _ = topk_overlap(b, b, n, k)
    assert (self_best == 1.0).all()
    counts = overlap_counts(a[:5], b, n, block=2).toarray()
    assert counts[0, 3] == k and counts.tolist() == [[len(set(ra) & set(rb)) for rb in b] for ra in a[:5]]


def test_permutation_chance_of_topk_overlap_is_k_over_n():
    rng = np.random.default_rng(4)
    n, k = 500, 10
    codes = sp.random(n, 60, density=0.2, random_state=5, format="csr")
    top = sparse_topk(codes, k)
    means = []
    for _ in range(20):
        perm = rng.permutation(n)
        np.testing.assert_array_equal(np.sort(relabel_rows(top, perm), 1), np.sort(sparse_topk(codes[perm], k), 1))
        means.append(overlap_counts(top, relabel_rows(top, perm), n).sum() / (k * 60 * 60))
    assert np.mean(means) == pytest.approx(k / n, rel=0.1)


def test_sparse_matching_reaches_the_hungarian_optimum():
    rng = np.random.default_rng(6)
    for _ in range(30):
        w = rng.integers(0, 5, size=(rng.integers(1, 25), rng.integers(1, 25))) * (rng.random((1,)) < 2)
        w = w * (rng.random(w.shape) < 0.3)
        r, c = match_dense(w)
        rs, cs = match_sparse(sp.csr_matrix(w))
        assert w[rs, cs].sum() == w[r, c].sum() and len(set(rs)) == len(rs) and len(set(cs)) == len(cs)
        assert (w[rs, cs] > 0).all()


def test_correlation_pairing_with_all_candidates_is_the_dense_hungarian():
    rng = np.random.default_rng(7)
    n = 300
    base = sp.random(n, 20, density=0.15, random_state=8, format="csr").toarray()
    codes_b = np.maximum(base[:, rng.permutation(20)] + 0.05 * rng.normal(size=base.shape), 0)
    x = rng.normal(size=(n, 4))
    settings = CompareSettings(k=5, knn_k=5, correlation_candidates=50, permutations=0, interval_splits=0)
    a, b = Side.build(x, base, 5), Side.build(x, codes_b, 5)
    out = PairComparison(a, b, settings, rng).scores(details=True)
    corr = np.corrcoef(base.T, codes_b.T)[:20, 20:]
    corr[~a.alive] = 0
    corr[:, ~b.alive] = 0
    r, c = match_dense(corr)
    pairs = out["_details"]["correlation_pairs"]
    assert pairs["correlation"].sum() == pytest.approx(corr[r, c].sum())
    assert out["correlation_pairing_count"] == int((corr[r, c] >= 0.5).sum())


@pytest.fixture(scope="module")
def tiny_saes(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("saes")
    small = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=256, device="cpu")
    for model, l1 in (("tiny-RN", 1e-4), ("tiny-ViT", 1e-2)):
        cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 30, lr=1e-3, l1_coefficient=l1, **small)
        train_sae(caches[(model, "train")], out / model, cfg)
    return out


def test_compare_end_to_end_on_the_tiny_models(caches, tiny_saes, tmp_path):
    settings = CompareSettings(k=9, knn_k=5, permutations=9, interval_splits=4)
    result = compare_saes(caches[("tiny-RN", "test")], tiny_saes / "tiny-RN", caches[("tiny-ViT", "test")],
                          tiny_saes / "tiny-ViT", tmp_path / "cmp", settings=settings)
    validate(json.loads((tmp_path / "cmp" / "comparison.json").read_text()), "comparison")
    from saesuite.cache.reader import ActivationCache

    xa = ActivationCache.open(caches[("tiny-RN", "test")]).read_all().astype(float)
    xb = ActivationCache.open(caches[("tiny-ViT", "test")]).read_all().astype(float)
    assert result["linear_cka"]["value"] == pytest.approx(cka_by_kernels(xa, xb), rel=1e-6)
    assert result["debiased_cka"]["value"] == pytest.approx(debiased_cka(xa, xb), rel=1e-9)
    assert result["topk_overlap_all_pairs"]["analytic_chance"] == pytest.approx(9 / 120)
    assert result["mutual_knn"]["analytic_chance"] == pytest.approx(5 / 119)
    for key in ("topk_overlap", "linear_cka", "debiased_cka", "rbf_cka", "mutual_knn"):
        record = result[key]
        assert record["permutations"] == 9 and record["n"] == 120 and record["p_floor"] == pytest.approx(0.1)
        if record["value"] is not None:
            assert 0.1 <= record["p_value"] <= 1 and record["p_at_floor"] == (record["p_value"] == pytest.approx(0.1))
            assert record["interval"]["splits"] == 4 and record["interval"]["low"] <= record["value"] <= record["interval"]["high"]
    assert result["alive_a"] + result["dead_a"] == result["latents_a"] == 128
    pairs = pd.read_csv(tmp_path / "cmp" / "pairs.csv")
    assert set(pairs["method"]) <= {"overlap", "correlation"}
    assert len(pd.read_csv(tmp_path / "cmp" / "null.csv")) == 9
    # an SAE compared with itself: every alive feature finds itself, and pairs with itself
    same = compare_saes(caches[("tiny-ViT", "test")], tiny_saes / "tiny-ViT", caches[("tiny-ViT", "test")],
                        tiny_saes / "tiny-ViT", tmp_path / "self", settings=settings)
    assert same["topk_overlap"]["value"] == 1.0 and same["linear_cka"]["value"] == pytest.approx(1.0)
    assert same["mutual_knn"]["value"] == 1.0 and same["overlap_pairing"]["value"] == 1.0
    assert same["topk_overlap"]["p_value"] == pytest.approx(0.1)  # 1 / (1 + 9): no permutation reaches 1
    assert same["topk_overlap"]["p_at_floor"] and same["linear_cka"]["interval"]["high"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="do not hold the same images"):
        compare_saes(caches[("tiny-RN", "train")], tiny_saes / "tiny-RN", caches[("tiny-ViT", "test")],
                     tiny_saes / "tiny-ViT", tmp_path / "bad")


def test_pair_correlations_from_sparse_moments_equal_numpy_on_dense_columns():
    """Pearson correlation of matched columns, against np.corrcoef; a constant column correlates 0."""
    from saesuite.compare.features import pair_correlations

    rng = np.random.default_rng(11)
    a = np.maximum(rng.normal(size=(400, 30)) - 1.0, 0) * rng.uniform(0.1, 50, size=30)
    b = np.maximum(a[:, rng.permutation(30)] + rng.normal(size=(400, 30)) - 0.5, 0)
    a[:, 4] = 2.5  # fires on every image with one value: no correlation
    fa, fb = np.r_[4, rng.integers(0, 30, 50)], np.r_[0, rng.integers(0, 30, 50)]
    got = pair_correlations(sp.csr_matrix(a), sp.csr_matrix(b), fa, fb)
    want = [0.0 if i == 4 or b[:, j].std() == 0 else np.corrcoef(a[:, i], b[:, j])[0, 1] for i, j in zip(fa, fb)]
    assert got == pytest.approx(want, abs=1e-12)
    assert (got[fa == 4] == 0).all() and (fa == 4).any()


def test_streamed_cka_moments_equal_the_whole_matrix_ones_for_sparse_dense_and_mixed_chunks():
    """StreamingMoments over row chunks against cross_moments of the whole matrices (float64): sparse chunks
    exactly, dense float32 GEMM chunks (shifted by the first chunk's means) within 1e-7 of each statistic."""
    from dataclasses import astuple

    from saesuite.compare.cka import StreamingMoments, cross_moments

    rng = np.random.default_rng(12)
    x = (np.maximum(rng.normal(size=(500, 40)) + 0.8, 0) * 3).astype(np.float32)  # dense, far from centred
    y = np.maximum(rng.normal(size=(500, 30)) - 1.0, 0).astype(np.float32)
    want = np.array(astuple(cross_moments(x.astype(np.float64), y.astype(np.float64))), float)
    for mode, tol in (("sparse", 1e-12), ("dense", 1e-7), ("mixed", 1e-7), ("one side dense", 1e-7)):
        sm = StreamingMoments(40, 30, block=16)  # G read in three row blocks
        for i, s in enumerate(range(0, 500, 128)):
            dense = mode == "dense" or (mode == "mixed" and i % 2)
            xc, yc = x[s : s + 128], y[s : s + 128]
            if mode == "one side dense":
                sm.add(xc, sp.csr_matrix(yc))
            else:
                sm.add(xc, yc) if dense else sm.add(sp.csr_matrix(xc), sp.csr_matrix(yc))
            if i == 1:
                sm.moments()  # reading the statistics midway leaves the accumulator as it was
        got = np.array(astuple(sm.moments()), float)
        assert got == pytest.approx(want, rel=tol), mode
        assert np.array(astuple(sm.moments()), float).tolist() == got.tolist(), mode
    # x against itself: one object per chunk (each conversion made once) gives what two copies give
    want = np.array(astuple(cross_moments(x.astype(np.float64), x.astype(np.float64))), float)
    for sparse, tol in ((True, 1e-12), (False, 1e-6)):  # dense float32 Gram: 1.4e-7 measured
        once, twice = StreamingMoments(40, 40, block=16), StreamingMoments(40, 40, block=16)
        for s in range(0, 500, 128):
            chunk = sp.csr_matrix(x[s : s + 128]) if sparse else x[s : s + 128]
            once.add(chunk, chunk)
            twice.add(chunk, chunk.copy())
        got = np.array(astuple(once.moments()), float)
        assert got.tolist() == np.array(astuple(twice.moments()), float).tolist(), sparse
        assert got == pytest.approx(want, rel=tol), sparse
