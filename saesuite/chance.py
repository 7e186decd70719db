"""Chance levels and spreads of comparison scores, without resampling images with replacement.

* Permutation null: the score recomputed with model B's images shuffled against A's
  (the whole pipeline, matching included), ``R`` times;
  ``p = (1 + #{null >= observed}) / (1 + R)``.
* Spread: the score on ``folds`` disjoint random folds of the images (each image in
  exactly one fold, so no image is ever duplicated; duplicated images would inflate CKA
  and kNN scores even for independent data).
"""

from __future__ import annotations

import numpy as np


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null >= observed}) / (1 + R)``; NaN nulls count as not exceeding."""
    null = np.asarray(null, np.float64)
    if observed is None or not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def disjoint_folds(n: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``folds`` disjoint sorted index sets covering ``range(n)`` in near-equal parts, in random order."""
    if folds < 2 or folds > n:
        raise ValueError(f"spread needs 2 <= folds <= n; got folds={folds}, n={n}")
    return [np.sort(part) for part in np.array_split(rng.permutation(n), folds)]


def summary(values: list[float]) -> dict:
    """``{mean, sd, min, max}`` of finite values (``sd`` with ddof 1; None where undefined)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) == 0:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
    }
