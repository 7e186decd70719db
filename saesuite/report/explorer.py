"""A static feature-explorer site for the two SAEs of a comparison: ``results/{run}/explorer/``.

Built only from what the evaluation (``metrics.json``, ``latents.csv``, ``latents.npz``, ``inputs.npz``,
``latent_stats.npz``: :mod:`saesuite.evaluate.results`) and the comparison wrote, and the split's images
for the thumbnails; no SAE or activation cache is opened. The site is plain files that open from disk
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
``latent_stats.npz`` also holds images sampled from bands of each latent's activation range
(:mod:`saesuite.evaluate.distributions`), which the pages do not show yet.
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
from PIL import Image

from saesuite.compare.overlap import overlap_counts
from saesuite.evaluate.distributions import LATENT_STATS_NPZ, read_latent_stats
from saesuite.evaluate.results import INPUTS_NPZ, LATENTS_CSV, LATENTS_NPZ, METRICS, read_metrics
from saesuite.files import write_json_atomic

ASSETS = ("index.html", "app.js", "style.css")
SITE_JSON = "site.json"  # build record: sizes, counts, settings (not read by the page)


@dataclass(frozen=True)
class ExplorerConfig:
    thumbnail_px: int = 64  # longest side of a thumbnail (images are never enlarged)
    image_format: str = "webp"  # webp | jpeg | png
    quality: int = 80  # webp / jpeg quality
    label_classes: int = 8  # classes listed in a latent's label distribution (the rest summed as "other")
    features_per_file: int = 256
    best_pairs: int = 200  # rows of each pairs page


@dataclass
class ModelInputs:
    """One model's name and its evaluation folder (:mod:`saesuite.evaluate.results`)."""

    name: str
    eval_dir: Path


def _round(x: np.ndarray, digits: int = 4) -> list:
    """Floats to ``digits`` significant digits (NaN/inf to None) for compact JSON."""
    out = []
    for v in np.asarray(x, np.float64).ravel():
        out.append(float(f"{v:.{digits}g}") if np.isfinite(v) else None)
    return out


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


@dataclass
class Comparison:
    """What the site shows of the comparison: settings, best partners both ways, and the matched pairs."""

    record: dict  # comparison.json
    k: int
    n_images: int
    kept_rows: np.ndarray  # compare's row i is cache row kept_rows[i]
    alive: tuple[np.ndarray, np.ndarray]  # [F] per side: a full top-k
    partners: tuple[np.ndarray, np.ndarray]  # best partner by top-k overlap, and its overlap
    partner_overlap: tuple[np.ndarray, np.ndarray]
    match: tuple[np.ndarray, np.ndarray]  # the one-to-one overlap matching (pairs.csv), -1 if none
    match_overlap: tuple[np.ndarray, np.ndarray]
    threshold: float  # overlap above which a matched pair counts as paired


def read_comparison(compare_dir: Path, names: list[str]) -> Comparison:
    """The comparison of models ``names`` (in its order) from ``comparison.json``, ``topk_overlap.npz`` and ``pairs.csv``."""
    record = json.loads((compare_dir / "comparison.json").read_text())
    if (record["model_a"], record["model_b"]) != tuple(names):
        raise ValueError(f"{compare_dir} compares {record['model_a']} with {record['model_b']}, not {names[0]} with {names[1]}")
    overlap = np.load(compare_dir / "topk_overlap.npz")
    k, n_compare = int(record["k"]), int(record["n_images"])
    topk = (overlap["topk_a"], overlap["topk_b"])
    alive = tuple((t >= 0).all(1) for t in topk)
    pa, oa, pb, ob = best_partners(topk[0], topk[1], alive[0], alive[1], n_compare, k)
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    matched = pairs[pairs["method"] == "overlap"]
    match = (np.full(len(alive[0]), -1, np.int64), np.full(len(alive[1]), -1, np.int64))
    match_overlap = (np.full(len(alive[0]), np.nan), np.full(len(alive[1]), np.nan))
    fa, fb = matched["feature_a"].to_numpy(int), matched["feature_b"].to_numpy(int)
    match[0][fa], match[1][fb] = fb, fa
    match_overlap[0][fa] = match_overlap[1][fb] = matched["topk_overlap"].to_numpy(float)
    return Comparison(record, k, n_compare, overlap["rows"], alive, (pa, pb), (oa, ob), match, match_overlap,
                      float(record["settings"]["overlap_threshold"]))


@dataclass
class Evaluation:
    """One model's evaluation files, as the site uses them."""

    metrics: dict
    table: pd.DataFrame  # latents.csv
    top_rows: np.ndarray  # [F, k] top-k rows (-1: none)
    top_values: np.ndarray  # [F, k]
    stats: dict  # latent_stats.npz

    @classmethod
    def read(cls, eval_dir: Path) -> "Evaluation":
        npz = np.load(eval_dir / LATENTS_NPZ)
        return cls(read_metrics(eval_dir / METRICS), pd.read_csv(eval_dir / LATENTS_CSV), npz["topk_indices"],
                   npz["topk_values"], read_latent_stats(eval_dir / LATENT_STATS_NPZ))


def index_columns(ev: Evaluation, comp: Comparison, side: int) -> dict:
    """``data/{model}/index.js``'s per-latent table, column-wise."""
    table = ev.table
    columns = {
        "latent": table["latent"].astype(int).tolist(),
        "density": _round(table["lifetime_sparsity"]),
        "log10_density": _round(table["log10_density"]),
        "mean_activation": _round(table["mean_activation"]),
        "max_activation": _round(ev.top_values[:, 0]),
        "label_entropy": _round(table["label_entropy"]),
        "top_class": table["top_class"].astype(int).tolist(),
        "top_class_share": _round(table["top_class_share"]),
        "neuron_alignment": _round(_column(table, "encoder_neuron_alignment")),
        "partner": comp.partners[side].tolist(),
        "partner_overlap": _round(comp.partner_overlap[side]),
        "match": comp.match[side].tolist(),
        "match_overlap": _round(comp.match_overlap[side]),
        "alive": (ev.top_rows[:, 0] >= 0).astype(int).tolist(),
    }
    if "text_names" in table:
        columns["text_names"] = table["text_names"].fillna("").astype(str).tolist()
    return columns


def write_feature_files(ev: Evaluation, name: str, out_dir: Path, cfg: ExplorerConfig) -> int:
    """``data/{name}/f{chunk:04d}.js``: each latent's top-k, activation histogram and label distribution; returns the bytes."""
    label_idx, label_share = label_distribution(ev.stats["class_activation"], cfg.label_classes)
    histogram, n_latents, total = ev.stats["histogram"], len(ev.table), 0
    for start in range(0, n_latents, cfg.features_per_file):
        chunk = []
        for i in range(start, min(start + cfg.features_per_file, n_latents)):
            valid, shown = ev.top_rows[i] >= 0, label_share[i] > 0
            chunk.append({
                "rows": ev.top_rows[i][valid].tolist(),
                "acts": _round(ev.top_values[i][valid]),
                "hist": histogram[i].tolist(),
                "labels": label_idx[i][shown].tolist(),
                "shares": _round(label_share[i][shown], 3),
            })
        total += _write_js(out_dir / "data" / name / f"f{start // cfg.features_per_file:04d}.js",
                           "features", name, start, chunk)
    return total


def pair_page(ev: Evaluation, comp: Comparison, side: int, cfg: ExplorerConfig) -> dict:
    """A pairs page: the best matched pairs from this side, and the densest alive features with no partner."""
    alive, match, match_overlap = comp.alive[side], comp.match[side], comp.match_overlap[side]
    density = ev.table["lifetime_sparsity"].to_numpy()
    paired = alive & (np.nan_to_num(match_overlap) >= comp.threshold)
    unpaired = np.flatnonzero(alive & ~paired)
    unpaired = unpaired[np.argsort(-density[unpaired], kind="stable")][: cfg.best_pairs]
    feats = np.flatnonzero(alive & (match >= 0))
    feats = feats[np.lexsort((feats, -match_overlap[feats]))][: cfg.best_pairs]
    return {"best": feats.tolist(), "unpaired": unpaired.tolist()}


def site_model(ev: Evaluation, comp: Comparison, side: int, names: list[str]) -> dict:
    """A model's entry in ``data/site.js``."""
    metrics = ev.metrics
    chance = (comp.record["topk_overlap"], comp.record["topk_overlap_b_to_a"])[side]
    return {
        "name": names[side], "other": names[1 - side], "hook": metrics["hook"], "architecture": metrics["architecture"],
        "d_sae": int(metrics["d_sae"]), "alive": int(comp.alive[side].sum()), "text_names": "text_names" in ev.table,
        "neurons": (metrics.get("alignment") or {}).get("neurons"),
        "mean_best_overlap": chance["value"], "best_overlap_chance": chance["chance"],
    }


def copy_assets(out_dir: Path) -> int:
    """The page, script and style sheet (``explorer_assets/``) into ``out_dir``; returns their bytes."""
    assets = resources.files("saesuite") / "explorer_assets"
    total = 0
    for name in ASSETS:
        (out_dir / name).write_bytes((assets / name).read_bytes())
        total += (out_dir / name).stat().st_size
    return total


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
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "data").mkdir(parents=True)
    names = [m.name for m in models]
    comp = read_comparison(Path(compare_dir), names)
    evals = [Evaluation.read(m.eval_dir) for m in models]
    record = {"models": {}, "k": comp.k, "thumbnail_px": cfg.thumbnail_px, "image_format": cfg.image_format}
    for side, (name, ev) in enumerate(zip(names, evals)):
        index = {"columns": index_columns(ev, comp, side), "density_histogram": ev.metrics["feature_density_histogram"]}
        record["models"][name] = {
            "latents": len(ev.table), "alive": int((ev.top_rows[:, 0] >= 0).sum()),
            "index_bytes": _write_js(out_dir / "data" / name / "index.js", "index", name, index),
            "feature_bytes": write_feature_files(ev, name, out_dir, cfg),
        }
    rows = np.concatenate([ev.top_rows.ravel() for ev in evals])
    thumb_bytes = make_thumbnails(rows, image_of, out_dir / "img", cfg)
    site = {
        "models": [site_model(ev, comp, side, names) for side, ev in enumerate(evals)],
        "pages": [pair_page(ev, comp, side, cfg) for side, ev in enumerate(evals)],
        "classes": evals[0].metrics["classes"], "k": comp.k, "n_images": comp.n_images,
        "dataset": comp.record["dataset"], "split": comp.record["split"], "ext": _ext(cfg),
        "features_per_file": cfg.features_per_file, "histogram_bins": int(evals[0].stats["histogram"].shape[1]),
        "overlap_threshold": comp.threshold, "pair_chance": comp.k / comp.n_images,
        "labels": np.load(models[0].eval_dir / INPUTS_NPZ)["labels"].tolist(),
        "compared_rows_are_cache_rows": bool(np.array_equal(comp.kept_rows, np.arange(len(comp.kept_rows)))),
    }
    site_bytes = _write_js(out_dir / "data" / "site.js", "site", site)
    asset_bytes = copy_assets(out_dir)
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    record.update({"thumbnails": len(np.unique(rows[rows >= 0])), "thumbnail_bytes": thumb_bytes,
                   "site_bytes": site_bytes, "asset_bytes": asset_bytes, "total_bytes": total})
    write_json_atomic(out_dir / SITE_JSON, record)
    return record
