"""The planted two-model benchmark: the comparison finds the shared features, CKA rises with them."""

import numpy as np
import pytest

from saesuite.compare.features import CompareSettings
from saesuite.compare.planted_pairs import PlantedPairConfig, cka_sweep, evaluate_planted, make_planted_pair

SETTINGS = CompareSettings(k=20, knn_k=10, knn_rows=1500, rbf_rows=1500, permutations=0, interval_splits=0)
SMALL = PlantedPairConfig(n=3000, shared=24, own_a=24, own_b=24, d_a=40, d_b=32)


def test_planted_pair_has_the_stated_shapes_and_true_pairs():
    pair = make_planted_pair(SMALL)
    assert pair.x_a.shape == (3000, 40) and pair.x_b.shape == (3000, 32)
    assert pair.codes_a.shape == (3000, 48) == pair.codes_b.shape and len(pair.true_pairs) == 24
    a, b = zip(*pair.true_pairs)
    corr = [np.corrcoef(pair.codes_a[:, i].toarray().ravel(), pair.codes_b[:, j].toarray().ravel())[0, 1] for i, j in pair.true_pairs]
    assert min(corr) > 0.5 and len(set(a)) == len(set(b)) == 24


def test_comparison_finds_the_shared_pairs():
    result = evaluate_planted(SMALL, SETTINGS)
    assert result["correlation_pairing"]["precision"] == 1.0 and result["correlation_pairing"]["recall"] == 1.0
    assert result["overlap_pairing"]["precision"] == 1.0 and result["overlap_pairing"]["recall"] >= 0.6


def test_cka_rises_with_the_shared_fraction():
    rows = cka_sweep(SMALL, SETTINGS, [0.0, 0.5, 1.0])
    for key in ("debiased_cka", "linear_cka", "rbf_cka", "mutual_knn", "overlap_pairing"):
        values = [r[key] for r in rows]
        assert values[0] < values[1] < values[2], (key, values)
    assert abs(rows[0]["debiased_cka"]) < 0.02
