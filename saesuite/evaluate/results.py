"""The files of an evaluation folder (``eval/{sae}/``): their names, how they are written, and the one
reader of ``metrics.json`` that every later stage (figures, comparison, explorer, paper) goes through.

* ``metrics.json`` -- the split's numbers (schema ``saesuite/schemas/metrics.schema.json``); written last,
  so its presence means the folder is complete.
* ``latents.csv`` -- one row per latent: the per-latent table, with its top-k rows.
* ``latents.npz`` -- the table's main columns at full precision and the top-k ``[F, k]`` rows and values.
* ``inputs.npz`` -- per input: labels, L0, near-zero fraction; the heatmap batch; the top-activating images.
* ``latent_stats.npz`` -- per latent: activation histogram, label distribution and activation-band samples
  (format in :mod:`saesuite.evaluate.distributions`).
* ``names.json`` -- every latent named in words, with each method's description and score (format and
  reader in :mod:`saesuite.evaluate.naming`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from saesuite.evaluate.distributions import LATENT_STATS_NPZ
from saesuite.evaluate.naming import write_names
from saesuite.files import write_json_atomic
from saesuite.schema import validate

METRICS, LATENTS_NPZ, LATENTS_CSV, INPUTS_NPZ = "metrics.json", "latents.npz", "latents.csv", "inputs.npz"


def read_metrics(path: str | Path) -> dict:
    """A ``metrics.json``, checked against its shipped schema (a file of another format fails here, naming it)."""
    metrics = json.loads(Path(path).read_text())
    try:
        validate(metrics, "metrics")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return metrics


def write_results(out_dir: Path, metrics: dict, table: pd.DataFrame, stats: dict, labels: np.ndarray,
                  distributions: dict, names: dict) -> None:
    """Write the folder's files from what :func:`saesuite.evaluate.evaluation.evaluate_sae` computed.

    ``stats``: the streamed accumulators (``recon``, ``latent``, ``topk``, ``top_images``, ``heatmap``);
    ``distributions``: :func:`saesuite.evaluate.distributions.activation_distributions`'s arrays;
    ``names``: :func:`saesuite.evaluate.naming.name_latents_in_words`'s ``names.json``.
    ``table`` gains its ``topk_rows`` column. ``metrics.json`` is written last.
    """
    topk, top_images, recon = stats["topk"], stats["top_images"], stats["recon"]
    table["topk_rows"] = [";".join(map(str, row)) for row in topk.indices.numpy()]
    np.savez(
        out_dir / LATENTS_NPZ,
        lifetime_sparsity=table["lifetime_sparsity"].to_numpy(),
        mean_activation=table["mean_activation"].to_numpy(),
        fire_count=table["fire_count"].to_numpy(),
        label_entropy=table["label_entropy"].to_numpy(),
        label_entropy_firing=table["label_entropy_firing"].to_numpy(),
        topk_indices=topk.indices.numpy(),
        topk_values=topk.values.numpy(),
    )
    np.savez(
        out_dir / INPUTS_NPZ,
        labels=labels,
        l0=recon.l0,
        near_zero_fraction=recon.near_zero_fraction,
        heatmap=stats["heatmap"],
        top_rows=top_images.rows,
        top_scores=top_images.scores,
        top_latents=top_images.latents,
        top_latent_values=top_images.values,
    )
    sums = stats["latent"].numpy()
    np.savez_compressed(  # [C, F] and [F, bins] arrays: mostly zeros at 1,000 classes (262 MB -> a few MB)
        out_dir / LATENT_STATS_NPZ,
        class_activation=sums["class_activation"],
        class_fire_count=sums["class_fire_count"].astype(np.int64),
        **distributions,
    )
    table.to_csv(out_dir / LATENTS_CSV, index=False, float_format="%.8g")
    write_names(out_dir, names)
    write_json_atomic(out_dir / METRICS, metrics)
