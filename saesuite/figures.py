"""Figures drawn from the files the stages write (PNG, seaborn/matplotlib).

Every figure is drawn at the size the paper prints it (``FULL`` or ``HALF`` the text width, in
inches) with 7-8 pt type, so what is legible here is legible in print; :func:`save` writes it at
``DPI``. Every figure module of the suite writes its PNGs through :func:`save`.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.ticker
import matplotlib.transforms

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

FULL = 6.3  # inches: the paper's text width (A4, 2.3 cm margins)
HALF = 3.1  # inches: a figure printed at half the text width
DPI = 200
PRINT_RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
            "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 8, "lines.linewidth": 1.2,
            "lines.markersize": 4}
sns.set_theme(style="whitegrid", context="paper", rc=PRINT_RC)


def save(fig, out: str | Path, dpi: int = DPI, rect: tuple[float, float, float, float] = (0, 0, 1, 1),
         crop: bool = False) -> None:
    """Write ``fig`` as a PNG at ``dpi`` and close it; no ``Software`` tag, so the bytes depend on
    the drawing alone.

    A plot is laid out by ``tight_layout`` within ``rect`` (figure fractions: room left for a note
    below it). An image grid (``crop``) keeps the spacing it was built with and is cropped to what
    is drawn, with a thin margin."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if crop:
        fig.savefig(out, dpi=dpi, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.03)
    else:
        fig.tight_layout(rect=rect)
        fig.savefig(out, dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def lifetime_sparsity_histogram(latents_npz: str | Path, out: str | Path, title: str) -> None:
    """Histogram of log10 lifetime sparsity (per-latent firing rate) of the latents that fire; dead
    latents (log 0) cannot be drawn and are counted in the title."""
    density = np.load(latents_npz)["lifetime_sparsity"]
    alive = density[density > 0]
    fig, ax = plt.subplots(figsize=(HALF, 2.3))
    if len(alive):
        sns.histplot(np.log10(alive), bins=40, ax=ax, color="C0")
    ax.set_xlabel("log$_{10}$ fraction of images a latent fires on")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}\n{len(alive)} alive, {len(density) - len(alive)} dead (not drawn)")
    save(fig, out)


def _events(frame: pd.DataFrame) -> list[tuple[float, str]]:
    """``(samples, label)`` of the events that change a training curve: the first dead latents
    (AuxK or ghost grads switch on) and every resampling (the cumulative ``resampled`` count grows)."""
    events = []
    if "dead" in frame and (frame["dead"] > 0).any():
        fix = ("AuxK on" if "auxk" in frame and (frame["auxk"] > 0).any() else
               "ghost grads on" if "ghost" in frame and (frame["ghost"] > 0).any() else "")
        events.append((float(frame.loc[frame["dead"] > 0, "samples"].iloc[0]),
                       "first dead latents" + (f" ({fix})" if fix else "")))
    if "resampled" in frame:
        grew = frame["resampled"].diff().fillna(frame["resampled"]) > 0
        events += [(float(samples), "resampling") for samples in frame.loc[grew, "samples"]]
    return events


def training_curve(log_jsonl: str | Path, out: str | Path, title: str) -> None:
    """Loss (total and its reconstruction term), explained variance and L0 against training
    samples, from ``train_log.jsonl``; dashed lines mark the first dead latents (where AuxK or ghost
    grads add a term to the loss) and dotted lines each resampling."""
    frame = pd.DataFrame([json.loads(line) for line in Path(log_jsonl).read_text().splitlines() if line])
    fig, axes = plt.subplots(1, 3, figsize=(FULL, 2.1), sharex=True)
    axes[0].plot(frame["samples"], frame["loss"], label="total loss")
    if "mse" in frame and not np.allclose(frame["mse"], frame["loss"]):
        axes[0].plot(frame["samples"], frame["mse"], label="reconstruction term")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss")
    axes[1].plot(frame["samples"], frame["explained_variance"])
    axes[1].set_ylabel("explained variance (batch)")
    axes[2].plot(frame["samples"], frame["l0"])
    axes[2].set_ylabel("L0 (active latents per input)")
    resampled = False
    for samples, label in _events(frame):
        first = label != "resampling"
        for ax in axes:
            ax.axvline(samples, color="C3" if first else "grey", ls="--" if first else ":", lw=0.9,
                       label=label if ax is axes[0] and (first or not resampled) else None)
        resampled = resampled or not first
    for ax in axes:
        ax.set_xlabel("training samples")
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=6.5, frameon=False)
    fig.suptitle(title)
    save(fig, out, rect=(0, 0.08, 1, 1))


def degenerate(frame: pd.DataFrame) -> pd.Series:
    """SAEs that left nothing to plot on a log L0 / fidelity frontier: L0 below 1 (almost every
    input has no active latent) or explained variance below 0 (worse than the mean)."""
    return (frame["l0"] < 1) | (frame["explained_variance"] < 0)


def frontier(tables: list[str | Path], out: str | Path) -> None:
    """Explained variance against L0 for every SAE of the sweeps: one line per architecture and
    model through its usable SAEs (the main SAE ringed); degenerate SAEs (:func:`degenerate`) are
    listed under the plot, not drawn, so no line runs to them."""
    frame = pd.concat([pd.read_csv(t) for t in tables])
    bad = degenerate(frame)
    drawn, dropped = frame[~bad], frame[bad]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    markers = dict(zip(sorted(frame["architecture"].unique()), "os^Dv"))
    for i, ((model, arch), group) in enumerate(drawn.sort_values("l0").groupby(["model", "architecture"], sort=True)):
        color = f"C{sorted(frame['model'].unique()).index(model)}"
        ls = "-" if arch == "topk" else "--"
        ax.plot(group["l0"], group["explained_variance"], ls=ls, marker=markers[arch], color=color,
                label=f"{model}, {arch}")
        main = group[group["name"] == "main"]
        ax.scatter(main["l0"], main["explained_variance"], s=80, facecolors="none", edgecolors="black", zorder=3,
                   label="main SAE" if i == 0 else None)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("L0 (active latents per input)")
    ax.set_ylabel("explained variance")
    ax.legend(fontsize=6.5)
    ax.set_title("sparsity / fidelity frontier (eval split)")
    rect = (0, 0, 1, 1)
    if len(dropped):
        listed = [f"{r.model} {r.name} (L0 {r.l0:.3g}, EV {r.explained_variance:.2g})" for r in dropped.itertuples()]
        lines = ["not drawn (L0 < 1 or EV < 0):"] + ["; ".join(listed[i:i + 2]) for i in range(0, len(listed), 2)]
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=6, va="bottom")
        rect = (0, 0.035 * len(lines) + 0.01, 1, 1)
    save(fig, out, rect=rect)


def compare_sweep(table: str | Path, out: str | Path, names: tuple[str, str]) -> None:
    """The cross-model scores of every SAE name both models trained against their L0 (compare_sweep's
    table); points where the two SAEs' L0 differ by more than 10% are hollow."""
    frame = pd.read_csv(table)
    frame["l0"] = np.sqrt(frame["l0_a"] * frame["l0_b"])  # geometric mean of the two SAEs' L0
    frame = frame[frame["l0"] > 0].sort_values("l0")
    matched = (frame["l0_ratio"] - 1).abs() <= 0.1
    a, b = names
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for color, (column, label) in zip(("C0", "C1", "C2"), (
            ("topk_overlap", f"top-k overlap {a} to {b}"), ("topk_overlap_b_to_a", f"top-k overlap {b} to {a}"),
            ("debiased_cka_codes", "debiased CKA of the codes"))):
        ax.plot(frame["l0"], frame[column], color=color, lw=0.8, alpha=0.6)
        ax.scatter(frame.loc[matched, "l0"], frame.loc[matched, column], color=color, label=label, zorder=3, s=16)
        ax.scatter(frame.loc[~matched, "l0"], frame.loc[~matched, column], facecolors="white", edgecolors=color,
                   zorder=3, s=16)
    top = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for _, row in frame.iterrows():  # each SAE's name and L0 ratio above the plot, at its L0
        ax.text(row["l0"], 1.02, f"{row['name']} ({row['l0_ratio']:.2g})", transform=top, rotation=40, fontsize=5.5,
                ha="left", va="bottom")
        ax.axvline(row["l0"], color="lightgrey", lw=0.6, zorder=0)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"L0 (geometric mean of the two SAEs; ratio {b}/{a})")
    ax.set_ylabel("score")
    ax.legend(fontsize=6.5, title="filled: L0 matched within 10%", title_fontsize=6.5)
    ax.set_title("comparison along the sweep (SAE name, L0 ratio)", pad=48)
    save(fig, out)
