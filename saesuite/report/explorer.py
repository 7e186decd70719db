"""A static feature-explorer site for the two SAEs of a comparison: ``results/{run}/explorer/``.

Built only from what the evaluation (``metrics.json``, ``latents.csv``, ``latents.npz``, ``inputs.npz``,
``latent_stats.npz``: :mod:`saesuite.evaluate.results`) and the comparison wrote, and the split's images
for the thumbnails; no SAE or activation cache is opened (:mod:`saesuite.report.explorer_data` reads them
and says what "alive", "rare", "dead" and "paired" mean, once for every page). The site is plain files
that open from disk (``file://``) or through ``python -m http.server``, with nothing fetched from the network:

* ``index.html``, ``app.js``, ``style.css`` -- one page, one small vanilla script, hash routes
  (``#/m/{model}`` table, ``#/f/{model}/{latent}`` feature page, ``#/pairs/{side}``, ``#/c`` concepts,
  ``#/c/{class}`` one concept, ``#/map``);
* ``data/site.js`` -- models and their state counts, classes, the comparison's summary, the pairs pages'
  feature lists: all the first paint reads, a few kB plus one class index per image;
* ``data/{model}/index.js`` -- the per-latent table, column-wise (loaded by the table and feature pages);
* ``data/{model}/f{chunk:04d}.js`` -- feature details (top-k, activation histogram, label distribution,
  activation-band samples), ``features_per_file`` latents a file, loaded on demand;
* ``data/concepts.js`` and ``data/concept/{class}.js`` -- per class, each model's features about it and
  how they pair;
* ``data/map.js`` -- both models' features on one 2-D map (``#/map``), where the comparison made one;
* ``img/{row}.{ext}`` -- one small thumbnail per image shown anywhere (top-k and band samples), shared by
  every feature and both models (the two caches hold the same images in the same order), made by
  ``workers`` threads.

Data files are scripts that call ``EXPLORER.*(...)`` with a JSON argument rather than ``.json``
files: browsers refuse ``fetch()`` of local files, but load ``<script src>`` from ``file://``.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from saesuite.files import write_json_atomic
from saesuite.report.explorer_data import (Comparison, Evaluation, concept, feature_records, index_columns,
                                           label_distribution, map_points, pair_page, read_comparison, state_counts)

ASSETS = ("index.html", "app.js", "style.css")
SITE_JSON = "site.json"  # build record: sizes, counts, settings (not read by the page)
_SAVE = {"webp": ("webp", dict(format="WEBP", method=4)), "jpeg": ("jpg", dict(format="JPEG")),
         "png": ("png", dict(format="PNG", optimize=True))}


@dataclass(frozen=True)
class ExplorerConfig:
    thumbnail_px: int = 64  # longest side of a thumbnail (images are never enlarged)
    image_format: str = "webp"  # webp | jpeg | png
    quality: int = 80  # webp / jpeg quality
    label_classes: int = 8  # classes listed in a latent's label distribution (the rest summed as "other")
    features_per_file: int = 256
    best_pairs: int = 200  # rows of each pairs page
    concept_features: int = 40  # features listed per model on a concept page
    strip_images: int = 5  # top images shown per feature in a list
    workers: int = 2  # threads making thumbnails


@dataclass
class ModelInputs:
    """One model's name and its evaluation folder (:mod:`saesuite.evaluate.results`)."""

    name: str
    eval_dir: Path


def thumbnail(image: Image.Image, path: Path, cfg: ExplorerConfig) -> int:
    """Write ``image`` as a centre-square thumbnail of at most ``cfg.thumbnail_px`` (never enlarged); its bytes."""
    image = image.convert("RGB")
    side = min(image.size)
    if max(image.size) > cfg.thumbnail_px:
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image.thumbnail((cfg.thumbnail_px, cfg.thumbnail_px), Image.Resampling.LANCZOS)
    options = dict(_SAVE[cfg.image_format][1])
    if cfg.image_format != "png":
        options["quality"] = cfg.quality
    image.save(path, **options)
    return path.stat().st_size


def make_thumbnails(rows: np.ndarray, image_of: Callable[[int], Image.Image], out_dir: Path, cfg: ExplorerConfig) -> int:
    """One thumbnail per distinct image row ``>= 0``, ``img/{row}.{ext}``, by ``cfg.workers`` threads
    (Pillow releases the interpreter lock while it resizes and encodes); returns the bytes written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = _SAVE[cfg.image_format][0]

    def one(row: int) -> int:
        return thumbnail(image_of(row), out_dir / f"{row}.{ext}", cfg)

    unique = np.unique(rows[rows >= 0]).tolist()
    if cfg.workers <= 1:
        return sum(map(one, unique))
    with ThreadPoolExecutor(cfg.workers) as pool:
        return sum(pool.map(one, unique, chunksize=64))


def write_js(path: Path, call: str, *args) -> int:
    """``EXPLORER.{call}(args...);`` to ``path``; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",".join(json.dumps(a, separators=(",", ":"), allow_nan=False) for a in args)
    path.write_text(f"EXPLORER.{call}({body});\n")
    return path.stat().st_size


def write_feature_files(ev: Evaluation, name: str, out_dir: Path, cfg: ExplorerConfig) -> int:
    """``data/{name}/f{chunk:04d}.js``, ``cfg.features_per_file`` latents each; returns the bytes."""
    n, per, total = len(ev.table), cfg.features_per_file, 0
    labels = label_distribution(ev.stats["class_activation"], cfg.label_classes)
    for start in range(0, n, per):
        chunk = feature_records(ev, labels, start, min(start + per, n))
        total += write_js(out_dir / "data" / name / f"f{start // per:04d}.js", "features", name, start, chunk)
    return total


def write_concepts(evals: list[Evaluation], comp: Comparison, classes: list[str], out_dir: Path, cfg: ExplorerConfig) -> int:
    """``data/concept/{c}.js`` for every class and their summary ``data/concepts.js``; returns the bytes."""
    total, summary = 0, []
    for c in range(len(classes)):
        page = concept(evals, comp, c, classes, cfg.concept_features, cfg.strip_images)
        total += write_js(out_dir / "data" / "concept" / f"{c}.js", "concept", c, page)
        summary.append([[m["n_by_label"], m["paired"], m["paired_same_class"]] for m in page["models"]])
    return total + write_js(out_dir / "data" / "concepts.js", "concepts", summary)


def site_model(ev: Evaluation, comp: Comparison, side: int, names: list[str]) -> dict:
    """A model's entry in ``data/site.js``."""
    metrics = ev.metrics
    chance = (comp.record["topk_overlap"], comp.record["topk_overlap_b_to_a"])[side]
    return {
        "name": names[side], "other": names[1 - side], "hook": metrics["hook"], "architecture": metrics["architecture"],
        "d_sae": int(metrics["d_sae"]), **state_counts(ev, comp.k), "pairable": int(comp.pairable[side].sum()),
        "paired": int(comp.paired(side).sum()), "named": ev.names is not None,
        "naming": {m: {"description": r["description"], "score": r["score"]} for m, r in ev.naming.items()},
        "naming_skipped": ev.naming_skipped,
        "neurons": (metrics.get("alignment") or {}).get("neurons"),
        "mean_best_overlap": chance["value"], "best_overlap_chance": chance["chance"],
    }


def copy_assets(out_dir: Path) -> int:
    """The page, script and style sheet (``explorer_assets/``) into ``out_dir``; returns their bytes."""
    assets = resources.files("saesuite") / "explorer_assets"
    for name in ASSETS:
        (out_dir / name).write_bytes((assets / name).read_bytes())
    return sum((out_dir / name).stat().st_size for name in ASSETS)


def build_explorer(
    models: tuple[ModelInputs, ModelInputs],
    compare_dir: str | Path,
    image_of: Callable[[int], Image.Image],
    out_dir: str | Path,
    cfg: ExplorerConfig = ExplorerConfig(),
) -> dict:
    """Write the site for models A and B (the comparison's order) to ``out_dir``; return its build record.

    ``image_of(row)`` gives the PIL image of row ``row`` of the evaluation split (called from
    ``cfg.workers`` threads at once).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "data").mkdir(parents=True)
    names = [m.name for m in models]
    comp = read_comparison(Path(compare_dir), names)
    evals = [Evaluation.read(m.eval_dir) for m in models]
    classes = evals[0].metrics["classes"]
    record = {"models": {}, "k": comp.k, "thumbnail_px": cfg.thumbnail_px, "image_format": cfg.image_format}
    for side, (name, ev) in enumerate(zip(names, evals)):
        index = {"columns": index_columns(ev, comp, side), "density_histogram": ev.metrics["feature_density_histogram"]}
        record["models"][name] = {
            **state_counts(ev, comp.k), "pairable": int(comp.pairable[side].sum()),
            "index_bytes": write_js(out_dir / "data" / name / "index.js", "index", name, index),
            "feature_bytes": write_feature_files(ev, name, out_dir, cfg),
        }
    rows = np.concatenate([a.ravel() for ev in evals for a in (ev.top_rows, ev.stats["band_rows"])])
    thumb_bytes = make_thumbnails(rows, image_of, out_dir / "img", cfg)
    first = evals[0].stats["histogram"]
    site = {
        "models": [site_model(ev, comp, side, names) for side, ev in enumerate(evals)],
        "pages": [pair_page(ev, comp, side, cfg.best_pairs) for side, ev in enumerate(evals)],
        "classes": classes, "k": comp.k, "n_images": comp.n_images,
        "dataset": comp.record["dataset"], "split": comp.record["split"], "ext": _SAVE[cfg.image_format][0],
        "features_per_file": cfg.features_per_file, "histogram_bins": int(first.shape[1]),
        "bands": int(evals[0].stats["band_counts"].shape[1]),
        "overlap_threshold": comp.threshold, "pair_chance": comp.k / comp.n_images,
        "dead_threshold": evals[0].metrics["dead_threshold"], "labels": evals[0].labels.tolist(),
        "compared_rows_are_cache_rows": bool(np.array_equal(comp.kept_rows, np.arange(len(comp.kept_rows)))),
    }
    concept_bytes = write_concepts(evals, comp, classes, out_dir, cfg)
    points = map_points(Path(compare_dir), names)
    if points is not None:
        site["map"] = {"method": points["method"], "quality": points["quality"]}
        record["map_bytes"] = write_js(out_dir / "data" / "map.js", "map", points)
    site_bytes = write_js(out_dir / "data" / "site.js", "site", site)
    asset_bytes = copy_assets(out_dir)
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    record.update({"thumbnails": len(np.unique(rows[rows >= 0])), "thumbnail_bytes": thumb_bytes,
                   "concept_bytes": concept_bytes, "site_bytes": site_bytes, "asset_bytes": asset_bytes,
                   "total_bytes": total})
    write_json_atomic(out_dir / SITE_JSON, record)
    return record
