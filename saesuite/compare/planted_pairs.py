"""A two-model planted benchmark for the comparison: known shared features, known answers.

Per image, a sparse non-negative code ``z [n, S + O_A + O_B]`` over ``S`` shared features
and ``O_A``, ``O_B`` features of each model's own (each fires with probability
``density`` at a magnitude uniform in [1, 3]). Model A's activations are a random
mixing of its features, ``x_A = z[:, shared ∪ own_A] @ D_A + noise`` with
``D_A [S + O_A, d_A]``, model B's likewise with its own ``D_B`` of another width.
Each model's "SAE code" is its feature activations in a random order of its own, seen
through independent multiplicative noise and spurious firings (an imperfect SAE).
The comparison should pair shared feature ``s`` of A with shared feature ``s`` of B
and nothing else (pairing precision and recall), and CKA should rise with ``S``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse as sp

from saesuite.compare.features import CompareSettings, PairComparison, Side


@dataclass(frozen=True)
class PlantedPairConfig:
    n: int = 4000  # images
    shared: int = 48  # features both models have
    own_a: int = 48  # features only A has
    own_b: int = 48
    d_a: int = 64  # activation widths
    d_b: int = 48
    density: float = 0.02  # probability that a feature fires on an image
    code_noise: float = 0.2  # multiplicative noise of the SAE codes (sd)
    spurious: float = 0.002  # probability of a spurious firing per (image, latent)
    act_noise: float = 0.05  # additive noise of the activations (sd, relative to the signal's)
    seed: int = 0


@dataclass
class PlantedPair:
    """Two models' activations ``x_* [n, d_*]``, sparse codes ``codes_* [n, F_*]`` and the true pairs."""

    x_a: np.ndarray
    x_b: np.ndarray
    codes_a: sp.csr_matrix
    codes_b: sp.csr_matrix
    true_pairs: set[tuple[int, int]]  # (latent of A, latent of B) that code the same shared feature


def make_planted_pair(cfg: PlantedPairConfig) -> PlantedPair:
    rng = np.random.default_rng(cfg.seed)
    total = cfg.shared + cfg.own_a + cfg.own_b
    fires = rng.random((cfg.n, total)) < cfg.density
    z = fires * rng.uniform(1, 3, size=(cfg.n, total))
    feats_a = np.r_[np.arange(cfg.shared), cfg.shared + np.arange(cfg.own_a)]
    feats_b = np.r_[np.arange(cfg.shared), cfg.shared + cfg.own_a + np.arange(cfg.own_b)]

    def model(feats, d):
        mixing = rng.normal(size=(len(feats), d)) / np.sqrt(d)
        x = z[:, feats] @ mixing
        x += cfg.act_noise * x.std() * rng.normal(size=x.shape)
        order = rng.permutation(len(feats))  # latent j of this model's SAE codes feature feats[order[j]]
        code = z[:, feats[order]] * np.maximum(1 + cfg.code_noise * rng.normal(size=(cfg.n, len(feats))), 0)
        code += (rng.random(code.shape) < cfg.spurious) * rng.uniform(0.5, 2, size=code.shape)
        return x.astype(np.float32), sp.csr_matrix(code), order

    x_a, codes_a, order_a = model(feats_a, cfg.d_a)
    x_b, codes_b, order_b = model(feats_b, cfg.d_b)
    latent_b = {int(f): j for j, f in enumerate(order_b)}
    true_pairs = {(j, latent_b[int(f)]) for j, f in enumerate(order_a) if f < cfg.shared}
    return PlantedPair(x_a, x_b, codes_a, codes_b, true_pairs)


def pairing_quality(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict:
    """Precision and recall of found pairs against the true ones."""
    hits = len(found & truth)
    return {
        "found": len(found),
        "true": len(truth),
        "correct": hits,
        "precision": hits / len(found) if found else None,
        "recall": hits / len(truth) if truth else None,
    }


def evaluate_planted(cfg: PlantedPairConfig, settings: CompareSettings) -> dict:
    """Compare a planted pair; pairing precision and recall of both matchings, and the scores."""
    pair = make_planted_pair(cfg)
    a = Side.build(pair.x_a, pair.codes_a, settings.k)
    b = Side.build(pair.x_b, pair.codes_b, settings.k)
    scores = PairComparison(a, b, settings, np.random.default_rng(settings.seed)).scores(details=True)
    details = scores.pop("_details")
    out = {"config": asdict(cfg), "scores": scores}
    for method in ("overlap", "correlation"):
        frame = details[f"{method}_pairs"]
        found = frame[frame["above_threshold"]]
        out[f"{method}_pairing"] = pairing_quality(set(zip(found["feature_a"], found["feature_b"])), pair.true_pairs)
    return out


def cka_sweep(cfg: PlantedPairConfig, settings: CompareSettings, shared_fractions: list[float]) -> list[dict]:
    """Scores as the shared fraction ``S / (S + O)`` grows at a fixed number of features per model."""
    width = cfg.shared + cfg.own_a
    rows = []
    for fraction in shared_fractions:
        shared = int(round(fraction * width))
        sub = replace(cfg, shared=shared, own_a=width - shared, own_b=width - shared)
        pair = make_planted_pair(sub)
        a = Side.build(pair.x_a, pair.codes_a, settings.k)
        b = Side.build(pair.x_b, pair.codes_b, settings.k)
        scores = PairComparison(a, b, settings, np.random.default_rng(settings.seed)).scores()
        rows.append({"shared_fraction": fraction, **{k: scores[k] for k in (
            "linear_cka", "debiased_cka", "rbf_cka", "mutual_knn", "topk_overlap", "overlap_pairing", "correlation_pairing")}})
    return rows


def run_planted_config(config: dict) -> tuple[dict, list[dict]]:
    """The benchmark from a config (``config/planted_compare.yaml``, checked against its schema)."""
    from saesuite.schema import validate

    validate(config, "planted_compare")
    cfg = PlantedPairConfig(**config["planted"])
    settings = CompareSettings(**config["settings"], permutations=0, interval_splits=0)
    return evaluate_planted(cfg, settings), cka_sweep(cfg, settings, list(config["shared_fractions"]))
