"""Intervals of the comparison scores against simulations with a known answer, and the p-value floor."""

import numpy as np
import pytest
import scipy.sparse as sp

from saesuite.compare.chance import disjoint_halves, half_sd, p_text, p_value_fields, subsampling_interval
from saesuite.compare.cka import debiased_cka, linear_cka
from saesuite.compare.knn import mutual_knn
from saesuite.compare.overlap import alive_features, best_overlap, overlap_counts, sparse_topk
from saesuite.compare.pairing import match_dense

P, Q, R = 6, 5, 3  # widths of the two representations and of their shared latent


def gaussian_pair(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x = z A + e``, ``y = z B + e'`` with ``z ~ N(0, I_R)``, unit noise; fixed ``A``, ``B``."""
    fixed = np.random.default_rng(0)
    a, b = fixed.normal(size=(R, P)), fixed.normal(size=(R, Q))
    z = rng.normal(size=(n, R))
    return z @ a + rng.normal(size=(n, P)), z @ b + rng.normal(size=(n, Q))


def population_linear_cka() -> float:
    """Closed form: ``||S_xy||_F^2 / (||S_xx||_F ||S_yy||_F)`` with ``S_xy = A'B``, ``S_xx = A'A + I``."""
    fixed = np.random.default_rng(0)
    a, b = fixed.normal(size=(R, P)), fixed.normal(size=(R, Q))
    sxy, sxx, syy = a.T @ b, a.T @ a + np.eye(P), b.T @ b + np.eye(Q)
    return float((sxy**2).sum() / np.sqrt((sxx**2).sum() * (syy**2).sum()))


def interval_of(statistic, data, rate: float, rng, splits: int = 16, level: float = 0.95, bounds=(-1.0, 1.0)) -> dict:
    """The pipeline's interval (:mod:`saesuite.compare.chance`) for ``statistic(*rows of data)``."""
    n = data[0].shape[0]
    value = statistic(*data)
    first, second = [], []
    for _ in range(splits):
        h1, h2 = disjoint_halves(np.zeros(n, np.int64), rng)
        first.append(statistic(*(d[h1] for d in data)))
        second.append(statistic(*(d[h2] for d in data)))
    sd_m, valid = half_sd(np.array(first), np.array(second))
    return {"value": value, **subsampling_interval(value, sd_m, n // 2, n, rate, valid, level, bounds)}


def test_disjoint_halves_are_disjoint_equal_and_halve_every_stratum():
    strata = np.repeat([0, 1, 2, 3], [10, 7, 1, 40])
    h1, h2 = disjoint_halves(strata, np.random.default_rng(0))
    assert len(h1) == len(h2) == 5 + 3 + 0 + 20 and not set(h1) & set(h2)
    for label, size in ((0, 10), (1, 7), (2, 1), (3, 40)):
        assert (strata[h1] == label).sum() == (strata[h2] == label).sum() == size // 2


def test_split_half_interval_covers_the_population_linear_cka_at_its_level():
    """400 simulated data sets, n = 200: the 95% interval at rate sqrt(n) covers the closed-form
    population CKA about 95% of the time, always brackets the full-n value, and its standard
    error matches the spread of the estimates across data sets."""
    truth, rng = population_linear_cka(), np.random.default_rng(1)
    for statistic in (debiased_cka, linear_cka):
        out = [interval_of(statistic, gaussian_pair(200, rng), 0.5, rng) for _ in range(400)]
        covered = np.mean([o["low"] <= truth <= o["high"] for o in out])
        assert 0.92 <= covered <= 0.98, (statistic.__name__, covered)
        assert all(o["low"] <= o["value"] <= o["high"] for o in out)
        spread = np.std([o["value"] for o in out], ddof=1)
        assert np.mean([o["se"] for o in out]) == pytest.approx(spread, rel=0.2)


def codes_pair(n: int, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two ReLU 'SAE codes' of 40 features each reading the same 8 latents through different noise."""
    d = np.random.default_rng(0).normal(size=(8, 40))
    z = rng.normal(size=(n, 8))
    a = np.maximum(z @ d + 2 * rng.normal(size=(n, 40)) - 4, 0)
    b = np.maximum(z @ d[:, ::-1] + 2 * rng.normal(size=(n, 40)) - 4, 0)
    return sp.csr_matrix(a), sp.csr_matrix(b)


def topk_overlap(a: sp.csr_matrix, b: sp.csr_matrix, k: int = 9) -> float:
    ta, tb = sparse_topk(a, k), sparse_topk(b, k)
    ta, tb = ta[alive_features(ta)], tb[alive_features(tb)]
    return float(best_overlap(overlap_counts(ta, tb, a.shape[0]).tocsr(), k).mean())


def test_topk_overlap_does_not_concentrate_with_n_and_its_rate_zero_interval_is_calibrated():
    """Top-k overlap drifts with n (so folds of n/2 images do not bracket it) and its spread across
    data sets does not shrink with n (rate n^0); the split-half interval at that rate has the spread
    of the estimates at n as its standard error and covers the mean score at n (simulated truth)."""
    rng = np.random.default_rng(2)
    mc = {n: np.array([topk_overlap(*codes_pair(n, rng)) for _ in range(60)]) for n in (400, 1600)}
    assert mc[400].mean() - mc[1600].mean() > 0.03  # the score depends on n
    assert mc[400].std(ddof=1) / mc[1600].std(ddof=1) < 1.6  # sqrt(n) would make it 2
    n = 800
    values = np.array([topk_overlap(*codes_pair(n, rng)) for _ in range(60)])
    truth, spread = values.mean(), values.std(ddof=1)
    out = [interval_of(topk_overlap, codes_pair(n, rng), 0.0, rng, splits=10, bounds=(0, 1)) for _ in range(30)]
    assert 0.7 <= np.mean([o["se"] for o in out]) / spread <= 1.6
    assert np.mean([o["low"] <= truth <= o["high"] for o in out]) >= 0.85
    half_means = [np.mean([topk_overlap(*(c[h] for c in data)) for h in disjoint_halves(np.zeros(n, np.int64), rng)])
                  for data in (codes_pair(n, rng) for _ in range(10))]
    assert np.mean(half_means) - truth > 2 * spread  # halves alone would be biased: the interval is centred on the value


def test_permutation_p_value_at_its_floor_reads_as_an_upper_bound():
    null = np.linspace(0, 0.5, 19)
    top = p_value_fields(0.9, null)
    assert top == {"p_value": pytest.approx(1 / 20), "permutations": 19, "p_floor": pytest.approx(1 / 20), "p_at_floor": True}
    assert p_text(top) == "p ≤ 1/20" and p_text(top, latex=True) == r"p \le 1/20"
    mid = p_value_fields(0.4, null)  # 4 of 19 null values reach 0.4: p = 5/20
    assert mid["p_value"] == pytest.approx(5 / 20) and not mid["p_at_floor"] and p_text(mid) == "p = 0.25"
    none = p_value_fields(0.4, np.empty(0))
    assert none == {"p_value": None, "permutations": 0, "p_floor": None, "p_at_floor": False} and p_text(none) == "p n/a"


def mutual_knn_of(x: np.ndarray, y: np.ndarray) -> float:
    return mutual_knn(x, y, 10)


def correlation_pairing(a: sp.csr_matrix, b: sp.csr_matrix, threshold: float = 0.5) -> float:
    """Fraction of A's features matched one-to-one (dense Hungarian on correlations) at or above the threshold."""
    a, b = a.toarray(), b.toarray()
    ok_a, ok_b = a.std(0) > 0, b.std(0) > 0
    corr = np.corrcoef(a[:, ok_a].T, b[:, ok_b].T)[: ok_a.sum(), ok_a.sum():]
    r, c = match_dense(corr)
    return float((corr[r, c] >= threshold).sum() / ok_a.sum())


@pytest.mark.parametrize("statistic, data, rate", [(mutual_knn_of, gaussian_pair, 0.5), (correlation_pairing, codes_pair, 0.0)])
def test_the_stated_rates_of_mutual_knn_and_correlation_pairing_give_calibrated_intervals(statistic, data, rate):
    """Simulated truth: the spread of the score over 50 data sets at n = 400 and its mean there. The
    split-half standard error at the stated rate (sqrt(n); n^0 for a pairing fraction) matches the
    spread (no smaller than 0.8 of it; mutual kNN falls towards chance as n grows, so sqrt(n) is
    conservative for it) and the interval covers the mean score at n."""
    rng, n = np.random.default_rng(3), 400
    values = np.array([statistic(*data(n, rng)) for _ in range(50)])
    out = [interval_of(statistic, data(n, rng), rate, rng, splits=6, bounds=(0, 1)) for _ in range(20)]
    ratio = np.mean([o["se"] for o in out]) / values.std(ddof=1)
    covered = np.mean([o["low"] <= values.mean() <= o["high"] for o in out])
    assert 0.8 <= ratio <= 1.8 and covered >= 0.85, (ratio, covered)
