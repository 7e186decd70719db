"""The split-level numbers of ``metrics.json`` from the per-latent table and the reconstruction sums.

Their definitions are in :mod:`saesuite.evaluate.evaluation`'s docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _quantiles(values: np.ndarray) -> dict:
    q = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"min": q[0], "p10": q[1], "median": q[2], "mean": float(values.mean()), "p90": q[3], "max": q[4]}


def density_histogram(fire_count: np.ndarray, n: int) -> dict:
    """Counts of ``log10(fire_count / n)`` over firing latents in 0.1-decade bins from ``floor(log10(1/n))`` to 0."""
    low = float(np.floor(np.log10(1.0 / n)))
    edges = np.round(np.linspace(low, 0.0, int(round(-low * 10)) + 1), 6)
    alive = fire_count > 0
    counts, _ = np.histogram(np.log10(fire_count[alive] / n), bins=edges)
    return {"log10_edges": edges.tolist(), "counts": counts.tolist(), "never_fire": int((~alive).sum())}


def entropy_summary(entropy: np.ndarray, n_classes: int, weighting: str) -> dict:
    """Mean and median over firing latents (``entropy`` NaN for the others) of a label entropy ``[F]``."""
    alive = entropy[~np.isnan(entropy)]
    return {
        "weighting": weighting,
        "units": "nats",
        "n_classes": n_classes,
        "max_possible": float(np.log(n_classes)) if n_classes else 0.0,
        "mean": float(alive.mean()) if len(alive) else None,
        "median": float(np.median(alive)) if len(alive) else None,
    }


def summary_metrics(table: pd.DataFrame, recon: dict, n_classes: int, alignment: dict, threshold: float) -> dict:
    """The scalar and distribution metrics of ``metrics.json`` from the per-latent table.

    ``alignment``: what :func:`saesuite.evaluate.evaluation.add_geometry` returned (the neurons and the
    chance level); ``threshold``: the ``|cos|`` above which a latent counts as aligned.
    """
    density = table["lifetime_sparsity"].to_numpy()
    mean_lifetime = float(density.mean())
    if not np.isclose(mean_lifetime, recon["population_sparsity"], rtol=1e-9, atol=1e-12):
        raise RuntimeError(f"mean lifetime sparsity {mean_lifetime} differs from population sparsity {recon['population_sparsity']}")
    out = {
        **recon,
        "mean_lifetime_sparsity": mean_lifetime,
        "dead_fraction": float(table["dead"].mean()),
        "dense_fraction": float(table["dense"].mean()),
        "fraction_firing_above_1pct": float((density > 0.01).mean()),
        "fraction_firing_above_10pct": float((density > 0.1).mean()),
        "mean_max_cosine_encoder": float(table["max_cos_other_encoder"].mean()),
        "mean_max_cosine_decoder": float(table["max_cos_other_decoder"].mean()),
        "average_activation": _quantiles(table["mean_activation"].to_numpy()),
        "feature_density_histogram": density_histogram(table["fire_count"].to_numpy(), recon["n"]),
        "label_entropy": entropy_summary(table["label_entropy"].to_numpy(), n_classes, "activation"),
        "label_entropy_firing": entropy_summary(table["label_entropy_firing"].to_numpy(), n_classes, "firing count"),
    }
    t = threshold
    align = {"threshold": t}
    for part in ("encoder", "decoder"):
        basis = table[f"{part}_basis_alignment"].to_numpy()
        align[f"basis_{part}_mean"] = float(basis.mean())
        align[f"basis_{part}_fraction_above"] = float((basis > t).mean())
        if alignment["neurons"] is not None:
            cos = table[f"{part}_neuron_alignment"].to_numpy()
            align[f"neuron_{part}_mean"] = float(cos.mean())
            align[f"neuron_{part}_fraction_above"] = float((cos > t).mean())
    out["alignment"] = {**align, **alignment}
    return out
