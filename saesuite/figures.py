"""Figures drawn from the files the stages write (PNG, seaborn/matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def _save(fig, out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150, metadata={"Software": None})
    plt.close(fig)


def lifetime_sparsity_histogram(latents_npz: str | Path, out: str | Path, title: str) -> None:
    """Histogram of log10 lifetime sparsity (per-latent firing rate); dead latents counted in the title."""
    density = np.load(latents_npz)["lifetime_sparsity"]
    alive = density[density > 0]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if len(alive):
        sns.histplot(np.log10(alive), bins=50, ax=ax, color="C0")
    ax.set_xlabel("log10 lifetime sparsity (fraction of images a latent fires on)")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}\n{len(alive)} alive, {len(density) - len(alive)} dead of {len(density)}")
    _save(fig, out)


def training_curve(log_jsonl: str | Path, out: str | Path, title: str) -> None:
    """Loss, explained variance and L0 against training samples, from ``train_log.jsonl``."""
    frame = pd.DataFrame([json.loads(line) for line in Path(log_jsonl).read_text().splitlines() if line])
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, column in zip(axes, ["loss", "explained_variance", "l0"]):
        ax.plot(frame["samples"], frame[column])
        ax.set_xlabel("training samples")
        ax.set_ylabel(column.replace("_", " "))
    axes[0].set_yscale("log")
    fig.suptitle(title)
    _save(fig, out)


def frontier(tables: list[str | Path], out: str | Path) -> None:
    """Explained variance against L0 for every SAE of the sweeps, one line per architecture and model."""
    frame = pd.concat([pd.read_csv(t) for t in tables])
    silent = frame[frame["l0"] <= 0]  # SAEs whose latents all died have no place on a log L0 axis
    frame = frame[frame["l0"] > 0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.lineplot(frame.sort_values("l0"), x="l0", y="explained_variance", hue="architecture", style="model",
                 markers=True, ax=ax)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("L0 (active latents per input)")
    ax.set_ylabel("explained variance")
    note = f"\n(not shown, L0 = 0: {', '.join(silent['model'] + ' ' + silent['name'])})" if len(silent) else ""
    ax.set_title("sparsity / fidelity frontier" + note, fontsize=9 if note else None)
    _save(fig, out)


def compare_sweep(table: str | Path, out: str | Path, names: tuple[str, str]) -> None:
    """The cross-model scores of every SAE name both models trained against their L0 (compare_sweep's table)."""
    frame = pd.read_csv(table)
    frame["l0"] = np.sqrt(frame["l0_a"] * frame["l0_b"])  # geometric mean of the two SAEs' L0
    frame = frame[frame["l0"] > 0].sort_values("l0")
    a, b = names
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for column, label in (("topk_overlap", f"top-k overlap {a}→{b}"), ("topk_overlap_b_to_a", f"top-k overlap {b}→{a}"),
                          ("debiased_cka_codes", "debiased CKA of the codes")):
        ax.plot(frame["l0"], frame[column], marker="o", label=label)
    for _, row in frame.iterrows():
        ax.annotate(f"{row['name']}\nL0 {b}/{a} {row['l0_ratio']:.2g}", (row["l0"], row["debiased_cka_codes"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("L0 (geometric mean of the two SAEs)")
    ax.set_ylabel("score")
    ax.legend(fontsize=7)
    ax.set_title("comparison along the sweep")
    _save(fig, out)
