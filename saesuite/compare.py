"""Comparing two models' SAEs and activations over the same images: ``comparison.json`` and its tables.

Reads two activation caches of one dataset split and the SAE trained on each, encodes
every (valid) image, and hands the activations and sparse codes to
:class:`saesuite.feature_comparison.PairComparison`. Every headline score is written
as a record ``{value, chance, analytic_chance, null_mean, null_sd, null_q95, p_value,
permutations, n, on, spread}``:

* chance: the mean of the permutation null (B's images shuffled against A's, the
  whole pipeline re-run, matching included); ``p = (1 + #null >= observed) / (1 + R)``;
  ``analytic_chance`` where a closed form exists (one pair's top-k overlap ``k/n``,
  mutual kNN ``k/(n-1)``);
* spread: the score on disjoint random folds of the images (no image resampled with
  replacement), and across SAE seeds when several SAEs per model are given.

Dead features (positive on fewer than ``k`` images) are excluded and counted; top-k
ties go to the lower image index; the record of the run names n, k, dtype and hook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from saesuite.cache import ActivationCache, write_json_atomic
from saesuite.chance import disjoint_folds, permutation_p_value, summary
from saesuite.errors import ConfigError
from saesuite.evaluate import check_sae_matches_cache, encode_chunks
from saesuite.feature_comparison import CompareSettings, PairComparison, Side
from saesuite.sae import load_sae
from saesuite.schema import validate

ACTS, CODES = "raw hooked activations", "SAE codes"
# score -> what it is computed on
SCORES = {
    "topk_overlap": f"{CODES}: mean over alive features of A of the best top-k image overlap with an alive feature of B",
    "topk_overlap_b_to_a": f"{CODES}: mean over alive features of B of the best top-k image overlap with an alive feature of A",
    "topk_overlap_all_pairs": f"{CODES}: mean top-k image overlap over all pairs of alive features",
    "overlap_pairing": f"{CODES}: fraction of alive features of A matched one-to-one (Hungarian on top-k overlap) with overlap >= threshold",
    "correlation_pairing": f"{CODES}: fraction of alive features of A matched one-to-one (Hungarian on activation correlation) with correlation >= threshold",
    "linear_cka": ACTS,
    "debiased_cka": ACTS,
    "rbf_cka": ACTS,
    "mutual_knn": ACTS,
    "linear_cka_codes": CODES,
    "debiased_cka_codes": CODES,
    "rbf_cka_codes": CODES,
    "mutual_knn_codes": f"{CODES} (images where both codes are non-zero)",
}
EXTRA = ("overlap_pairing_b", "overlap_pairing_count", "correlation_pairing_b", "correlation_pairing_count")


def check_aligned(a: ActivationCache, b: ActivationCache) -> None:
    """Both caches must hold the same images in the same order."""
    ma, mb = a.manifest, b.manifest
    same = ma["dataset"] == mb["dataset"] and ma["split"] == mb["split"] and a.n == b.n
    if not same or not np.array_equal(a.labels(), b.labels()):
        raise ConfigError(
            f"caches {a.path} ({ma['dataset']}/{ma['split']}, n={a.n}) and {b.path} "
            f"({mb['dataset']}/{mb['split']}, n={b.n}) do not hold the same images in the same order; "
            "compare caches of one dataset split"
        )


def encode_sparse(sae_dir: str | Path, cache: ActivationCache, chunk_rows: int, device: str) -> sp.csr_matrix:
    """SAE codes of every row of the cache as a sparse ``[n, F]`` float64 CSR matrix."""
    sae, cfg = load_sae(sae_dir, device)
    check_sae_matches_cache(sae, cfg, sae_dir, cache)
    parts = [sp.csr_matrix(f.cpu().numpy().astype(np.float64)) for _, _, f, _ in encode_chunks(sae, cache, chunk_rows, device)]
    return sp.vstack(parts, format="csr")


def score_records(pc: PairComparison, observed: dict, null: pd.DataFrame, folds: pd.DataFrame, seeds: pd.DataFrame | None) -> dict:
    """One record per score in :data:`SCORES`: value, chance, p-value, n, what it is on, spread."""
    s, n = pc.s, pc.n
    sizes = {"rbf_cka": len(pc.rbf_rows), "rbf_cka_codes": len(pc.rbf_rows), "mutual_knn": len(pc.knn_rows),
             "mutual_knn_codes": len(pc.knn_code_rows)}
    records = {}
    for key, on in SCORES.items():
        value = observed[key] if observed[key] is not None and np.isfinite(observed[key]) else None
        column = null[key].astype(float).to_numpy() if len(null) else np.empty(0)
        size = sizes.get(key, n)
        analytic = None
        if key in ("topk_overlap_all_pairs",):
            analytic = s.k / n
        elif key.startswith("mutual_knn") and size > s.knn_k:
            analytic = s.knn_k / (size - 1)
        null_stats = summary(list(column))
        records[key] = {
            "value": value,
            "chance": null_stats["mean"] if len(column) else analytic,
            "analytic_chance": analytic,
            "null_mean": null_stats["mean"],
            "null_sd": null_stats["sd"],
            "null_q95": float(np.nanquantile(column, 0.95)) if len(column) and np.isfinite(column).any() else None,
            "p_value": permutation_p_value(value, column) if len(column) and value is not None else None,
            "permutations": int(len(column)),
            "n": int(size),
            "on": on,
            "spread": {
                "method": "disjoint folds",
                "folds": int(len(folds)),
                "n_per_fold": int(folds["n"].min()) if len(folds) else None,
                **(summary(list(folds[key].astype(float))) if len(folds) else {}),
                "seeds": None if seeds is None else summary(list(seeds[key].astype(float))) | {"count": len(seeds)},
            },
        }
        if records[key]["p_value"] is not None and not np.isfinite(records[key]["p_value"]):
            records[key]["p_value"] = None
    for key in EXTRA:
        records[key] = observed[key]
    return records


def run_comparison(a: Side, b: Side, settings: CompareSettings, seed_sides: list[tuple[Side, Side]] = ()) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Observed scores (with details), their records, the null table and the fold table for two sides."""
    rng = np.random.default_rng(settings.seed)
    pc = PairComparison(a, b, settings, rng)
    observed = pc.scores(details=True)
    null_rows = []
    for _ in tqdm(range(settings.permutations), desc="permutation null", unit="perm"):
        null_rows.append(pc.scores(rng.permutation(pc.n), rng))
    null = pd.DataFrame(null_rows)
    fold_rows = []
    if settings.folds > 1:
        for index in tqdm(disjoint_folds(pc.n, settings.folds, rng), desc="folds", unit="fold"):
            fold = PairComparison(a.rows(index, settings.k), b.rows(index, settings.k), settings, rng)
            fold_rows.append(fold.scores() | {"n": len(index)})
    folds = pd.DataFrame(fold_rows)
    seeds = None
    if seed_sides:
        seeds = pd.DataFrame([observed] + [PairComparison(sa, sb, settings, rng).scores() for sa, sb in seed_sides])
    return observed, score_records(pc, observed, null, folds, seeds), null, folds


def compare_saes(
    cache_a: str | Path,
    sae_a: str | Path,
    cache_b: str | Path,
    sae_b: str | Path,
    out_dir: str | Path,
    *,
    k: int = 9,
    chunk_rows: int = 4096,
    device: str = "cpu",
    settings: CompareSettings | None = None,
    seed_saes_a: list[str | Path] = (),
    seed_saes_b: list[str | Path] = (),
) -> dict:
    """Write ``comparison.json`` (schema-checked), ``pairs.csv``, ``null.csv``, ``folds.csv`` and ``topk_overlap.npz``.

    ``settings`` gives every knob (its ``k`` wins over ``k``); ``seed_saes_*`` are further
    SAEs of the same models trained with other seeds, for the spread across seeds.
    """
    settings = settings or CompareSettings(k=k)
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
    observed, records, null, folds = run_comparison(a, b, settings, seed_sides)
    details = observed["_details"]
    result = {
        "model_a": ca.manifest["model"],
        "hook_a": ca.manifest["hook"],
        "dtype_a": ca.manifest["dtype"],
        "model_b": cb.manifest["model"],
        "hook_b": cb.manifest["hook"],
        "dtype_b": cb.manifest["dtype"],
        "dataset": ca.manifest["dataset"],
        "split": ca.manifest["split"],
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
        "settings": settings.as_dict(),
        **records,
    }
    validate(result, "comparison")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.concat([details["overlap_pairs"], details["correlation_pairs"]]).to_csv(out_dir / "pairs.csv", index=False)
    null.to_csv(out_dir / "null.csv", index=False)
    folds.to_csv(out_dir / "folds.csv", index=False)
    np.savez(
        out_dir / "topk_overlap.npz", best_a_to_b=details["best_a_to_b"], best_b_to_a=details["best_b_to_a"],
        alive_a=details["alive_a"], alive_b=details["alive_b"], topk_a=a.topk, topk_b=b.topk,
        rows=np.flatnonzero(keep),
    )
    write_json_atomic(out_dir / "comparison.json", result)
    return result
