"""Figures of one SAE's evaluation, drawn from the files :func:`saesuite.evaluate.evaluation.evaluate_sae` writes.

``metrics.json``, ``latents.csv`` (one row per latent), ``inputs.npz`` (per-input
arrays, the heatmap batch, the top-activating images) and, for the image grids, the
dataset split itself (the original images, by row index).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from saesuite.evaluate.results import INPUTS_NPZ, LATENTS_CSV, METRICS, read_metrics  # noqa: E402
from saesuite.figures import FULL, HALF, save  # noqa: E402  (also sets the print style)

THUMB = 96  # pixels of an image thumbnail


def read_latents(eval_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(eval_dir) / LATENTS_CSV, keep_default_na=True)


def topk_rows(table: pd.DataFrame) -> np.ndarray:
    """``[F, k]`` top-k row indices (``-1`` where a latent fired on fewer than k rows)."""
    return np.array([[int(v) for v in str(s).split(";")] for s in table["topk_rows"]], dtype=np.int64)


def choose_latents(table: pd.DataFrame, n: int, seed: int = 0) -> dict[str, list[int]]:
    """Latents to show: among those with a full top-k, the ``n`` most frequent, lowest label entropy, random."""
    alive = table[(topk_rows(table) >= 0).all(axis=1)]
    frequent = alive.sort_values(["fire_count", "latent"], ascending=[False, True], kind="stable")
    low_entropy = alive.sort_values(["label_entropy", "latent"], kind="stable")
    rng = np.random.default_rng(seed)
    random = rng.choice(alive["latent"].to_numpy(), size=min(n, len(alive)), replace=False) if len(alive) else []
    return {
        "frequent": frequent["latent"].head(n).tolist(),
        "low_entropy": low_entropy["latent"].head(n).tolist(),
        "random": sorted(int(i) for i in random),
    }


def _thumb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((THUMB, THUMB)))


def topk_grid(table: pd.DataFrame, latents: list[int], images: Dataset, classes: list[str], out: str | Path, title: str) -> None:
    """One row per latent: its top-k images (original pixels), each captioned with its class; the row
    says the latent's firing rate and label entropy."""
    rows = topk_rows(table)
    k = rows.shape[1]
    n = max(len(latents), 1)
    side = FULL / k
    fig, axes = plt.subplots(n, k, figsize=(FULL, n * (side + 0.3) + 0.3), squeeze=False,
                             gridspec_kw={"wspace": 0.06, "hspace": 0.45, "left": 0.01, "right": 0.99,
                                          "top": 1 - 0.45 / (n * (side + 0.3) + 0.3), "bottom": 0.02})
    for ax in axes.ravel():
        ax.axis("off")
    if not latents:
        axes[0, 0].text(0, 0.5, "no latent fires on k images", fontsize=8)
    for r, latent in enumerate(latents):
        info = table.iloc[latent]
        axes[r, 0].set_title(f"latent {latent}: fires on {info['lifetime_sparsity']:.2%} of images, "
                             f"label entropy {info['label_entropy']:.2f} nats", loc="left", fontsize=6.5, pad=2)
        for c, row in enumerate(rows[latent]):
            image, label = images[int(row)]
            axes[r, c].imshow(_thumb(image))
            axes[r, c].text(THUMB / 2, THUMB + 4, classes[label][:16], fontsize=5.5, ha="center", va="top")
    fig.suptitle(title)
    save(fig, out, crop=True)


def top_images_figure(inputs_npz: str | Path, images: Dataset, classes: list[str], out: str | Path, title: str,
                      latents_shown: int = 3) -> None:
    """The inputs with the highest activations, each titled with its class, its largest activation and
    the ``latents_shown`` latents that fire most on it, one per line (the plan's figure)."""
    data = np.load(inputs_npz)
    rows, scores, latents, values = data["top_rows"], data["top_scores"], data["top_latents"], data["top_latent_values"]
    cols = 5
    n_rows = max(1, -(-len(rows) // cols))
    side = FULL / cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(FULL, n_rows * (side + 0.5) + 0.3), squeeze=False,
                             gridspec_kw={"wspace": 0.25, "hspace": 0.55, "left": 0.01, "right": 0.99})
    for ax in axes.ravel():
        ax.axis("off")
    for i, row in enumerate(rows):
        ax = axes[i // cols, i % cols]
        image, label = images[int(row)]
        ax.imshow(_thumb(image))
        fired = [f"latent {l}: {v:.2g}" for l, v in list(zip(latents[i], values[i]))[:latents_shown] if v > 0]
        ax.set_title("\n".join([f"{classes[label][:16]}, max {scores[i]:.3g}", *fired]), fontsize=5.5, pad=2)
    fig.suptitle(title)
    save(fig, out, crop=True)


def activation_heatmap(inputs_npz: str | Path, out: str | Path, title: str) -> None:
    """Latents (rows) by inputs (columns) of one batch; dead latents are dark rows."""
    heat = np.load(inputs_npz)["heatmap"].T  # [F, batch]
    fig, ax = plt.subplots(figsize=(HALF, 3.3))
    image = ax.imshow(np.log1p(np.maximum(heat, 0)), aspect="auto", cmap="magma", interpolation="nearest")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="log(1 + activation)")
    silent = int((heat.sum(1) <= 0).sum())
    ax.set_xlabel(f"input (first {heat.shape[1]} of the split)")
    ax.set_ylabel("latent")
    ax.set_title(f"{title}\n{silent} of {heat.shape[0]} latents silent on this batch")
    save(fig, out)


def neuron_alignment_histogram(table: pd.DataFrame, metrics: dict, out: str | Path, title: str) -> None:
    """Histograms of each latent's largest |cos| with a neuron and with a basis vector, encoder and decoder,
    with the chance level (the mean for random unit directions) of each reference as a dotted line and
    the alignment threshold dashed, both in the legend."""
    align = metrics["alignment"]
    neurons = "attnpool.c_proj inputs" if metrics["hook"] == "attnpool" else "neurons"
    refs = [(neurons, "neuron"), ("standard basis", "basis")]
    parts = [(f"{p} vs {'neurons' if col == 'neuron' else 'basis'}", f"{p}_{col}_alignment")
             for ref, col in refs for p in ("encoder", "decoder")]
    fig, ax = plt.subplots(figsize=(HALF, 3.5))
    bins = np.linspace(0, 1, 41)
    for i, (name, column) in enumerate(parts):
        if column in table:
            values = table[column].dropna().to_numpy()
            ax.hist(values, bins=bins, histtype="step", color=f"C{i}", lw=1.1, label=name)
    ax.axvline(align["threshold"], color="C3", ls="--", lw=0.9, label=f"threshold {align['threshold']:g}")
    chance = align["chance"]
    for (ref, col), color in zip(refs, ("black", "dimgrey")):
        if chance[f"{col}_mean"] is not None:
            ax.axvline(chance[f"{col}_mean"], color=color, ls=":", lw=1.2)
            ax.text(chance[f"{col}_mean"], 0.98, f" chance, {ref}", transform=ax.get_xaxis_transform(),
                    rotation=90, va="top", fontsize=5.5, color=color)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", ls=":"))
    labels.append(f"chance ({chance['directions']} random)")
    ax.set_xlabel("largest |cos| with a reference vector")
    ax.set_ylabel("latents")
    ax.set_xlim(0, 1)
    ax.legend(handles, labels, fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    description = align["neurons_description"]
    what = description.split(" (")[0] if description else (
        f"no neuron alignment: {metrics['skipped']['neuron_alignment']}")
    ax.set_title("\n".join([title, *textwrap.wrap(f"neurons: {what}", 52)]), fontsize=6.5)
    save(fig, out)


def label_entropy_scatter(table: pd.DataFrame, out: str | Path, title: str) -> None:
    """The baseline's scatter: log10 mean activation (when firing) against log10 density, coloured by label entropy."""
    alive = table[table["fire_count"] > 0]
    fig, ax = plt.subplots(figsize=(HALF, 2.6))
    if len(alive):
        points = ax.scatter(alive["log10_density"], np.log10(alive["mean_active_activation"].clip(lower=1e-12)),
                            c=alive["label_entropy"], cmap="viridis", s=4)
        fig.colorbar(points, ax=ax, label="label entropy (nats)")
    ax.set_xlabel("log$_{10}$ density (fraction of inputs)")
    ax.set_ylabel("log$_{10}$ mean activation when firing")
    ax.set_title(f"{title}\n{len(alive)} firing latents ({len(table) - len(alive)} dead: not drawn)")
    save(fig, out)


def sparsity_panel(table: pd.DataFrame, metrics: dict, out: str | Path, title: str) -> None:
    """Feature-density histogram, average-activation distribution and near-duplicate cosines; each
    panel says whether dead latents are in it."""
    hist = metrics["feature_density_histogram"]
    fig, axes = plt.subplots(1, 3, figsize=(FULL, 2.3))
    edges = np.asarray(hist["log10_edges"])
    axes[0].stairs(hist["counts"], edges, fill=True)
    axes[0].set_xlabel("log$_{10}$ feature density")
    axes[0].set_ylabel("latents")
    axes[0].set_title(f"firing latents only: {hist['never_fire']} never fire\n(not drawn); "
                      f"{metrics['fraction_firing_above_10pct']:.1%} fire on > 10%", fontsize=7)
    mean_act = table["mean_activation"].to_numpy()
    positive = mean_act[mean_act > 0]
    if len(positive):
        sns.histplot(np.log10(positive), bins=40, ax=axes[1])
    axes[1].set_xlabel("log$_{10}$ average activation")
    axes[1].set_ylabel("latents")
    axes[1].set_title(f"latents with average > 0 only:\n{(mean_act <= 0).sum()} with average 0 (not drawn)", fontsize=7)
    for i, part in enumerate(("encoder", "decoder")):
        axes[2].hist(table[f"max_cos_other_{part}"].dropna(), bins=np.linspace(-1, 1, 41), histtype="step",
                     color=f"C{i}", label=part)
    axes[2].set_xlabel("max cosine with another latent")
    axes[2].set_title("all latents, dead included", fontsize=7)
    axes[2].legend(fontsize=6)
    fig.suptitle(title)
    save(fig, out)


def fidelity_bars(metrics: dict, out: str | Path, title: str) -> None:
    """Zero-shot accuracy clean / spliced / mean-ablated with each value printed, the fraction
    recovered, and chance (1 / classes) as a dotted red line drawn over the bars and in the legend."""
    fid = metrics["fidelity"]
    fig, ax = plt.subplots(figsize=(HALF, 2.4))
    if fid is None:
        ax.text(0.5, 0.5, f"no fidelity test:\n{metrics['skipped']['fidelity']}", ha="center", fontsize=7, wrap=True)
    else:
        names = ["clean", "spliced", "ablated"]
        heights = [fid[f"accuracy_{v}"] for v in names]
        bars = ax.bar(names, heights, color=["C0", "C1", "C7"], zorder=2)
        for bar, h in zip(bars, heights):
            ax.text(bar.get_x() + bar.get_width() / 2, h / 2, f"{h:.3g}", ha="center", va="center", fontsize=7,
                    color="white", zorder=4)
        chance = fid["chance_accuracy"]
        ax.axhline(chance, color="C3", ls=":", lw=1.5, zorder=3, label=f"chance 1/{len(metrics['classes'])}")
        ax.set_ylim(0, max(max(heights), chance) * 1.3)
        ax.legend(loc="upper right", fontsize=6.5)
        rec = fid["fraction_recovered"]
        ax.set_title(f"{title}\nfraction recovered: {'n/a' if rec is None else f'{rec:.3f}'} ({fid['n_images']} images)")
    ax.set_ylabel("zero-shot top-1 accuracy")
    save(fig, out)


FIGURES = ("activation_heatmap", "neuron_alignment", "label_entropy_scatter", "sparsity_panel", "zero_shot_fidelity")
GRIDS = ("topk_frequent", "topk_low_entropy", "topk_random", "top_images")


def draw_all(eval_dir: str | Path, images: Dataset | None, outputs: dict[str, str | Path], title: str, grid_latents: int, seed: int) -> None:
    """Draw each figure named in ``outputs`` (``FIGURES``, and with ``images`` the ``GRIDS``)."""
    eval_dir = Path(eval_dir)
    metrics = read_metrics(eval_dir / METRICS)
    table = read_latents(eval_dir)
    inputs = eval_dir / INPUTS_NPZ
    draw = {
        "activation_heatmap": lambda o: activation_heatmap(inputs, o, title),
        "neuron_alignment": lambda o: neuron_alignment_histogram(table, metrics, o, title),
        "label_entropy_scatter": lambda o: label_entropy_scatter(table, o, title),
        "sparsity_panel": lambda o: sparsity_panel(table, metrics, o, title),
        "zero_shot_fidelity": lambda o: fidelity_bars(metrics, o, title),
        "top_images": lambda o: top_images_figure(inputs, images, metrics["classes"], o, f"{title}: highest activations"),
    }
    chosen = choose_latents(table, grid_latents, seed)
    for kind, latents in chosen.items():
        draw[f"topk_{kind}"] = lambda o, latents=latents, kind=kind: topk_grid(
            table, latents, images, metrics["classes"], o, f"{title}: top-{metrics['top_k']} images, {kind.replace('_', ' ')} latents"
        )
    for name, out in outputs.items():
        if name not in draw:
            raise ValueError(f"unknown evaluation figure {name!r}; known: {', '.join(FIGURES + GRIDS)}")
        if name in GRIDS and images is None:
            raise ValueError(f"figure {name} shows images and needs the dataset")
        draw[name](out)
