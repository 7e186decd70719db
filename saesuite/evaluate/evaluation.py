"""Evaluating an SAE on an activation cache, streaming over the rows once.

With ``f = encode(x)`` (``[n, F]``), ``x_hat = decode(f)`` over every row of the cache,
labels ``y`` and ``p_i = fire_count_i / n`` (latent i's density):

Reconstruction (SAEBench core, over the whole split)
  * ``mse`` -- mean over rows and dimensions of ``(x - x_hat)^2``
  * ``normalized_mse`` -- ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` (MSE over the MSE of predicting the mean)
  * ``explained_variance`` -- ``1 - normalized_mse``
  * ``cosine_similarity`` -- mean over rows of ``cos(x, x_hat)``
  * ``l2_norm_in``, ``l2_norm_out``, ``l2_ratio`` -- means over rows of ``||x||``, ``||x_hat||``, ``||x_hat|| / ||x||``
  * a score undefined on a row (``cos`` when ``x`` or ``x_hat`` is zero, ``l2_ratio`` when ``x`` is zero) is the
    mean over the rows where it is defined; ``undefined_rows`` counts those left out, ``zero_input_rows`` the
    all-zero rows and ``rows_without_active_latent`` the rows on which no latent fires
  * ``relative_reconstruction_bias`` -- ``E||x_hat||^2 / E<x, x_hat>`` (Gated SAE paper eq. 10; 1 is unbiased)
Sparsity
  * ``l0`` / ``l1`` -- mean over rows of the number of latents with ``f > 0`` / of ``sum |f|``
  * ``population_sparsity`` -- mean over rows of the fraction of latents with ``f > 0``
  * ``mean_lifetime_sparsity`` -- mean over latents of ``p_i`` (from per-latent counts; checked equal to the above)
  * ``fraction_near_zero`` -- mean over rows of the fraction of latents with ``|f| < near_zero_threshold``
  * ``dead_fraction`` -- latents whose total activation over the split is at most ``dead_threshold``
  * ``dense_fraction`` -- latents with ``p_i > dense_threshold``; ``fraction_firing_above_1pct/10pct``: ``p_i > 0.01/0.1``
  * ``mean_max_cosine_encoder/decoder`` -- mean over latents of the largest cosine with another latent's
    encoder column / decoder row (near-duplicates)
  * ``average_activation`` -- quantiles over latents of the mean activation ``sum_rows f_i / n``
  * ``feature_density_histogram`` -- counts of ``log10 p_i`` in 0.1-decade bins, and the never-firing count
Per latent (``latents.csv``, ``latents.npz``): density, activations, dead/dense flags, two label
entropies ``-sum_c q_c ln q_c``: ``label_entropy`` is activation-weighted (``q_c`` the share of the
latent's activation on class c, the baseline's definition), ``label_entropy_firing`` counts each
input it fires on once (``q_c`` the share of those inputs in class c); the neuron and
standard-basis alignment of its encoder and decoder vectors (largest ``|cos|``,
:mod:`saesuite.evaluate.alignment`; ``alignment.chance`` gives the same statistics for random unit
directions), its top-k rows, and for a hook in CLIP's joint space (attnpool) the class names
whose text embeddings are nearest its decoder direction. Every latent of any hook is also named
from its top images' CLIP embeddings (``names.json``, :mod:`saesuite.evaluate.naming`).
Per latent, for the pages that show it (``latent_stats.npz``, :mod:`saesuite.evaluate.distributions`):
its activation histogram, activation mass and firing count per class, and images sampled from bands
of its activation range, collected in the same pass (no later stage encodes again).
Downstream (:mod:`saesuite.evaluate.fidelity`, when a dataset is given): zero-shot accuracy clean /
spliced / mean-ablated, the fraction recovered and chance accuracy ``1 / classes``.

Any cache in the documented format works, also one no open_clip model made (synthetic
activations, a user's own model): the metrics that need the backbone (neuron alignment,
text names, zero-shot fidelity) are then null, and ``skipped`` says why for each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from saesuite.evaluate.alignment import (
    basis_alignment,
    chance_alignment,
    max_abs_cosine,
    max_cosine_with_others,
    neuron_directions,
)
from saesuite.models.backbones import Backbone, load_backbone, not_an_open_clip_site
from saesuite.cache.reader import ActivationCache
from saesuite.device import resolve_device
from saesuite.outputs import output_lock
from saesuite.data.datasets import DatasetSpec, load_dataset
from saesuite.errors import CacheError, ConfigError
from saesuite.evaluate.distributions import CodeSpill, activation_distributions
from saesuite.evaluate.results import write_results
from saesuite.evaluate.stats import LatentStats, ReconstructionStats, TopActivatingImages, label_entropy
from saesuite.evaluate.fidelity import split_fidelity
from saesuite.evaluate.naming import Naming, name_latents_in_words
from saesuite.sae.model import SAE, load_sae
from saesuite.schema import validate
from saesuite.evaluate.summary import summary_metrics
from saesuite.evaluate.topk import StreamingTopK


@dataclass(frozen=True)
class EvalConfig:
    near_zero_threshold: float = 1e-6
    dead_threshold: float = 0.0
    chunk_rows: int = 4096
    device: str = "cpu"
    top_k: int = 9  # images kept per latent
    dense_threshold: float = 0.1  # a latent firing on more than this fraction of inputs is dense
    alignment_threshold: float = 0.5  # |cos| above which a latent counts as aligned
    heatmap_rows: int = 64  # inputs of the activation heatmap batch (the first rows)
    top_images: int = 20  # inputs with the highest activations, with their strongest latents
    latents_per_image: int = 5
    text_names: int = 5  # class names listed per latent (attnpool hooks)
    prompt: str = "a photo of a {}."
    fidelity_images: int | None = None  # images of the zero-shot fidelity test (None: all)
    batch_size: int = 256  # images per forward pass of the fidelity test
    grid_latents: int = 6  # latents per top-k image grid figure
    chance_directions: int = 4096  # random unit directions of the alignment chance level
    chance_seed: int = 0  # seed of those directions
    histogram_bins: int = 20  # activation histogram bins per latent, on (0, its largest activation]
    bands: int = 5  # activation bands per latent (equal-width intervals of its range) that images are sampled from
    band_samples: int = 3  # images sampled per band
    band_seed: int = 0  # seed of the sampling keys


def encode_chunks(sae: SAE, cache: ActivationCache, chunk_rows: int, device: str):
    """Yield ``(start, x, f, x_hat)`` tensors per chunk of the cache, in row order."""
    with torch.inference_mode():
        for start, x in cache.chunks(chunk_rows):
            xt = torch.from_numpy(x).to(device)
            f = sae.encode(xt)
            yield start, xt, f, sae.decode(f)


def _class_names(cache: ActivationCache, labels: np.ndarray) -> list[str]:
    classes = list(cache.manifest.get("classes") or [])
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if classes and n_classes > len(classes):
        raise CacheError(f"{cache.path}: labels go up to {n_classes - 1} but the manifest names {len(classes)} classes")
    return classes or [str(c) for c in range(n_classes)]


def check_sae_matches_cache(sae: SAE, sae_cfg: dict, sae_dir, cache: ActivationCache) -> None:
    """Refuse an SAE trained on another model, hook or width than the cache holds."""
    if cache.d != sae.d_in:
        raise ConfigError(f"SAE {sae_dir} takes d={sae.d_in} inputs but cache {cache.path} has d={cache.d}")
    if (sae_cfg.get("model"), sae_cfg.get("hook")) != (cache.manifest["model"], cache.manifest["hook"]):
        raise ConfigError(
            f"SAE {sae_dir} was trained on {sae_cfg.get('model')} {sae_cfg.get('hook')} but cache {cache.path} holds "
            f"{cache.manifest['model']} {cache.manifest['hook']}"
        )


def _open_matching(sae_dir, cache_dir, device: str) -> tuple[SAE, dict, ActivationCache]:
    sae, sae_cfg = load_sae(sae_dir, device)
    cache = ActivationCache.open(cache_dir, embeddings=True)  # the naming reads the images' embeddings
    check_sae_matches_cache(sae, sae_cfg, sae_dir, cache)
    return sae, sae_cfg, cache


def stream_split(sae: SAE, cache: ActivationCache, labels: np.ndarray, n_classes: int, cfg: EvalConfig,
                 spill: CodeSpill) -> dict:
    """One pass over the cache: every accumulator of :mod:`saesuite.evaluate.stats`, the top-k and the heatmap
    batch; the positive codes go to ``spill`` (:mod:`saesuite.evaluate.distributions` reads them back).

    Rows of bad images are left out of every statistic (their codes count as zero for the top-k).
    """
    valid = cache.valid_mask()  # rows of bad images are zeros in the cache: left out
    recon = ReconstructionStats(cache.n, cache.d, cfg.near_zero_threshold)
    latent = LatentStats(sae.d_sae, n_classes, cfg.device)
    topk = StreamingTopK(sae.d_sae, cfg.top_k, cfg.device)
    top_images = TopActivatingImages(cfg.top_images, min(cfg.latents_per_image, sae.d_sae))
    heat = np.zeros((min(cfg.heatmap_rows, cache.n), sae.d_sae), np.float32)
    labels_t = torch.from_numpy(labels)
    with tqdm(total=cache.n, unit="row", desc=f"evaluating SAE on {cache.manifest['model']}") as bar:
        for start, x, f, x_hat in encode_chunks(sae, cache, cfg.chunk_rows, cfg.device):
            rows = np.arange(start, start + len(f))
            y = labels_t[start : start + len(f)]
            ok = valid[rows]
            if ok.all():
                recon.update(rows, x, f, x_hat)
                latent.update(f, y)
                spill.append(rows, f)
            else:
                keep = torch.from_numpy(ok).to(f.device)
                recon.update(rows[ok], x[keep], f[keep], x_hat[keep])
                latent.update(f[keep], y[torch.from_numpy(ok)])
                spill.append(rows[ok], f[keep])
                f = f * keep[:, None]  # bad rows never enter the top lists
            topk.update(start, f)
            top_images.update(start, f)
            if start < len(heat):
                heat[start : start + len(f)] = f[: len(heat) - start].float().cpu().numpy()
            bar.update(len(f))
    return {"recon": recon, "latent": latent, "topk": topk, "top_images": top_images, "heatmap": heat, "valid": valid}


def latent_table(stats: dict, n: int, cfg: EvalConfig) -> pd.DataFrame:
    """Per-latent statistics ``[F rows]`` from the streamed sums (no geometry yet)."""
    sums = stats["latent"].numpy()
    fire, total = sums["fire_count"], sums["total_activation"]
    entropy = label_entropy(sums["class_activation"])
    mass = sums["class_activation"]
    with np.errstate(invalid="ignore", divide="ignore"):
        top_share = np.where(total > 0, mass.max(0) / mass.sum(0), np.nan)
        mean_active = np.where(fire > 0, total / np.maximum(fire, 1), 0.0)
        log10_density = np.where(fire > 0, np.log10(fire / n), -np.inf)
    return pd.DataFrame(
        {
            "latent": np.arange(len(fire)),
            "fire_count": fire,
            "lifetime_sparsity": fire / n,
            "log10_density": log10_density,
            "total_activation": total,
            "mean_activation": total / n,
            "mean_active_activation": mean_active,
            "dead": total <= cfg.dead_threshold,
            "dense": fire / n > cfg.dense_threshold,
            "label_entropy": entropy,
            "label_entropy_firing": label_entropy(sums["class_fire_count"]),
            "top_class": np.where(total > 0, mass.argmax(0), -1),
            "top_class_share": top_share,
        }
    )


def add_geometry(table: pd.DataFrame, sae: SAE, backbone: Backbone | None, cfg: EvalConfig) -> tuple[dict, str | None]:
    """Add near-duplicate and alignment columns to ``table`` in place.

    Returns what the alignment was measured against (``neurons``, ``neurons_description``,
    ``n_neurons``, and the ``chance`` level of random directions) and why neuron alignment
    was skipped (None when it was not).
    """
    w_enc, w_dec = sae.W_enc.detach().T, sae.W_dec.detach()  # [F, d] each
    table["max_cos_other_encoder"] = max_cosine_with_others(w_enc)
    table["max_cos_other_decoder"] = max_cosine_with_others(w_dec)
    table["encoder_basis_alignment"] = basis_alignment(w_enc)
    table["decoder_basis_alignment"] = basis_alignment(w_dec)
    neurons = neuron_directions(backbone) if backbone is not None else None
    info = {"neurons": None, "neurons_description": None, "n_neurons": None}
    if neurons is None:
        info["chance"] = chance_alignment(cfg.chance_directions, sae.d_in, cfg.chance_seed, cfg.alignment_threshold)
        if backbone is None:
            return info, "no backbone"
        return info, f"hook {backbone.hook} has no single layer of units writing into it"
    directions, name, what = neurons
    directions = directions.to(w_dec.device)
    for part, w in (("encoder", w_enc), ("decoder", w_dec)):
        table[f"{part}_neuron_alignment"], table[f"{part}_neuron"] = max_abs_cosine(w, directions)
    info.update(neurons=name, neurons_description=what, n_neurons=len(directions))
    info["chance"] = chance_alignment(cfg.chance_directions, sae.d_in, cfg.chance_seed, cfg.alignment_threshold,
                                      directions)
    return info, None


def evaluate_sae(
    sae_dir: str | Path,
    cache_dir: str | Path,
    out_dir: str | Path,
    cfg: EvalConfig = EvalConfig(),
    dataset: DatasetSpec | None = None,
) -> dict:
    """Write ``metrics.json`` (schema-checked), ``latents.csv``, ``latents.npz``, ``inputs.npz``,
    ``latent_stats.npz`` and ``names.json`` (:mod:`saesuite.evaluate.results`).

    The backbone the cache names (its weights tag, or its random-weight seed) is loaded
    for neuron alignment and text naming. With ``dataset`` (the images the cache was
    made from) the zero-shot fidelity test runs too; without it ``fidelity`` is null.
    A cache no open_clip model made (its model or hook is not open_clip's) loads no
    backbone: those metrics are null, and ``skipped`` gives the reason of each.

    ``out_dir`` is created and locked first (:func:`saesuite.outputs.output_lock`): an output path
    that cannot be written, or a folder another run is writing, fails before any computing.
    """
    with output_lock(out_dir):
        return _evaluate_locked(sae_dir, cache_dir, Path(out_dir), cfg, dataset)


def _evaluate_locked(sae_dir, cache_dir, out_dir: Path, cfg: EvalConfig, dataset: DatasetSpec | None) -> dict:
    """:func:`evaluate_sae` once its output folder is locked: stream the split, describe the latents, score, write."""
    device = str(resolve_device(cfg.device))
    cfg = replace(cfg, device=device)  # every accumulator on the resolved device ("auto" is not a torch device)
    sae, sae_cfg, cache = _open_matching(sae_dir, cache_dir, device)
    labels = cache.labels()
    classes = _class_names(cache, labels)
    with CodeSpill(out_dir) as spill:  # the positive codes, read back once the latents' largest values are known
        stats = stream_split(sae, cache, labels, len(classes), cfg, spill)
        distributions = activation_distributions(spill, stats["topk"].values[:, 0].numpy(), cfg.histogram_bins,
                                                 cfg.bands, cfg.band_samples, cfg.band_seed)
    table = latent_table(stats, stats["recon"].n, cfg)
    backbone, no_backbone = _open_backbone(cache.manifest, device)
    alignment, skip_neurons = add_geometry(table, sae, backbone, cfg)
    skipped = _skipped(backbone, no_backbone or skip_neurons, no_backbone, dataset)
    naming, names = name_latents_in_words(table, sae, cache, stats["topk"].indices.numpy(), labels, classes, backbone,
                                          skipped, Naming(cfg.prompt, cfg.text_names, cfg.top_k))
    fidelity = None
    if skipped["fidelity"] is None:
        images = load_dataset(dataset, cache.manifest["split"], transform=backbone.preprocess)
        fidelity = split_fidelity(backbone, sae, cache, images, stats["valid"], stats["recon"].mean, classes,
                                  n_images=cfg.fidelity_images, prompt=cfg.prompt, batch_size=cfg.batch_size, device=device)
    recon = stats["recon"].result(cache.d, sae.d_sae)
    metrics = {
        **summary_metrics(table, recon, len(classes), alignment, cfg.alignment_threshold),
        "text_naming": naming,
        "fidelity": fidelity,
        "skipped": skipped,
        **_identity(sae, sae_cfg, cache.manifest, classes, stats["valid"], cfg),
    }
    metrics = _plain(metrics)
    validate(metrics, "metrics")
    write_results(out_dir, metrics, table, stats, labels, distributions, names)
    return metrics


def _open_backbone(manifest: dict, device: str) -> tuple[Backbone | None, str | None]:
    """The backbone that made the cache, or None and why (a cache no open_clip model made)."""
    no_backbone = not_an_open_clip_site(manifest["model"], manifest["hook"])
    if no_backbone is not None:
        return None, no_backbone
    backbone = load_backbone(manifest["model"], manifest.get("pretrained"), manifest["hook"], device,
                             init_seed=manifest.get("init_seed") or 0)
    return backbone, None


def _skipped(backbone: Backbone | None, no_neurons: str | None, no_backbone: str | None,
             dataset: DatasetSpec | None) -> dict:
    """``skipped``: why neuron alignment, text naming and the fidelity test were not run (None: they were)."""
    skipped = {"neuron_alignment": no_neurons, "text_naming": no_backbone, "fidelity": no_backbone}
    if backbone is not None and backbone.hook.site != "attnpool":
        skipped["text_naming"] = f"hook {backbone.hook} is not in CLIP's joint image-text space (attnpool is)"
    if backbone is not None and dataset is None:
        skipped["fidelity"] = "no dataset given (the images the cache was made from)"
    return skipped


def _identity(sae: SAE, sae_cfg: dict, manifest: dict, classes: list[str], valid: np.ndarray, cfg: EvalConfig) -> dict:
    """What was evaluated on what, and the settings the numbers depend on (the tail of ``metrics.json``)."""
    return {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "architecture": sae.architecture,
        "model": sae_cfg["model"],
        "hook": sae_cfg["hook"],
        "dataset": manifest["dataset"],
        "split": manifest["split"],
        "classes": classes,
        "n_excluded": int((~valid).sum()),
        "top_k": cfg.top_k,
        "near_zero_threshold": cfg.near_zero_threshold,
        "dead_threshold": cfg.dead_threshold,
        "dense_threshold": cfg.dense_threshold,
    }


def _plain(obj):
    """numpy scalars to Python numbers, recursively (for JSON and the schema)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
