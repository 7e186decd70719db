"""Chance levels and sampling intervals of comparison scores, never resampling an image twice.

* Permutation null: the score recomputed with model B's images shuffled against A's
  (the whole pipeline, matching included), ``R`` times;
  ``p = (1 + #{null >= observed}) / (1 + R)``. Its floor is ``1 / (R + 1)``: a p-value
  there says only ``p <= 1/(R+1)`` (:func:`p_text`).
* Interval: split-half subsampling (Politis & Romano 1994, without replacement). Each
  split divides the images at random into two disjoint halves of ``m = n/2``; two
  disjoint halves are independent samples of size ``m``, so
  ``sd_m^2 = mean over splits of (s_1 - s_2)^2 / 2`` estimates the score's variance at
  ``m`` whatever its drift with the number of images (both halves drift alike). The
  score's convergence rate ``tau_n = n^r``, stated per score, carries it to ``n``:
  ``se_n = sd_m (m/n)^r``; the interval is ``value -/+ t se_n`` with ``t`` Student's
  quantile at ``splits`` degrees of freedom, clipped to the score's range. It is
  centred on the full-n value, so it brackets it. No bootstrap: a duplicated image is its
  own nearest neighbour (mutual kNN), fills two top-k slots, pairs with itself in the
  U-statistic of debiased HSIC and puts zeros into the median distance of RBF CKA.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null >= observed}) / (1 + R)``; NaN nulls count as not exceeding."""
    null = np.asarray(null, np.float64)
    if observed is None or not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def p_value_fields(observed: float | None, null: np.ndarray) -> dict:
    """``{p_value, permutations, p_floor, p_at_floor}`` of an observed score against its null ``[R]``."""
    r = len(null)
    p = permutation_p_value(observed, null) if r and observed is not None else None
    p = p if p is not None and np.isfinite(p) else None
    floor = 1.0 / (r + 1)
    return {"p_value": p, "permutations": int(r), "p_floor": floor if r else None,
            "p_at_floor": bool(p is not None and p <= floor * (1 + 1e-12))}


def p_text(record: dict, latex: bool = False) -> str:
    """``p <= 1/(R+1)`` at the floor (``p ≤ 1/20``), else ``p = 0.25``; ``p n/a`` without a null."""
    le = r"\le" if latex else "≤"
    if record.get("p_value") is None:
        return "p n/a"
    if record.get("p_at_floor"):
        return f"p {le} 1/{record['permutations'] + 1}"
    return f"p = {record['p_value']:.2g}"


def disjoint_halves(strata: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint sorted index sets, each taking ``floor(size/2)`` rows of every stratum of ``strata [n]``.

    Stratifying keeps every subset a score runs on (the kNN rows, the RBF rows) halved too;
    the odd row of a stratum is left out of both.
    """
    first, second = [], []
    for label in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == label))
        half = len(rows) // 2
        first.append(rows[:half])
        second.append(rows[half : 2 * half])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def half_sd(first: np.ndarray, second: np.ndarray) -> tuple[float | None, int]:
    """``(sd_m, splits)``: ``sqrt(mean (s_1 - s_2)^2 / 2)`` over the splits where both halves are finite."""
    diff = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return None, 0
    return float(np.sqrt(np.mean(diff**2) / 2)), int(len(diff))


def subsampling_interval(value: float, sd_m: float, m: float, n: int, rate: float, splits: int, level: float,
                         bounds: tuple[float, float]) -> dict:
    """The interval at ``n`` from the sd at ``m`` and the rate exponent ``r`` (``tau_n = n^r``)."""
    se = sd_m * (m / n) ** rate
    t = float(stats.t.ppf(0.5 + level / 2, df=splits))
    return {"low": float(max(value - t * se, bounds[0])), "high": float(min(value + t * se, bounds[1])),
            "level": level, "se": float(se), "sd_at_m": sd_m, "m": float(m), "splits": splits, "t": t}


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
