"""Figures of the cross-model comparison, drawn from the files ``saesuite compare`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from saesuite.chance import p_text  # noqa: E402
from saesuite.figures import _save  # noqa: E402

SIMILARITIES = ("linear_cka", "debiased_cka", "rbf_cka", "mutual_knn")


def overlap_against_chance(compare_dir: str | Path, out: str | Path) -> None:
    """Histograms of each alive feature's best top-k overlap with the other model, both ways, each
    with its permutation-null mean and p-value (``p <= 1/(R+1)`` at the floor); the analytic
    chance of one random pair, ``k/n``, dotted."""
    compare_dir = Path(compare_dir)
    result = json.loads((compare_dir / "comparison.json").read_text())
    best = np.load(compare_dir / "topk_overlap.npz")
    a, b, k = result["model_a"], result["model_b"], result["k"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for color, key, values, (src, dst) in (("C0", "topk_overlap", best["best_a_to_b"], (a, b)),
                                           ("C1", "topk_overlap_b_to_a", best["best_b_to_a"], (b, a))):
        record = result[key]
        if len(values):
            sns.histplot(values, bins=np.linspace(0, 1, k + 2), ax=ax, stat="proportion", element="step", fill=False,
                         color=color, label=f"{src} → {dst} (mean {record['value']:.3f}, {p_text(record)})")
        if record["null_mean"] is not None:
            ax.axvline(record["null_mean"], color=color, ls="--", label=f"{src} → {dst}, images permuted {record['null_mean']:.3f}")
    ax.axvline(k / result["n_images"], color="grey", ls=":", label=f"one random pair k/n = {k / result['n_images']:.3g}")
    ax.set_xlabel(f"best top-{k} image overlap of a feature with the other model's features")
    ax.set_ylabel("fraction of alive features")
    ax.legend(fontsize=7)
    _save(fig, out)


def similarity_bars(comparison_json: str | Path, out: str | Path) -> None:
    """CKA and mutual-kNN scores on activations and codes: bars with each score's interval at n
    (split-half subsampling at its stated rate), chance marked, the p-value above the bar
    (``p <= 1/(R+1)`` at the floor) and the range over SAE seeds where several were compared."""
    result = json.loads(Path(comparison_json).read_text())
    rows = []
    for name in SIMILARITIES:
        for suffix, on in (("", "activations"), ("_codes", "SAE codes")):
            r = result[name + suffix]
            seeds = r["spread"].get("seeds") or {}
            interval = r.get("interval") or {}
            rows.append({"score": name, "on": on, "value": r["value"], "chance": r["chance"], "p": p_text(r),
                         "low": interval.get("low"), "high": interval.get("high"),
                         "seed_min": seeds.get("min"), "seed_max": seeds.get("max")})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.barplot(frame, x="score", y="value", hue="on", ax=ax, errorbar=None)
    hue_major = frame.assign(order=frame["on"].map({"activations": 0, "SAE codes": 1})).sort_values("order", kind="stable")
    for bar, (_, row) in zip(ax.patches, hue_major.iterrows()):  # seaborn draws one hue level after the other
        x = bar.get_x() + bar.get_width() / 2
        top = row["value"] if row["value"] is not None and np.isfinite(row["value"]) else 0.0
        if row["low"] is not None and np.isfinite(row["low"]):
            ax.errorbar(x, row["value"], yerr=[[row["value"] - row["low"]], [row["high"] - row["value"]]],
                        color="black", capsize=3, lw=1)
            top = row["high"]
        if row["chance"] is not None:
            ax.hlines(row["chance"], bar.get_x(), bar.get_x() + bar.get_width(), color="C3", lw=2)
        if row["seed_min"] is not None and row["seed_max"] is not None:
            ax.vlines(x + bar.get_width() / 4, row["seed_min"], row["seed_max"], color="dimgrey", lw=4, alpha=0.7)
        ax.text(x, max(top, 0.0) + 0.02, row["p"], ha="center", va="bottom", fontsize=5, rotation=90)
    seeds = result.get("sae_seeds", 1)
    intervals = [result[name + suffix]["interval"] for name in SIMILARITIES for suffix in ("", "_codes")
                 if result[name + suffix].get("interval")]
    rates = ", ".join(sorted({i["rate"] for i in intervals}))
    what = f"{intervals[0]['level']:.0%} interval, split-half subsampling at rate {rates}" if intervals else "no interval"
    ax.set_ylabel(f"score (red: chance; black: {what}"
                  + (f";\ngrey: range over {seeds} SAE seeds)" if seeds > 1 else ")"), fontsize=8)
    ax.set_xlabel("")
    ax.set_title(f"{result['model_a']} vs {result['model_b']}, n = {result['n_images']}")
    _save(fig, out)


def image_grid(
    pairs: list[tuple[int | None, int | None]],
    topk_a: np.ndarray,
    topk_b: np.ndarray,
    rows: np.ndarray,
    image: Callable[[int], np.ndarray],
    out: str | Path,
    title: str,
    names: tuple[str, str],
    show: int = 5,
) -> None:
    """Side by side, per pair, the top images of feature ``a`` of A (left) and ``b`` of B (right).

    ``topk_* [F, k]`` index ``rows``, which map to dataset indices; ``image(i)`` returns image ``i``
    as an ``[h, w, 3]`` array. A ``None`` feature leaves its half empty (a feature with no partner).
    """
    fig, axes = plt.subplots(max(len(pairs), 1), 2 * show, figsize=(2 * show * 0.9, max(len(pairs), 1) * 1.0 + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (fa, fb) in enumerate(pairs):
        for half, (feature, top) in enumerate(((fa, topk_a), (fb, topk_b))):
            if feature is None:
                continue
            for c, row in enumerate(top[feature][:show]):
                if row >= 0:
                    axes[r, half * show + c].imshow(image(int(rows[row])))
            axes[r, half * show].set_title(f"{names[half]} #{feature}", fontsize=6, loc="left")
    fig.suptitle(title, fontsize=8)
    _save(fig, out)


def pair_grids(compare_dir: str | Path, image: Callable[[int], np.ndarray], out_best: str | Path, out_unpaired: str | Path,
               names: tuple[str, str], count: int = 6) -> None:
    """Grids for the best overlap-matched pairs and for alive features of A and B left without a partner."""
    compare_dir = Path(compare_dir)
    data = np.load(compare_dir / "topk_overlap.npz")
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    matched = pairs[pairs["method"] == "overlap"].sort_values("topk_overlap", ascending=False, kind="stable")
    best = [(int(a), int(b)) for a, b in zip(matched["feature_a"][:count], matched["feature_b"][:count])]
    args = (data["topk_a"], data["topk_b"], data["rows"], image)
    image_grid(best, *args, out_best, "best matched pairs (Hungarian on top-k overlap)", names)
    shared = matched[matched["above_threshold"].astype(bool)]
    lone_a = [int(f) for f in data["alive_a"] if f not in set(shared["feature_a"])][:count]
    lone_b = [int(f) for f in data["alive_b"] if f not in set(shared["feature_b"])][:count]
    lone = [(a, None) for a in lone_a] + [(None, b) for b in lone_b]
    image_grid(lone, *args, out_unpaired, "alive features with no partner above the overlap threshold", names)


def planted_sweep(sweep_csv: str | Path, out: str | Path) -> None:
    """Scores of the planted benchmark against the shared fraction of features."""
    frame = pd.read_csv(sweep_csv).melt(id_vars="shared_fraction", var_name="score", value_name="value")
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(frame, x="shared_fraction", y="value", hue="score", marker="o", ax=ax)
    ax.set_xlabel("fraction of features the two planted models share")
    ax.legend(fontsize=7)
    _save(fig, out)
