"""Comparing two models' SAEs and activations over the same images: ``comparison.json`` and its tables.

Reads two activation caches of one dataset split (any cache in the documented format:
an open_clip model's, a user's model's or synthetic arrays; only the manifest's strings
and rows are read) and the SAE trained on each, encodes every (valid) image, and hands the
activations and sparse codes to :class:`saesuite.compare.features.PairComparison`.
Every headline score is written as a record ``{value, estimator, chance, analytic_chance,
null_mean, null_sd, null_q95, p_value, permutations, p_floor, p_at_floor, n,
excluded_rows, on, interval, spread}``:

* chance: the mean of the permutation null (B's images shuffled against A's, the
  whole pipeline re-run, matching included); ``p = (1 + #null >= observed) / (1 + R)``,
  whose floor ``1/(R+1)`` is flagged (``p_at_floor``: read it as ``p <= 1/(R+1)``);
  ``analytic_chance`` where a closed form exists (one pair's top-k overlap ``k/n``,
  mutual kNN ``k/(n-1)``);
* interval: split-half subsampling at the score's stated rate (:mod:`saesuite.compare.chance`),
  an interval for the score at this ``n``, centred on the value;
* spread: across SAE seeds when several SAEs per model are given (``spread.seeds``).

Dead features (positive on fewer than ``k`` images) are excluded and counted; rows of
zeros are left out of mutual kNN (cosine) and counted; top-k ties go to the lower image
index; the record of the run names n, k, dtype and hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from saesuite.cache.reader import ActivationCache
from saesuite.device import resolve_device
from saesuite.files import write_json_atomic
from saesuite.outputs import output_lock
from saesuite.compare.chance import half_sd, p_value_fields, subsampling_interval, summary
from saesuite.errors import ConfigError
from saesuite.evaluate.evaluation import check_sae_matches_cache, encode_chunks
from saesuite.compare.feature_map import MapSettings, feature_map, write_feature_map
from saesuite.compare.features import CompareSettings, PairComparison, Side
from saesuite.compare.knn import nonzero_rows
from saesuite.compare.passes import score_passes
from saesuite.sae.model import load_sae
from saesuite.schema import validate

ACTS, CODES = "raw hooked activations", "SAE codes"


@dataclass(frozen=True)
class Rate:
    """A score's convergence rate ``tau_n = n^exponent``, in words, and why."""

    exponent: float
    name: str
    why: str


SQRT_N = Rate(0.5, "sqrt(n)", "a smooth function of U- or V-statistics, or a mean over images of a local agreement")
NO_SHRINK = Rate(0.0, "n^0", "fixed-k top image sets are extreme order statistics: their fluctuation does not shrink with n")
THRESHOLDED = Rate(0.0, "n^0", "a fraction of features clearing a threshold after a matching: in simulation its spread "
                               "barely shrinks with n, so no shrinking is assumed")


@dataclass(frozen=True)
class Score:
    """What a headline score is computed on, its estimator, its rate and its range."""

    on: str
    estimator: str
    rate: Rate
    bounds: tuple[float, float] = (0.0, 1.0)


LINEAR = "biased linear CKA (Kornblith et al. 2019), feature-space formula on centred data"
DEBIASED = "linear CKA with Song et al.'s (2012) unbiased HSIC (debiased)"
RBF = ("minibatch RBF CKA (Nguyen et al. 2021): unbiased HSIC per random batch, averaged, then the ratio; "
       "bandwidth a fraction of the median pairwise distance per batch (rbf_cka_estimator); not Kornblith's biased RBF CKA")
KNN = "mutual k-NN alignment (Huh et al. 2024), cosine, self excluded"
TOPK = "top-k image overlap"
SCORES = {
    "topk_overlap": Score(f"{CODES}: mean over alive features of A of the best top-k image overlap with an alive feature of B", TOPK, NO_SHRINK),
    "topk_overlap_b_to_a": Score(f"{CODES}: mean over alive features of B of the best top-k image overlap with an alive feature of A", TOPK, NO_SHRINK),
    "topk_overlap_all_pairs": Score(f"{CODES}: mean top-k image overlap over all pairs of alive features", TOPK, NO_SHRINK),
    "overlap_pairing": Score(f"{CODES}: fraction of alive features of A matched one-to-one (Hungarian on top-k overlap) with overlap >= threshold",
                             "maximum-weight matching on top-k overlap counts", THRESHOLDED),
    "correlation_pairing": Score(f"{CODES}: fraction of alive features of A matched one-to-one (Hungarian on activation correlation) with correlation >= threshold",
                                 "maximum-weight matching on Pearson correlations across images", THRESHOLDED),
    "linear_cka": Score(ACTS, LINEAR, SQRT_N),
    "debiased_cka": Score(ACTS, DEBIASED, SQRT_N, (-1.0, 1.0)),
    "rbf_cka": Score(ACTS, RBF, SQRT_N, (-1.0, 1.0)),
    "mutual_knn": Score(f"{ACTS} (images whose activation row is non-zero in both models)", KNN, SQRT_N),
    "linear_cka_codes": Score(CODES, LINEAR, SQRT_N),
    "debiased_cka_codes": Score(CODES, DEBIASED, SQRT_N, (-1.0, 1.0)),
    "rbf_cka_codes": Score(CODES, RBF, SQRT_N, (-1.0, 1.0)),
    "mutual_knn_codes": Score(f"{CODES} (images where both codes are non-zero)", KNN, SQRT_N),
}
EXTRA = ("overlap_pairing_b", "overlap_pairing_count", "correlation_pairing_b", "correlation_pairing_count")
INTERVAL_METHOD = (
    "split-half subsampling (Politis & Romano 1994; no image drawn twice): each split divides the images at random "
    "into two disjoint halves of m = n/2 (kNN and RBF CKA: halves of their own rows); sd_m = sqrt(mean over splits of "
    "(s_1 - s_2)^2 / 2), which cancels the score's drift with the number of images; se = sd_m (m/n)^r at the score's "
    "stated rate n^r; interval = value -/+ t(splits, (1+level)/2) se, clipped to the score's range. It is an interval "
    "for the score's expectation at these n images (scores such as top-k overlap and mutual kNN change with n)"
)


def check_aligned(a: ActivationCache, b: ActivationCache) -> None:
    """Both caches must hold the same images in the same order."""
    ma, mb = a.manifest, b.manifest
    same = ma.get("dataset") == mb.get("dataset") and ma.get("split") == mb.get("split") and a.n == b.n
    if not same or not np.array_equal(a.labels(), b.labels()):
        raise ConfigError(
            f"caches {a.path} ({ma.get('dataset')}/{ma.get('split')}, n={a.n}) and {b.path} "
            f"({mb.get('dataset')}/{mb.get('split')}, n={b.n}) do not hold the same images in the same order; "
            "compare caches of one dataset split"
        )


def encode_sparse(sae_dir: str | Path, cache: ActivationCache, chunk_rows: int, device: str) -> sp.csr_matrix:
    """SAE codes of every row of the cache as a sparse ``[n, F]`` float64 CSR matrix."""
    sae, cfg = load_sae(sae_dir, device)
    check_sae_matches_cache(sae, cfg, sae_dir, cache)
    parts = [sp.csr_matrix(f.cpu().numpy().astype(np.float64)) for _, _, f, _ in encode_chunks(sae, cache, chunk_rows, device)]
    return sp.vstack(parts, format="csr")


def interval_record(value: float | None, first: pd.Series, second: pd.Series, m: float, n: int, score: Score,
                    level: float) -> dict | None:
    """The score's split-half interval (:func:`saesuite.compare.chance.subsampling_interval`); None when undefined."""
    sd_m, splits = half_sd(first.astype(float).to_numpy(), second.astype(float).to_numpy())
    if value is None or sd_m is None or splits < 2 or n <= 0:
        return None
    interval = subsampling_interval(value, sd_m, m, n, score.rate.exponent, splits, level, score.bounds)
    return {**interval, "method": "split-half subsampling", "rate": score.rate.name, "rate_exponent": score.rate.exponent,
            "rate_why": score.rate.why}


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def score_records(pc: PairComparison, observed: dict, null: pd.DataFrame, halves: pd.DataFrame,
                  seeds: pd.DataFrame | None) -> dict:
    """One record per score in :data:`SCORES` (value, estimator, chance, p-value, n, interval, seed spread),
    the pairing counts of :data:`EXTRA` and ``rbf_cka_estimator``."""
    s, n = pc.s, pc.n
    sizes, excluded = pc.sizes(), pc.excluded()
    first = halves[halves["half"] == 0].reset_index(drop=True) if len(halves) else halves
    second = halves[halves["half"] == 1].reset_index(drop=True) if len(halves) else halves
    records = {}
    for key, score in SCORES.items():
        value = _finite(observed[key])
        column = null[key].astype(float).to_numpy() if len(null) else np.empty(0)
        size = sizes.get(key, n)
        analytic = None
        if key == "topk_overlap_all_pairs":
            analytic = s.k / n
        elif key.startswith("mutual_knn") and size > s.knn_k:
            analytic = s.knn_k / (size - 1)
        null_stats = summary(list(column))
        m = (first[f"n_{key}"].mean() + second[f"n_{key}"].mean()) / 2 if len(halves) else 0
        records[key] = {
            "value": value,
            "estimator": score.estimator,
            "chance": null_stats["mean"] if len(column) else analytic,
            "analytic_chance": analytic,
            "null_mean": null_stats["mean"],
            "null_sd": null_stats["sd"],
            "null_q95": float(np.nanquantile(column, 0.95)) if len(column) and np.isfinite(column).any() else None,
            **p_value_fields(value, column),
            "n": int(size),
            "excluded_rows": int(excluded.get(key, 0)),
            "on": score.on,
            "interval": interval_record(value, first[key], second[key], m, size, score, s.interval_level) if len(halves) else None,
            "spread": {"seeds": None if seeds is None else summary(list(seeds[key].astype(float))) | {"count": len(seeds)}},
        }
    for key in EXTRA:
        records[key] = observed[key]
    records["rbf_cka_estimator"] = rbf_estimator(pc)
    return records


def run_comparison(a: Side, b: Side, settings: CompareSettings, seed_sides: list[tuple[Side, Side]] = (),
                   workers: int = 1) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Observed scores (with details), their records, the null table and the split-half table for two sides;
    the null's and the halves' passes run on ``workers`` processes (:mod:`saesuite.compare.passes`)."""
    rng = np.random.default_rng(settings.seed)
    pc = PairComparison(a, b, settings, rng)
    if settings.interval_splits and pc.n // 2 < max(settings.k, 4):
        raise ConfigError(f"the interval needs halves of at least {max(settings.k, 4)} images; there are {pc.n} images "
                          "(set compare.interval_splits: 0)")
    observed = pc.scores(details=True)
    null_rows, half_rows = score_passes(pc, SCORES, settings.permutations, settings.interval_splits, rng, workers)
    seeds = None
    if seed_sides:
        seeds = pd.DataFrame([observed] + [PairComparison(sa, sb, settings, rng).scores() for sa, sb in seed_sides])
    null, halves = pd.DataFrame(null_rows), pd.DataFrame(half_rows)
    return observed, score_records(pc, observed, null, halves, seeds), null, halves


def zero_rows(a: Side, b: Side) -> dict:
    """Images (of the compared ones) whose activation row or code row is all zeros, per model."""
    return {f"{what}_{side}": int((~nonzero_rows(getattr(s, attr))).sum())
            for what, attr in (("activations", "x"), ("codes", "codes")) for side, s in (("a", a), ("b", b))}


def rbf_estimator(pc: PairComparison) -> dict:
    """What RBF CKA computes, in the JSON (it is not Kornblith et al.'s biased RBF CKA)."""
    s, rows = pc.s, len(pc.rbf_rows)
    return {
        "name": "minibatch RBF CKA (Nguyen et al. 2021)",
        "hsic": "unbiased (Song et al. 2012), per minibatch; CKA = mean HSIC(K,L) / sqrt(mean HSIC(K,K) mean HSIC(L,L))",
        "debiased": True,
        "minibatch": True,
        "rows": rows,
        "batch_rows": s.rbf_batch,
        "batches": int(np.ceil(rows / s.rbf_batch)) if rows else 0,
        "batch_order": "a seeded random partition of the rows into near-equal batches, the same for A and B",
        "kernel": "exp(-|x - x'|^2 / (2 sigma^2)), Euclidean distance",
        "bandwidth": "sigma = bandwidth_fraction x median pairwise distance, per batch and per representation",
        "bandwidth_fraction": s.rbf_fraction,
    }


def compare_saes(
    cache_a: str | Path,
    sae_a: str | Path,
    cache_b: str | Path,
    sae_b: str | Path,
    out_dir: str | Path,
    *,
    chunk_rows: int = 4096,
    device: str = "cpu",
    settings: CompareSettings = CompareSettings(),
    seed_saes_a: list[str | Path] = (),
    seed_saes_b: list[str | Path] = (),
    workers: int = 1,
) -> dict:
    """Write ``comparison.json`` (schema-checked), ``pairs.csv``, ``null.csv``, ``halves.csv``, ``topk_overlap.npz``
    and both models' features on one map (``feature_map.csv``, ``feature_map.json``: :mod:`saesuite.compare.feature_map`).

    ``settings`` gives every knob of the comparison; ``seed_saes_*`` are further
    SAEs of the same models trained with other seeds, for the spread across seeds; ``workers`` processes run
    the null's and the halves' passes (the same numbers at any count). ``out_dir`` is
    created and locked first: an output path that cannot be written fails before any computing.
    """
    device = str(resolve_device(device))
    with output_lock(out_dir):
        return _compare_locked(cache_a, sae_a, cache_b, sae_b, Path(out_dir), settings,
                               chunk_rows, device, seed_saes_a, seed_saes_b, workers)


def _compare_locked(cache_a, sae_a, cache_b, sae_b, out_dir: Path, settings: CompareSettings, chunk_rows: int,
                    device: str, seed_saes_a, seed_saes_b, workers: int) -> dict:
    """:func:`compare_saes` once its output folder is locked."""
    ca, cb = ActivationCache.open(cache_a), ActivationCache.open(cache_b)
    check_aligned(ca, cb)
    keep = ca.valid_mask() & cb.valid_mask()
    if keep.sum() < max(settings.k, 4):
        raise ConfigError(f"only {int(keep.sum())} valid images are common to both caches; need at least {max(settings.k, 4)}")
    xa, xb = ca.read_all()[keep], cb.read_all()[keep]

    def side(cache, sae_dir, x):
        return Side.build(x, encode_sparse(sae_dir, cache, chunk_rows, device)[keep], settings.k)

    a, b = side(ca, sae_a, xa), side(cb, sae_b, xb)
    if len(seed_saes_a) != len(seed_saes_b):
        raise ConfigError("give as many extra SAE seeds for model A as for model B")
    seed_sides = [(side(ca, pa, xa), side(cb, pb, xb)) for pa, pb in zip(seed_saes_a, seed_saes_b)]
    observed, records, null, halves = run_comparison(a, b, settings, seed_sides, workers)
    details = observed["_details"]
    result = {
        "model_a": ca.manifest["model"],
        "hook_a": ca.manifest["hook"],
        "dtype_a": ca.manifest["dtype"],
        "model_b": cb.manifest["model"],
        "hook_b": cb.manifest["hook"],
        "dtype_b": cb.manifest["dtype"],
        "dataset": ca.manifest.get("dataset"),
        "split": ca.manifest.get("split"),
        "n_images": int(keep.sum()),
        "invalid_images": int((~keep).sum()),
        "k": settings.k,
        "latents_a": int(len(a.alive)),
        "latents_b": int(len(b.alive)),
        "alive_a": int(a.alive.sum()),
        "alive_b": int(b.alive.sum()),
        "dead_a": int((~a.alive).sum()),
        "dead_b": int((~b.alive).sum()),
        "sae_seeds": 1 + len(seed_sides),
        "tie_rule": "top-k: larger activation first, equal activations to the lower image index; kNN: scikit-learn brute-force order",
        "null": "B's images permuted against A's, whole pipeline re-run (matching included); kNN and RBF CKA permute within their image subset",
        "interval_method": INTERVAL_METHOD,
        "zero_rows": zero_rows(a, b),
        "settings": settings.as_dict(),
        **records,
    }
    validate(result, "comparison")
    pd.concat([details["overlap_pairs"], details["correlation_pairs"]]).to_csv(out_dir / "pairs.csv", index=False)
    null.to_csv(out_dir / "null.csv", index=False)
    halves.to_csv(out_dir / "halves.csv", index=False)
    np.savez(
        out_dir / "topk_overlap.npz", best_a_to_b=details["best_a_to_b"], best_b_to_a=details["best_b_to_a"],
        alive_a=details["alive_a"], alive_b=details["alive_b"], topk_a=a.topk, topk_b=b.topk,
        rows=np.flatnonzero(keep),
    )
    matched = details["overlap_pairs"][details["overlap_pairs"]["above_threshold"]]
    write_feature_map(out_dir, *feature_map(
        {"a": a.codes, "b": b.codes}, {"a": a.alive, "b": b.alive}, {"a": result["model_a"], "b": result["model_b"]},
        ca.labels()[keep], list(ca.manifest.get("classes") or []), list(zip(matched["feature_a"], matched["feature_b"])),
        MapSettings(seed=settings.seed)))
    write_json_atomic(out_dir / "comparison.json", result)
    return result
