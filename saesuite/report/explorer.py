"""A static feature-explorer site for the two SAEs of a comparison: ``results/{run}/explorer/``.

Built from what the evaluation and comparison wrote, plus one pass of each SAE over its
evaluation cache (activation histograms and label distributions per latent, which the
evaluation keeps only as summaries). The site is plain files that open from disk
(``file://``) or through ``python -m http.server``, with nothing fetched from the network:

* ``index.html``, ``app.js``, ``style.css`` -- one page, one small vanilla script, hash routes
  (``#/m/{model}`` index, ``#/f/{model}/{latent}`` feature page, ``#/pairs/{a|b}`` pairs);
* ``data/site.js`` -- models, classes, comparison summary, best pairs and unpaired features;
* ``data/{model}/index.js`` -- the per-latent table, column-wise, and the log-density histogram;
* ``data/{model}/f{chunk:04d}.js`` -- feature details (top-k rows and values, activation
  histogram, label distribution, partners), ``FEATURES_PER_FILE`` latents a file, loaded on demand;
* ``img/{row}.{ext}`` -- one small thumbnail per image that is in any latent's top-k, shared by
  every feature and both models (the two caches hold the same images in the same order).

Data files are scripts that call ``EXPLORER.*(...)`` with a JSON argument rather than ``.json``
files: browsers refuse ``fetch()`` of local files, but load ``<script src>`` from ``file://``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from PIL import Image

from saesuite.cache.cache import ActivationCache, write_json_atomic
from saesuite.evaluate.stats import LatentStats
from saesuite.evaluate.evaluation import encode_chunks
from saesuite.compare.overlap import overlap_counts
from saesuite.sae.model import load_sae

ASSETS = ("index.html", "app.js", "style.css")
SITE_JSON = "site.json"  # build record: sizes, counts, settings (not read by the page)


@dataclass(frozen=True)
class ExplorerConfig:
    thumbnail_px: int = 64  # longest side of a thumbnail (images are never enlarged)
    image_format: str = "webp"  # webp | jpeg | png
    quality: int = 80  # webp / jpeg quality
    histogram_bins: int = 20  # activation histogram bins per latent, from 0 to its largest activation
    label_classes: int = 8  # classes listed in a latent's label distribution (the rest summed as "other")
    features_per_file: int = 256
    best_pairs: int = 200  # rows of each pairs page
    chunk_rows: int = 4096
    device: str = "cpu"


@dataclass
class ModelInputs:
    """Where one model's evaluation lives: ``eval_dir`` (metrics.json, latents.csv, latents.npz), SAE and cache."""

    name: str
    eval_dir: Path
    sae_dir: Path
    cache_dir: Path


def _round(x: np.ndarray, digits: int = 4) -> list:
    """Floats to ``digits`` significant digits (NaN/inf to None) for compact JSON."""
    out = []
    for v in np.asarray(x, np.float64).ravel():
        out.append(float(f"{v:.{digits}g}") if np.isfinite(v) else None)
    return out


def latent_histograms(codes_iter, n_latents: int, top_values: np.ndarray, bins: int) -> np.ndarray:
    """``[F, bins]`` counts of each latent's positive activations in ``bins`` equal bins on ``(0, max_i]``.

    ``codes_iter`` yields ``f [b, F]`` arrays; ``top_values [F]`` is each latent's largest activation
    (values above it land in the last bin).
    """
    counts = np.zeros(n_latents * bins, np.int64)
    top = np.where(top_values > 0, top_values, 1.0)
    for f in codes_iter:
        rows, cols = np.nonzero(f > 0)
        b = np.minimum((f[rows, cols] / top[cols] * bins).astype(np.int64), bins - 1)
        counts += np.bincount(cols * bins + b, minlength=n_latents * bins)
    return counts.reshape(n_latents, bins)


def stream_latents(model: ModelInputs, top_values: np.ndarray, n_classes: int, cfg: ExplorerConfig) -> dict:
    """One pass of the SAE over its cache: activation histograms ``[F, bins]`` and class mass ``[C, F]``."""
    sae, _ = load_sae(model.sae_dir, cfg.device)
    cache = ActivationCache.open(model.cache_dir, checksums=False)
    labels = torch.from_numpy(cache.labels())
    valid = cache.valid_mask()
    stats = LatentStats(sae.d_sae, n_classes, cfg.device)

    def codes():
        for start, _x, f, _xh in encode_chunks(sae, cache, cfg.chunk_rows, cfg.device):
            keep = torch.from_numpy(valid[start : start + len(f)])
            f = f[keep.to(f.device)]
            stats.update(f, labels[start : start + len(keep)][keep])
            yield f.float().cpu().numpy()

    hist = latent_histograms(codes(), sae.d_sae, top_values, cfg.histogram_bins)
    return {"histogram": hist, "class_activation": stats.numpy()["class_activation"]}


def label_distribution(class_activation: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``m`` classes ``[F, m]`` of each latent by activation mass and their shares ``[F, m]`` (0 if silent)."""
    mass = class_activation.T  # [F, C]
    total = mass.sum(1, keepdims=True)
    share = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    m = min(m, share.shape[1])
    order = np.argsort(-share, axis=1, kind="stable")[:, :m]
    return order, np.take_along_axis(share, order, 1)


def best_partners(topk_a: np.ndarray, topk_b: np.ndarray, alive_a: np.ndarray, alive_b: np.ndarray, n: int, k: int):
    """Each alive feature's best partner by top-k overlap, both ways (ties to the lower index).

    ``topk_* [F, k]`` rows, ``alive_* [F]`` bool. Returns ``(partner_a [F_A], overlap_a [F_A],
    partner_b [F_B], overlap_b [F_B])``; ``-1`` / NaN for dead features, ``-1`` / 0 for alive ones
    sharing no image with any alive feature of the other model.
    """
    fa, fb = np.flatnonzero(alive_a), np.flatnonzero(alive_b)
    counts = sp.coo_matrix(overlap_counts(topk_a[fa], topk_b[fb], n))

    def argmax(rows, cols, vals, size, ids_rows, ids_cols, total):
        partner, overlap = np.full(total, -1, np.int64), np.full(total, np.nan)
        overlap[ids_rows] = 0.0
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
        partner[ids_rows[rows[first]]] = ids_cols[cols[first]]
        overlap[ids_rows[rows[first]]] = vals[first] / k
        return partner, overlap

    pa, oa = argmax(counts.row, counts.col, counts.data.astype(float), len(fa), fa, fb, len(alive_a))
    pb, ob = argmax(counts.col, counts.row, counts.data.astype(float), len(fb), fb, fa, len(alive_b))
    return pa, oa, pb, ob


def make_thumbnails(rows: np.ndarray, image_of: Callable[[int], Image.Image], out_dir: Path, cfg: ExplorerConfig) -> int:
    """One thumbnail per distinct image row, ``img/{row}.{ext}``; returns the bytes written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for row in np.unique(rows[rows >= 0]):
        image = image_of(int(row)).convert("RGB")
        side = min(image.size)
        if max(image.size) > cfg.thumbnail_px:  # centre square crop, then shrink
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image.thumbnail((cfg.thumbnail_px, cfg.thumbnail_px), Image.Resampling.LANCZOS)
        path = out_dir / f"{int(row)}.{_ext(cfg)}"
        save = {"webp": dict(format="WEBP", quality=cfg.quality, method=6), "jpeg": dict(format="JPEG", quality=cfg.quality),
                "png": dict(format="PNG", optimize=True)}[cfg.image_format]
        image.save(path, **save)
        total += path.stat().st_size
    return total


def _ext(cfg: ExplorerConfig) -> str:
    return {"webp": "webp", "jpeg": "jpg", "png": "png"}[cfg.image_format]


def _write_js(path: Path, call: str, *args) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",".join(json.dumps(a, separators=(",", ":"), allow_nan=False) for a in args)
    path.write_text(f"EXPLORER.{call}({body});\n")
    return path.stat().st_size


def _column(table: pd.DataFrame, name: str, default=np.nan) -> np.ndarray:
    return table[name].to_numpy() if name in table else np.full(len(table), default)


def build_explorer(
    models: tuple[ModelInputs, ModelInputs],
    compare_dir: str | Path,
    image_of: Callable[[int], Image.Image],
    out_dir: str | Path,
    cfg: ExplorerConfig = ExplorerConfig(),
) -> dict:
    """Write the site for models A and B (the comparison's order) to ``out_dir``; return its build record.

    ``image_of(row)`` gives the PIL image of row ``row`` of the evaluation split.
    """
    out_dir, compare_dir = Path(out_dir), Path(compare_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "data").mkdir(parents=True)
    comparison = json.loads((compare_dir / "comparison.json").read_text())
    overlap = np.load(compare_dir / "topk_overlap.npz")
    k, n_compare = int(comparison["k"]), int(comparison["n_images"])
    kept_rows = overlap["rows"]  # compare's row i is cache row kept_rows[i]
    names = [m.name for m in models]
    if (comparison["model_a"], comparison["model_b"]) != tuple(names):
        raise ValueError(f"{compare_dir} compares {comparison['model_a']} with {comparison['model_b']}, not {names[0]} with {names[1]}")
    topk = (overlap["topk_a"], overlap["topk_b"])
    alive = tuple((t >= 0).all(1) for t in topk)
    pa, oa, pb, ob = best_partners(topk[0], topk[1], alive[0], alive[1], n_compare, k)
    partners, partner_overlap = (pa, pb), (oa, ob)
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    matched = pairs[pairs["method"] == "overlap"]
    match = [np.full(len(alive[0]), -1, np.int64), np.full(len(alive[1]), -1, np.int64)]
    match_overlap = [np.full(len(alive[0]), np.nan), np.full(len(alive[1]), np.nan)]
    fa, fb = matched["feature_a"].to_numpy(int), matched["feature_b"].to_numpy(int)
    match[0][fa], match[1][fb] = fb, fa
    match_overlap[0][fa] = match_overlap[1][fb] = matched["topk_overlap"].to_numpy(float)
    threshold = float(comparison["settings"]["overlap_threshold"])
    chance_records = (comparison["topk_overlap"], comparison["topk_overlap_b_to_a"])

    record = {"models": {}, "k": k, "thumbnail_px": cfg.thumbnail_px, "image_format": cfg.image_format}
    site_models, all_rows, pair_pages = [], [], []
    for side, model in enumerate(models):
        other = names[1 - side]
        metrics = json.loads((model.eval_dir / "metrics.json").read_text())
        table = pd.read_csv(model.eval_dir / "latents.csv")
        npz = np.load(model.eval_dir / "latents.npz")
        top_rows, top_values = npz["topk_indices"], npz["topk_values"]
        classes = metrics["classes"]
        streamed = stream_latents(model, top_values[:, 0], len(classes), cfg)
        label_idx, label_share = label_distribution(streamed["class_activation"], cfg.label_classes)
        all_rows.append(top_rows.ravel())
        n_latents = len(table)
        is_alive = top_rows[:, 0] >= 0
        text_names = table["text_names"].fillna("").astype(str).tolist() if "text_names" in table else None
        neuron = _column(table, "encoder_neuron_alignment")
        columns = {
            "latent": table["latent"].astype(int).tolist(),
            "density": _round(table["lifetime_sparsity"]),
            "log10_density": _round(table["log10_density"]),
            "mean_activation": _round(table["mean_activation"]),
            "max_activation": _round(top_values[:, 0]),
            "label_entropy": _round(table["label_entropy"]),
            "top_class": table["top_class"].astype(int).tolist(),
            "top_class_share": _round(table["top_class_share"]),
            "neuron_alignment": _round(neuron),
            "partner": partners[side].tolist(),
            "partner_overlap": _round(partner_overlap[side]),
            "match": match[side].tolist(),
            "match_overlap": _round(match_overlap[side]),
            "alive": is_alive.astype(int).tolist(),
        }
        if text_names is not None:
            columns["text_names"] = text_names
        index_bytes = _write_js(out_dir / "data" / model.name / "index.js", "index", model.name,
                                {"columns": columns, "density_histogram": metrics["feature_density_histogram"]})
        feature_bytes = 0
        for start in range(0, n_latents, cfg.features_per_file):
            stop = min(start + cfg.features_per_file, n_latents)
            chunk = []
            for i in range(start, stop):
                valid = top_rows[i] >= 0
                chunk.append({
                    "rows": top_rows[i][valid].tolist(),
                    "acts": _round(top_values[i][valid]),
                    "hist": streamed["histogram"][i].tolist(),
                    "labels": label_idx[i][label_share[i] > 0].tolist(),
                    "shares": _round(label_share[i][label_share[i] > 0], 3),
                })
            feature_bytes += _write_js(out_dir / "data" / model.name / f"f{start // cfg.features_per_file:04d}.js",
                                       "features", model.name, start, chunk)
        chance = chance_records[side]
        site_models.append({
            "name": model.name, "other": other, "hook": metrics["hook"], "architecture": metrics["architecture"],
            "d_sae": int(metrics["d_sae"]), "alive": int(alive[side].sum()), "text_names": text_names is not None,
            "neurons": (metrics.get("alignment") or {}).get("neurons"),
            "mean_best_overlap": chance["value"], "best_overlap_chance": chance["chance"],
        })
        # pages: best matched pairs from this side, and the densest alive features with no partner
        density = table["lifetime_sparsity"].to_numpy()
        paired = alive[side] & (np.nan_to_num(match_overlap[side]) >= threshold)
        unpaired = np.flatnonzero(alive[side] & ~paired)
        unpaired = unpaired[np.argsort(-density[unpaired], kind="stable")][: cfg.best_pairs]
        feats = np.flatnonzero(alive[side] & (match[side] >= 0))
        feats = feats[np.lexsort((feats, -match_overlap[side][feats]))][: cfg.best_pairs]
        pair_pages.append({"best": feats.tolist(), "unpaired": unpaired.tolist()})
        record["models"][model.name] = {"latents": n_latents, "alive": int(is_alive.sum()), "index_bytes": index_bytes,
                                        "feature_bytes": feature_bytes}

    rows = np.concatenate(all_rows)
    thumb_bytes = make_thumbnails(rows, image_of, out_dir / "img", cfg)
    n_thumbs = len(np.unique(rows[rows >= 0]))
    site = {
        "models": site_models, "pages": pair_pages, "classes": classes, "k": k, "n_images": n_compare,
        "dataset": comparison["dataset"], "split": comparison["split"], "ext": _ext(cfg),
        "features_per_file": cfg.features_per_file, "histogram_bins": cfg.histogram_bins,
        "overlap_threshold": threshold, "pair_chance": k / n_compare,
        "labels": ActivationCache.open(models[0].cache_dir, checksums=False).labels().tolist(),
        "compared_rows_are_cache_rows": bool(np.array_equal(kept_rows, np.arange(len(kept_rows)))),
    }
    site_bytes = _write_js(out_dir / "data" / "site.js", "site", site)
    assets = resources.files("saesuite") / "explorer_assets"
    asset_bytes = 0
    for name in ASSETS:
        (out_dir / name).write_bytes((assets / name).read_bytes())
        asset_bytes += (out_dir / name).stat().st_size
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    record.update({"thumbnails": n_thumbs, "thumbnail_bytes": thumb_bytes, "site_bytes": site_bytes,
                   "asset_bytes": asset_bytes, "total_bytes": total})
    write_json_atomic(out_dir / SITE_JSON, record)
    return record


def project_size(record: dict, latents: int, images: int, thumbnail_bytes: float) -> dict:
    """Projected site size for ``latents`` per SAE over an eval split of ``images`` images.

    Data files scale with the number of latents (bytes per latent measured on ``record``);
    thumbnails are at most one per image of the split (the union of 2 x latents x k top-k rows
    cannot exceed it), at ``thumbnail_bytes`` each.
    """
    per_latent = sum((m["index_bytes"] + m["feature_bytes"]) / m["latents"] for m in record["models"].values())
    data = per_latent * latents
    thumbs = min(images, 2 * latents * record["k"]) * thumbnail_bytes
    return {"data_bytes": data, "thumbnail_bytes_max": thumbs, "total_bytes_max": data + thumbs + record["asset_bytes"]}
