"""Both models' features on one map (saesuite.compare.feature_map), tested on planted pairs."""

import numpy as np
import pytest
import scipy.sparse as sp

from saesuite.compare.feature_map import (
    MapSettings, feature_map, pair_quality, read_feature_map, top_classes, unit_profiles, write_feature_map,
)
from saesuite.compare.features import Side
from saesuite.compare.planted_pairs import PlantedPairConfig, make_planted_pair

SETTINGS = MapSettings()


@pytest.fixture(scope="module")
def planted():
    """A planted pair with known shared features, its sides (alive flags as the comparison computes them) and map."""
    pair = make_planted_pair(PlantedPairConfig(n=3000, shared=40, own_a=40, own_b=40, seed=3))
    a, b = Side.build(pair.x_a, pair.codes_a, 9), Side.build(pair.x_b, pair.codes_b, 9)
    labels = np.random.default_rng(0).integers(0, 5, 3000)
    table, record = feature_map({"a": a.codes, "b": b.codes}, {"a": a.alive, "b": b.alive}, {"a": "A", "b": "B"},
                                labels, ["cat", "dog", "car", "ship", "tree"], sorted(pair.true_pairs), SETTINGS)
    return pair, a, b, labels, table, record


def test_shared_features_land_next_to_their_partners(planted):
    pair, a, b, _, table, record = planted
    xy = {s: table[table["side"] == s][["x", "y"]].to_numpy() for s in "ab"}
    truth = np.array(sorted(pair.true_pairs))
    partner = np.linalg.norm(xy["a"][truth[:, 0]] - xy["b"][truth[:, 1]], axis=1)
    rng = np.random.default_rng(1)
    random = np.linalg.norm(xy["a"][rng.integers(0, len(xy["a"]), 5000)] - xy["b"][rng.integers(0, len(xy["b"]), 5000)], axis=1)
    assert np.median(partner) < 0.2 * np.median(random)
    # a shared feature's nearest feature of the other model is, for most of them, its partner
    nearest = np.linalg.norm(xy["a"][truth[:, 0]][:, None] - xy["b"][None], axis=2).argmin(axis=1)
    assert (nearest == truth[:, 1]).mean() > 0.8
    q = record["quality"]
    assert q["pairs"] == len(truth) and q["pair_closer_than_random"] > 0.95 and q["distance_ratio"] < 0.2
    assert record["placed"] == {"a": int(a.alive.sum()), "b": int(b.alive.sum())}


def test_the_map_is_deterministic_and_reads_back(planted, tmp_path):
    pair, a, b, labels, table, record = planted
    again = feature_map({"a": a.codes, "b": b.codes}, {"a": a.alive, "b": b.alive}, {"a": "A", "b": "B"},
                        labels, ["cat", "dog", "car", "ship", "tree"], sorted(pair.true_pairs), SETTINGS)
    np.testing.assert_array_equal(again[0][["x", "y"]].to_numpy(), table[["x", "y"]].to_numpy())
    dead = a.alive.copy()
    dead[:3] = False  # a feature left off the map keeps its row, without coordinates
    table, record = feature_map({"a": a.codes, "b": b.codes}, {"a": dead, "b": b.alive}, {"a": "A", "b": "B"},
                                labels, ["cat", "dog", "car", "ship", "tree"], sorted(pair.true_pairs), SETTINGS)
    write_feature_map(tmp_path, table, record)
    back, meta = read_feature_map(tmp_path)
    assert meta == record and back["alive"].dtype == bool
    assert back["x"].isna().to_numpy()[:3].all() and not back["x"][3:].isna().any()
    assert back["alive"].tolist() == [*dead.tolist(), *b.alive.tolist()]
    assert back["top_class_name"].iloc[5] == ["cat", "dog", "car", "ship", "tree"][back["top_class"].iloc[5]]


def test_top_classes_and_profiles_match_dense_numpy():
    rng = np.random.default_rng(0)
    dense = sp.random(200, 12, density=0.1, random_state=1).toarray()
    dense[:, 4] = 0  # a feature that never fires
    codes = sp.csr_matrix(dense)
    labels = rng.integers(0, 3, 200)
    mass = np.stack([dense[labels == c].sum(0) for c in range(3)], axis=1)
    assert top_classes(codes, labels, 3).tolist() == np.where(mass.sum(1) > 0, mass.argmax(1), -1).tolist()
    profiles = unit_profiles([codes[:, :5], codes[:, 5:]]).toarray()
    norms = np.linalg.norm(dense, axis=0)
    np.testing.assert_allclose(profiles, np.divide(dense.T, norms[:, None], out=np.zeros_like(dense.T),
                                                   where=norms[:, None] > 0))


def test_pair_quality_on_a_known_layout():
    """Matched pairs at distance 0 are closer than every random pair; pairs of unplaced features are dropped."""
    coords = {"a": np.array([[0.0, 0], [10, 0], [np.nan, np.nan]]), "b": np.array([[0.0, 0], [10, 0], [5, 5]])}
    q = pair_quality(coords, [(0, 0), (1, 1), (2, 2)], np.random.default_rng(0), 1000)
    assert q["pairs"] == 2 and q["median_pair_distance"] == 0
    # random pairs: distance 0 with probability 1/3 (ties count half), else 10 or sqrt(50)
    assert q["pair_closer_than_random"] == pytest.approx(1 - 0.5 / 3, abs=0.03)


def test_the_figure_draws_every_placed_feature_once_per_panel(planted, tmp_path, monkeypatch):
    import matplotlib.figure

    from saesuite.compare.figures import feature_map_figure
    from saesuite.figures import FULL

    _, a, b, _, table, record = planted
    write_feature_map(tmp_path, table, record)
    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *args, **kw: drawn.append(fig))
    feature_map_figure(tmp_path, "unused.png")
    (fig,) = drawn
    by_model, by_class = fig.axes
    placed = int(a.alive.sum() + b.alive.sum())
    for ax in (by_model, by_class):
        assert sum(len(c.get_offsets()) for c in ax.collections) == placed
    labels = [t.get_text() for t in by_model.get_legend().get_texts()]
    assert labels == [f"A ({int(a.alive.sum())} features)", f"B ({int(b.alive.sum())} features)"]
    assert fig.get_figwidth() == pytest.approx(FULL)
    assert f"{record['quality']['pairs']} matched pairs" in fig.texts[0].get_text()
