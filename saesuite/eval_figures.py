"""Figures of one SAE's evaluation, drawn from the files :func:`saesuite.evaluate.evaluate_sae` writes.

``metrics.json``, ``latents.csv`` (one row per latent), ``inputs.npz`` (per-input
arrays, the heatmap batch, the top-activating images) and, for the image grids, the
dataset split itself (the original images, by row index).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")
THUMB = 96  # pixels of an image thumbnail


def _save(fig, out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120, metadata={"Software": None})
    plt.close(fig)


def read_latents(eval_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(eval_dir) / "latents.csv", keep_default_na=True)


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
    """One row per latent: its top-k images (original pixels) titled with class name and activation."""
    rows = topk_rows(table)
    k = rows.shape[1]
    fig, axes = plt.subplots(max(len(latents), 1), k, figsize=(1.3 * k, 1.45 * max(len(latents), 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not latents:
        axes[0, 0].text(0, 0.5, "no latent fires on k images", fontsize=9)
    for r, latent in enumerate(latents):
        info = table.iloc[latent]
        axes[r, 0].set_title(f"#{latent} p={info['lifetime_sparsity']:.3g} H={info['label_entropy']:.2f}", loc="left", fontsize=6)
        for c, row in enumerate(rows[latent]):
            image, label = images[int(row)]
            axes[r, c].imshow(_thumb(image))
            axes[r, c].text(0, THUMB + 12, classes[label][:14], fontsize=5, va="top")
    fig.suptitle(title, fontsize=8)
    _save(fig, out)


def top_images_figure(inputs_npz: str | Path, images: Dataset, classes: list[str], out: str | Path, title: str) -> None:
    """The inputs with the highest activations, each with the latents that fire most on it (the plan's figure)."""
    data = np.load(inputs_npz)
    rows, scores, latents, values = data["top_rows"], data["top_scores"], data["top_latents"], data["top_latent_values"]
    cols = 5
    n_rows = max(1, -(-len(rows) // cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.1 * cols, 2.4 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, row in enumerate(rows):
        ax = axes[i // cols, i % cols]
        image, label = images[int(row)]
        ax.imshow(_thumb(image))
        fired = ", ".join(f"#{l}:{v:.2g}" for l, v in zip(latents[i], values[i]) if v > 0)
        ax.set_title(f"{classes[label]} (row {row}, max {scores[i]:.3g})\n{fired}", fontsize=5)
    fig.suptitle(title, fontsize=8)
    _save(fig, out)


def activation_heatmap(inputs_npz: str | Path, out: str | Path, title: str) -> None:
    """Latents (rows) by inputs (columns) of one batch; dead latents are dark rows."""
    heat = np.load(inputs_npz)["heatmap"].T  # [F, batch]
    fig, ax = plt.subplots(figsize=(5, 6))
    image = ax.imshow(np.log1p(np.maximum(heat, 0)), aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log(1 + activation)")
    silent = int((heat.sum(1) <= 0).sum())
    ax.set_xlabel(f"input (first {heat.shape[1]} of the split)")
    ax.set_ylabel("latent")
    ax.set_title(f"{title}\n{silent} of {heat.shape[0]} latents silent on this batch")
    _save(fig, out)


def neuron_alignment_histogram(table: pd.DataFrame, metrics: dict, out: str | Path, title: str) -> None:
    """Histograms of each latent's largest |cos| with a neuron and with a basis vector, encoder and decoder,
    with the chance level (the mean for random unit directions) of each reference as a dotted line."""
    align = metrics["alignment"]
    neurons = "attnpool.c_proj inputs" if metrics["hook"] == "attnpool" else "neurons"
    refs = [(neurons, "neuron"), ("standard basis", "basis")]
    parts = [(f"{p} · {ref}", f"{p}_{col}_alignment") for ref, col in refs for p in ("encoder", "decoder")]
    frame = pd.concat([pd.DataFrame({"max |cos|": table[c], "vectors": name}) for name, c in parts if c in table])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.histplot(frame, x="max |cos|", hue="vectors", bins=np.linspace(0, 1, 41), element="step", ax=ax)
    ax.axvline(align["threshold"], color="grey", ls="--", lw=0.8)
    chance = align["chance"]
    for (ref, col), color in zip(refs, ("black", "dimgrey")):
        if chance[f"{col}_mean"] is not None:
            ax.axvline(chance[f"{col}_mean"], color=color, ls=":", lw=1.2)
            ax.text(chance[f"{col}_mean"], 0.98, f" chance, {ref}", transform=ax.get_xaxis_transform(),
                    rotation=90, va="top", fontsize=6, color=color)
    ax.set_ylabel("latents")
    what = align["neurons_description"] or f"no neuron alignment: {metrics['skipped']['neuron_alignment']}"
    ax.set_title(f"{title}\nneurons: {what}\ndotted: mean for {chance['directions']} random unit directions",
                 fontsize=6, wrap=True)
    _save(fig, out)


def label_entropy_scatter(table: pd.DataFrame, out: str | Path, title: str) -> None:
    """The baseline's scatter: log10 mean activation (when firing) against log10 density, coloured by label entropy."""
    alive = table[table["fire_count"] > 0]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if len(alive):
        points = ax.scatter(alive["log10_density"], np.log10(alive["mean_active_activation"].clip(lower=1e-12)),
                            c=alive["label_entropy"], cmap="viridis", s=4)
        fig.colorbar(points, ax=ax, label="activation-weighted label entropy (nats)")
    ax.set_xlabel("log10 density (fraction of inputs a latent fires on)")
    ax.set_ylabel("log10 mean activation when firing")
    ax.set_title(f"{title}\n{len(alive)} firing latents", fontsize=8)
    _save(fig, out)


def sparsity_panel(table: pd.DataFrame, metrics: dict, out: str | Path, title: str) -> None:
    """Feature-density histogram, average-activation distribution and near-duplicate cosines."""
    hist = metrics["feature_density_histogram"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    edges = np.asarray(hist["log10_edges"])
    axes[0].stairs(hist["counts"], edges, fill=True)
    axes[0].set_xlabel("log10 feature density")
    axes[0].set_ylabel("latents")
    axes[0].set_title(f"{hist['never_fire']} never fire; {metrics['fraction_firing_above_10pct']:.2%} > 10%", fontsize=8)
    mean_act = table["mean_activation"].to_numpy()
    positive = mean_act[mean_act > 0]
    if len(positive):
        sns.histplot(np.log10(positive), bins=40, ax=axes[1])
    axes[1].set_xlabel("log10 average activation per latent")
    axes[1].set_title(f"{(mean_act <= 0).sum()} latents with average 0", fontsize=8)
    frame = pd.concat([pd.DataFrame({"max cos": table[f"max_cos_other_{p}"], "vectors": p}) for p in ("encoder", "decoder")])
    sns.histplot(frame, x="max cos", hue="vectors", bins=np.linspace(-1, 1, 41), element="step", ax=axes[2])
    axes[2].set_xlabel("largest cosine with another latent")
    fig.suptitle(title, fontsize=9)
    _save(fig, out)


def fidelity_bars(metrics: dict, out: str | Path, title: str) -> None:
    """Zero-shot accuracy clean / spliced / mean-ablated, the fraction recovered, and chance (1 / classes) as a line."""
    fid = metrics["fidelity"]
    fig, ax = plt.subplots(figsize=(4, 3))
    if fid is None:
        ax.text(0.5, 0.5, f"no fidelity test:\n{metrics['skipped']['fidelity']}", ha="center", fontsize=7, wrap=True)
    else:
        names = ["clean", "spliced", "ablated"]
        ax.bar(names, [fid[f"accuracy_{v}"] for v in names], color=["C0", "C1", "C7"])
        chance = fid["chance_accuracy"]
        ax.axhline(chance, color="black", ls=":", lw=1)
        ax.text(2.45, chance, f"chance 1/{len(metrics['classes'])}", ha="right", va="bottom", fontsize=6)
        rec = fid["fraction_recovered"]
        ax.set_title(f"{title}\nfraction recovered: {'n/a' if rec is None else f'{rec:.3f}'} ({fid['n_images']} images)", fontsize=8)
    ax.set_ylabel("zero-shot top-1 accuracy")
    _save(fig, out)


FIGURES = ("activation_heatmap", "neuron_alignment", "label_entropy_scatter", "sparsity_panel", "zero_shot_fidelity")
GRIDS = ("topk_frequent", "topk_low_entropy", "topk_random", "top_images")


def draw_all(eval_dir: str | Path, images: Dataset | None, outputs: dict[str, str | Path], title: str, grid_latents: int, seed: int) -> None:
    """Draw each figure named in ``outputs`` (``FIGURES``, and with ``images`` the ``GRIDS``)."""
    eval_dir = Path(eval_dir)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    table = read_latents(eval_dir)
    inputs = eval_dir / "inputs.npz"
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
