"""Figures of the cross-model comparison, drawn from the files ``saesuite compare`` writes."""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import seaborn as sns  # noqa: E402

from saesuite.compare.chance import p_text  # noqa: E402
from saesuite.compare.feature_map import read_feature_map  # noqa: E402
from saesuite.figures import FULL, save  # noqa: E402

SIMILARITIES = ("linear_cka", "debiased_cka", "rbf_cka", "mutual_knn")


SCORE_NAMES = {"linear_cka": "linear CKA", "debiased_cka": "debiased CKA", "rbf_cka": "RBF CKA",
               "mutual_knn": "mutual k-NN"}


def overlap_against_chance(compare_dir: str | Path, out: str | Path) -> None:
    """Histograms of each alive feature's best top-k overlap with the other model, both ways, each
    with its permutation-null mean and p-value (``p <= 1/(R+1)`` at the floor); the analytic
    chance of one random pair, ``k/n``, dotted."""
    compare_dir = Path(compare_dir)
    result = json.loads((compare_dir / "comparison.json").read_text())
    best = np.load(compare_dir / "topk_overlap.npz")
    a, b, k = result["model_a"], result["model_b"], result["k"]
    fig, ax = plt.subplots(figsize=(4.7, 2.9))
    for color, key, values, (src, dst) in (("C0", "topk_overlap", best["best_a_to_b"], (a, b)),
                                           ("C1", "topk_overlap_b_to_a", best["best_b_to_a"], (b, a))):
        record = result[key]
        if len(values):
            sns.histplot(values, bins=np.linspace(0, 1, k + 2), ax=ax, stat="proportion", element="step", fill=False,
                         color=color, label=f"{src} to {dst}: mean {record['value']:.3f}, {p_text(record)}")
        if record["null_mean"] is not None:
            ax.axvline(record["null_mean"], color=color, ls="--", label=f"{src} to {dst}, images permuted: {record['null_mean']:.3f}")
    ax.axvline(k / result["n_images"], color="grey", ls=":", label=f"one random pair, k/n = {k / result['n_images']:.3g}")
    ax.set_xlabel(f"best top-{k} image overlap of a feature with the other model's features")
    ax.set_ylabel("fraction of alive features")
    ax.legend(fontsize=6)
    save(fig, out)


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
            rows.append({"score": SCORE_NAMES.get(name, name), "on": on, "value": r["value"], "chance": r["chance"],
                         "p": p_text(r), "low": interval.get("low"), "high": interval.get("high"),
                         "seed_min": seeds.get("min"), "seed_max": seeds.get("max")})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(FULL, 2.8))
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
        ax.text(x, max(top, 0.0) + 0.02, row["p"], ha="center", va="bottom", fontsize=6, rotation=90)
    seeds = result.get("sae_seeds", 1)
    intervals = [result[name + suffix]["interval"] for name in SIMILARITIES for suffix in ("", "_codes")
                 if result[name + suffix].get("interval")]
    rates = ", ".join(sorted({i["rate"] for i in intervals}))
    level = f"{intervals[0]['level']:.0%} interval" if intervals else "no interval"
    ax.set_ylabel("score; black: " + (f"{level},\nsplit-half subsampling" if intervals else level))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="C3", lw=2), Line2D([], [], color="black", lw=1, marker="_")]
    labels += ["chance (permutation null mean)", f"{level} (rate {rates})" if intervals else level]
    if seeds > 1:
        handles.append(Line2D([], [], color="dimgrey", lw=4, alpha=0.7))
        labels.append(f"range over {seeds} SAE seeds")
    ax.legend(handles, labels, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_ylim(top=max(1.0, ax.get_ylim()[1]) + 0.15)
    ax.set_xlabel("")
    ax.set_title(f"{result['model_a']} vs {result['model_b']}, n = {result['n_images']} images")
    save(fig, out)


def _block(fig, spec, images: list[np.ndarray | None], captions: list[str], shared: list[bool], title: str,
           per_row: int = 3) -> None:
    """One feature's top images in a ``per_row``-column block of ``spec``: each captioned with its
    class, images the other feature of the pair also has in its top-k framed in red."""
    inner = spec.subgridspec(-(-max(len(images), 1) // per_row), per_row, wspace=0.1, hspace=0.3)
    for i in range(inner.nrows * inner.ncols):
        ax = fig.add_subplot(inner[i // per_row, i % per_row])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if i >= len(images) or images[i] is None:
            ax.axis("off")
        else:
            ax.imshow(images[i])
            for side in ax.spines.values():
                side.set_visible(shared[i])
                side.set_color("C3")
                side.set_linewidth(2)
            ax.set_xlabel(captions[i], fontsize=5, labelpad=1)
        if i == 0:
            ax.set_title(title, fontsize=6.5, loc="left", pad=2)


def image_grid(
    pairs: list[tuple[int | None, int | None]],
    topk_a: np.ndarray,
    topk_b: np.ndarray,
    rows: np.ndarray,
    image: Callable[[int], np.ndarray],
    out: str | Path,
    title: str,
    names: tuple[str, str],
    label: Callable[[int], str] | None = None,
    pairs_per_row: int = 2,
    paired: bool = True,
) -> None:
    """Per pair, all top-k images of feature ``a`` of A and of ``b`` of B, each a 3-column block with
    every image captioned with its class (``label(i)``); the pair's top-k overlap heads it and images
    in both top-k sets are framed in red.

    ``topk_* [F, k]`` index ``rows``, which map to dataset indices; ``image(i)`` returns image ``i``
    as an ``[h, w, 3]`` array. A ``None`` feature leaves its half empty. With ``paired`` false the
    two halves are unrelated features (no overlap is shown).
    """
    k = topk_a.shape[1]
    n = max(len(pairs), 1)
    grid_rows = -(-n // pairs_per_row)
    block_rows = -(-k // 3)
    side = FULL / (6 * pairs_per_row + (pairs_per_row - 1))
    fig = plt.figure(figsize=(FULL, grid_rows * (block_rows * (side + 0.12) + 0.3) + 0.3))
    outer = fig.add_gridspec(grid_rows, pairs_per_row, wspace=0.12, hspace=0.3, left=0.01, right=0.99,
                             top=1 - 0.35 / fig.get_figheight(), bottom=0.01)
    if not pairs:
        fig.text(0.5, 0.5, "no feature to show", ha="center", fontsize=8)
    for p, (fa, fb) in enumerate(pairs):
        halves = outer[p // pairs_per_row, p % pairs_per_row].subgridspec(1, 2, wspace=0.1)
        sets = [set(topk_a[fa][topk_a[fa] >= 0]) if fa is not None else set(),
                set(topk_b[fb][topk_b[fb] >= 0]) if fb is not None else set()]
        both = sets[0] & sets[1] if paired and fa is not None and fb is not None else set()
        for half, (feature, top) in enumerate(((fa, topk_a), (fb, topk_b))):
            if feature is None:
                continue
            tops = [int(r) for r in top[feature]]
            pictures = [image(int(rows[r])) if r >= 0 else None for r in tops]
            captions = [(label(int(rows[r])) if label else "")[:11] if r >= 0 else "" for r in tops]
            head = f"{names[half]} #{feature}"
            if paired and half == 1 and fa is not None:
                head += f" (overlap {len(both)}/{k})"
            _block(fig, halves[0, half], pictures, captions, [r in both for r in tops], head)
    fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top")
    save(fig, out, crop=True)


def pair_grids(compare_dir: str | Path, image: Callable[[int], np.ndarray], out_best: str | Path, out_unpaired: str | Path,
               names: tuple[str, str], count: int = 6, label: Callable[[int], str] | None = None) -> None:
    """Grids for the best overlap-matched pairs and for alive features of A and B left without a partner."""
    compare_dir = Path(compare_dir)
    data = np.load(compare_dir / "topk_overlap.npz")
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    matched = pairs[pairs["method"] == "overlap"].sort_values("topk_overlap", ascending=False, kind="stable")
    best = [(int(a), int(b)) for a, b in zip(matched["feature_a"][:count], matched["feature_b"][:count])]
    args = (data["topk_a"], data["topk_b"], data["rows"], image)
    image_grid(best, *args, out_best, "best matched pairs (Hungarian on top-k overlap); red frame: in both top-k sets",
               names, label)
    shared = matched[matched["above_threshold"].astype(bool)]
    lone_a = [int(f) for f in data["alive_a"] if f not in set(shared["feature_a"])][:count]
    lone_b = [int(f) for f in data["alive_b"] if f not in set(shared["feature_b"])][:count]
    lone = list(zip_longest(lone_a, lone_b))
    image_grid(lone, *args, out_unpaired, f"alive features with no partner above the overlap threshold: "
               f"{names[0]} (left of each block), {names[1]} (right)", names, label, paired=False)


def planted_sweep(sweep_csv: str | Path, out: str | Path) -> None:
    """Scores of the planted benchmark against the shared fraction of features."""
    frame = pd.read_csv(sweep_csv).melt(id_vars="shared_fraction", var_name="score", value_name="value")
    names = {**SCORE_NAMES, "topk_overlap": "top-k overlap", "overlap_pairing": "pairing on overlap",
             "correlation_pairing": "pairing on correlation"}
    frame["score"] = frame["score"].map(lambda s: names.get(s, s.replace("_", " ")))
    fig, ax = plt.subplots(figsize=(4.2, 2.9))
    sns.lineplot(frame, x="shared_fraction", y="value", hue="score", marker="o", ax=ax)
    ax.set_xlabel("fraction of features the two planted models share")
    ax.set_ylabel("score")
    ax.legend(fontsize=6)
    save(fig, out)


def feature_map_figure(compare_dir: str | Path, out: str | Path, classes_shown: int = 8) -> None:
    """Both models' alive features on one UMAP map of their activation profiles
    (:mod:`saesuite.compare.feature_map`): left coloured by model, right by each feature's top class
    (the ``classes_shown`` commonest among the placed features; the rest grey). The caption line gives
    how often a matched pair sits closer than a random pair of the two models' features."""
    table, record = read_feature_map(compare_dir)
    placed = table[table["alive"]]
    size = float(np.clip(3000 / max(len(placed), 1), 1, 10))  # points shrink as the map fills
    fig, axes = plt.subplots(1, 2, figsize=(FULL, 3.3), sharex=True, sharey=True)
    for side, color in (("a", "C0"), ("b", "C1")):
        part = placed[placed["side"] == side]
        axes[0].scatter(part["x"], part["y"], s=size, lw=0, alpha=0.6, color=color,
                        label=f"{record[f'model_{side}']} ({len(part)} features)")
    legends = [axes[0].legend(loc="best")]
    common = placed["top_class_name"].value_counts().index[:classes_shown].tolist()
    rest = placed[~placed["top_class_name"].isin(common)]
    axes[1].scatter(rest["x"], rest["y"], s=size, lw=0, alpha=0.4, color="0.75", label="other classes")
    for i, name in enumerate(common):
        part = placed[placed["top_class_name"] == name]
        axes[1].scatter(part["x"], part["y"], s=size, lw=0, alpha=0.8, color=sns.color_palette("tab10")[i % 10],
                        label=name or "never fires")
    legends.append(axes[1].legend(loc="best", fontsize=6, ncol=2))
    for handle in (h for legend in legends for h in legend.legend_handles):
        handle.set_sizes([16])
    axes[0].set_title("coloured by model")
    axes[1].set_title("coloured by top class")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1")
    axes[0].set_ylabel("UMAP 2")
    q = record["quality"]
    note = (f"{q['pairs']} matched pairs; a matched pair sits closer than a random cross-model pair "
            f"{q['pair_closer_than_random']:.0%} of the time" if q["pair_closer_than_random"] is not None
            else "no matched pairs to check the map against")
    fig.text(0.5, 0.01, note, ha="center", fontsize=7)
    save(fig, out, rect=(0, 0.04, 1, 1))
