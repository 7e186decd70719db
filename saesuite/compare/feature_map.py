"""Both models' features on one map: a 2-D layout of every alive feature by its activation profile.

A feature's profile is its column of SAE codes over the images both models saw (the comparison's
rows), ``p_i [n]``, scaled to unit length: two features firing on the same images with
proportional strengths have the same profile, whichever model they belong to. The alive features
of both models (positive on at least ``k`` images, the comparison's definition) are stacked,
reduced to ``svd_dims`` dimensions by a truncated SVD of the sparse ``[features, n]`` matrix
(randomised, seeded), normalised again (so Euclidean distance orders like cosine), and laid out
in 2-D by UMAP (umap-learn, seeded, so single-threaded and the same on every rerun). A matched pair
of features sits close; a concept only one model has stands apart among that model's colour.
UMAP rather than scikit-learn's t-SNE: at 2 x 16,384 features over 50,000 images the whole map takes
about one CPU-minute, Barnes-Hut t-SNE many times that (``benchmarks/bench_feature_map.py``).

Its quality is measured on the comparison's own one-to-one pairs (overlap pairing above its
threshold): ``pair_closer_than_random``, the fraction of matched pairs whose map distance is
smaller than that of a random pair of one feature from each model, and the ratio of the median
matched-pair distance to the median random-pair distance.

Files (``compare/{pair}/``; read them with :func:`read_feature_map`):

* ``feature_map.csv`` -- one row per feature of both models (alive or not):
  ``model`` (its name), ``side`` (``a``/``b``), ``latent``, ``alive`` (bool), ``x``, ``y`` (empty for a
  feature not on the map: not alive), ``fire_count`` (images it is positive on), ``top_class`` (the class with the largest
  share of its activation, -1 for none) and ``top_class_name``.
* ``feature_map.json`` -- ``{model_a, model_b, method (words), settings {svd_dims, n_neighbors, min_dist, seed, ...},
  n_images, features {a, b}, placed {a, b}, quality {pairs, pair_closer_than_random,
  median_pair_distance, median_random_distance, distance_ratio}, classes}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from saesuite.files import write_json_atomic

FEATURE_MAP_CSV, FEATURE_MAP_JSON = "feature_map.csv", "feature_map.json"
METHOD = (
    "each alive feature's activation profile over the images both models saw (its column of SAE codes, scaled to "
    "unit length), both models' features together, reduced by a truncated SVD to {svd_dims} dimensions, scaled to "
    "unit length again, and laid out in 2-D by UMAP ({n_neighbors} neighbours, minimum distance {min_dist}, seed "
    "{seed}); features that fire on the same images sit together, whichever model they belong to"
)


@dataclass(frozen=True)
class MapSettings:
    """The map's knobs (written into ``feature_map.json``)."""

    svd_dims: int = 50  # dimensions kept by the truncated SVD before UMAP
    n_neighbors: int = 15  # UMAP's neighbourhood (at most the features on the map - 1)
    min_dist: float = 0.1  # UMAP's smallest distance between placed points
    random_pairs: int = 10_000  # random cross-model pairs the matched pairs' distances are set against
    seed: int = 0


def unit_profiles(codes: list[sp.spmatrix]) -> sp.csr_matrix:
    """``[sum F_i, n]`` CSR: the columns of each ``codes [n, F_i]``, stacked, each scaled to unit length."""
    stacked = sp.hstack([sp.csc_matrix(c, dtype=np.float64) for c in codes], format="csc").T.tocsr()
    norms = np.sqrt(np.asarray(stacked.multiply(stacked).sum(axis=1)).ravel())
    return sp.diags(1 / np.maximum(norms, 1e-300)) @ stacked


def layout(profiles: sp.csr_matrix, settings: MapSettings) -> np.ndarray:
    """``[m, 2]`` UMAP coordinates of ``m`` profile rows after the truncated SVD (float64).

    Fewer than 4 rows get no UMAP (it needs a neighbourhood): their first two SVD coordinates."""
    import umap  # imported here: numba's start-up is paid only by the map

    m, n = profiles.shape
    if m < 2 or n < 2:
        return np.zeros((m, 2))
    dims = max(1, min(settings.svd_dims, m - 1, n - 1))
    reduced = TruncatedSVD(dims, algorithm="randomized", n_iter=5, random_state=settings.seed).fit_transform(profiles)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    if m < 4:
        return np.pad(reduced[:, :2], ((0, 0), (0, max(0, 2 - reduced.shape[1]))))
    reducer = umap.UMAP(n_neighbors=min(settings.n_neighbors, m - 1), min_dist=settings.min_dist,
                        random_state=settings.seed, n_jobs=1)
    return reducer.fit_transform(reduced).astype(np.float64)


def top_classes(codes: sp.spmatrix, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``[F]``: per feature, the class with the largest share of its activation (-1 where it never fires)."""
    onehot = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), n_classes))
    mass = (sp.csc_matrix(codes).T @ onehot).toarray()
    return np.where(mass.sum(axis=1) > 0, mass.argmax(axis=1), -1)


def pair_quality(coords: dict[str, np.ndarray], pairs: list[tuple[int, int]], rng: np.random.Generator,
                 random_pairs: int) -> dict:
    """How much closer matched pairs ``(latent of A, latent of B)`` sit than random pairs of placed features.

    ``coords``: ``{"a": [F_A, 2], "b": [F_B, 2]}`` with NaN rows for features not placed.
    ``pair_closer_than_random``: the probability that a matched pair is closer than a random pair of
    one placed feature from each model (ties count half); 0.5 is a map blind to the pairing."""
    placed_a, placed_b = (np.flatnonzero(~np.isnan(coords[s][:, 0])) for s in "ab")
    on_map_a, on_map_b = set(placed_a.tolist()), set(placed_b.tolist())
    pairs = [(i, j) for i, j in pairs if i in on_map_a and j in on_map_b]
    out = {"pairs": len(pairs), "pair_closer_than_random": None, "median_pair_distance": None,
           "median_random_distance": None, "distance_ratio": None}
    if not pairs or not len(placed_a) or not len(placed_b):
        return out
    i, j = np.array(pairs).T
    matched = np.linalg.norm(coords["a"][i] - coords["b"][j], axis=1)
    ri, rj = rng.choice(placed_a, random_pairs), rng.choice(placed_b, random_pairs)
    random = np.sort(np.linalg.norm(coords["a"][ri] - coords["b"][rj], axis=1))
    closer = (len(random) - np.searchsorted(random, matched, side="right")
              + 0.5 * (np.searchsorted(random, matched, side="right") - np.searchsorted(random, matched, side="left")))
    pair_median, random_median = float(np.median(matched)), float(np.median(random))
    out.update(pair_closer_than_random=float(np.mean(closer / len(random))), median_pair_distance=pair_median,
               median_random_distance=random_median,
               distance_ratio=pair_median / random_median if random_median > 0 else None)
    return out


def feature_map(codes: dict[str, sp.spmatrix], alive: dict[str, np.ndarray], models: dict[str, str],
                labels: np.ndarray, classes: list[str], pairs: list[tuple[int, int]],
                settings: MapSettings = MapSettings()) -> tuple[pd.DataFrame, dict]:
    """The map of both models' features: ``(feature_map.csv's table, feature_map.json's record)``.

    ``codes``, ``alive``, ``models``: per side (``"a"``, ``"b"``) the codes ``[n, F]`` over the shared
    images, the alive flags ``[F]`` and the model's name; ``labels [n]`` the images' classes and
    ``classes`` their names (may be empty); ``pairs``: the matched ``(latent of A, latent of B)``.
    """
    n_classes = max(len(classes), int(labels.max()) + 1 if len(labels) else 0)
    names = list(classes) + [str(c) for c in range(len(classes), n_classes)]
    placed = layout(unit_profiles([codes[s][:, alive[s]] for s in "ab"]), settings)
    coords, frames, start = {}, [], 0
    for side in "ab":
        xy = np.full((len(alive[side]), 2), np.nan)
        xy[alive[side]] = placed[start : start + int(alive[side].sum())]
        start += int(alive[side].sum())
        coords[side] = xy
        top = top_classes(codes[side], labels, n_classes)
        frames.append(pd.DataFrame({
            "model": models[side], "side": side, "latent": np.arange(len(xy)), "alive": alive[side],
            "x": xy[:, 0], "y": xy[:, 1], "fire_count": np.asarray((codes[side] > 0).sum(axis=0)).ravel(),
            "top_class": top, "top_class_name": [names[c] if c >= 0 else "" for c in top],
        }))
    quality = pair_quality(coords, pairs, np.random.default_rng(settings.seed), settings.random_pairs)
    record = {
        "model_a": models["a"], "model_b": models["b"], "method": METHOD.format(**asdict(settings)),
        "settings": asdict(settings), "n_images": int(len(labels)),
        "features": {s: int(len(alive[s])) for s in "ab"}, "placed": {s: int(alive[s].sum()) for s in "ab"},
        "quality": quality, "classes": names,
    }
    return pd.concat(frames, ignore_index=True), record


def write_feature_map(out_dir: str | Path, table: pd.DataFrame, record: dict) -> None:
    """Write ``feature_map.csv`` and ``feature_map.json`` into ``out_dir`` (the comparison's folder)."""
    table.to_csv(Path(out_dir) / FEATURE_MAP_CSV, index=False, float_format="%.6g")
    write_json_atomic(Path(out_dir) / FEATURE_MAP_JSON, record)


def read_feature_map(compare_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """``(table, record)`` of a comparison folder's feature map; the table's ``alive`` is bool, dead rows' x, y NaN."""
    compare_dir = Path(compare_dir)
    table = pd.read_csv(compare_dir / FEATURE_MAP_CSV, keep_default_na=False, na_values={"x": [""], "y": [""]})
    table["alive"] = table["alive"].astype(str).eq("True")
    return table, json.loads((compare_dir / FEATURE_MAP_JSON).read_text())
