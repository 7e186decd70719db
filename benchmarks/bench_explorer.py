"""Scale benchmark of the feature explorer: 2 x 16,384 latents over 50,000 images.

Writes synthetic evaluation and comparison folders of that size with the library's own accumulators
and writers -- codes streamed chunk by chunk through :class:`StreamingTopK`, :class:`LatentStats`,
:class:`ReconstructionStats`, :class:`CodeSpill` / :func:`activation_distributions`, then
:func:`latent_table`, :func:`summary_metrics` and :func:`write_results`; the comparison's top-k overlap
pairing by :func:`overlap_counts` / :func:`match_sparse` -- then times :func:`build_explorer` with
``--workers`` thumbnail threads on synthetic ``--image-px`` images, and loads the built site from disk
in headless Chromium (when installed) to time the first paint of the home page and of a feature page.

Synthetic codes: each image fires ``--l0`` latents of model A, half of them chosen among the latents
that prefer its class (latent ``l`` prefers class ``l mod C``) and the rest with power-law frequencies,
so densities span several decades and some latents are rare or dead; model B fires a permuted copy of
A's first half (the shared features, with noisy values) plus its own latents. Writes
``results/bench/explorer_scale.json``.

    .venv/bin/python benchmarks/bench_explorer.py [--latents 16384 --images 50000 --workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from PIL import Image

from saesuite.compare.overlap import overlap_counts
from saesuite.compare.pairing import match_sparse
from saesuite.evaluate.distributions import CodeSpill, activation_distributions
from saesuite.evaluate.evaluation import EvalConfig, latent_table
from saesuite.evaluate.naming import PRIMARY, skipped_record
from saesuite.evaluate.results import write_results
from saesuite.evaluate.stats import LatentStats, ReconstructionStats
from saesuite.evaluate.summary import summary_metrics
from saesuite.evaluate.topk import StreamingTopK
from saesuite.report.explorer import ExplorerConfig, ModelInputs, build_explorer

CHUNK = 1000


def synthetic_codes(n: int, f: int, l0: int, labels: np.ndarray, n_classes: int, seed: int):
    """Yield ``(start, codes_a [b, F], codes_b [b, F])`` dense float32 chunks (see the module docstring)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, f + 1) ** 1.1
    p = rng.permutation(p / p.sum())
    perm = rng.permutation(f)  # A's latent l < F/2 is B's latent perm[l]
    own_b = np.setdiff1d(np.arange(f), perm[: f // 2])
    by_class = [np.arange(c, f, n_classes) for c in range(n_classes)]
    for start in range(0, n, CHUNK):
        b = min(CHUNK, n - start)
        a, bb = np.zeros((b, f), np.float32), np.zeros((b, f), np.float32)
        for r in range(b):
            mine = by_class[labels[start + r]]
            lat = np.unique(np.concatenate([rng.choice(mine, min(l0 // 2, len(mine)), replace=False),
                                            rng.choice(f, l0 // 2, p=p)]))
            vals = rng.gamma(2.0, 0.5, len(lat)).astype(np.float32)
            a[r, lat] = vals
            shared = lat < f // 2
            bb[r, perm[lat[shared]]] = vals[shared] * rng.uniform(0.7, 1.3, shared.sum()).astype(np.float32)
            bb[r, rng.choice(own_b, l0 // 2)] = rng.gamma(2.0, 0.5, l0 // 2).astype(np.float32)
        yield start, torch.from_numpy(a), torch.from_numpy(bb)


def evaluation_record(stats: dict, table: pd.DataFrame, recon: ReconstructionStats, d: int, f: int,
                      classes: list[str], name: str, cfg: EvalConfig) -> dict:
    """``metrics.json`` of a synthetic evaluation: summary_metrics over the streamed table, no geometry."""
    for col in ("max_cos_other_encoder", "max_cos_other_decoder", "encoder_basis_alignment", "decoder_basis_alignment"):
        table[col] = 0.0
    alignment = {"neurons": None, "neurons_description": None, "n_neurons": None, "chance": {
        "directions": 1, "seed": 0, "basis_mean": 0.0, "basis_fraction_above": 0.0, "neuron_mean": None, "neuron_fraction_above": None}}
    metrics = summary_metrics(table, recon.result(d, f), len(classes), alignment, cfg.alignment_threshold)
    metrics.update({"text_naming": None, "fidelity": None,
                    "skipped": {"neuron_alignment": "synthetic", "text_naming": "synthetic", "fidelity": "synthetic"},
                    "d_in": d, "d_sae": f, "architecture": "topk", "model": name, "hook": "synthetic", "dataset": "synthetic",
                    "split": "test", "classes": classes, "n_excluded": 0, "top_k": cfg.top_k,
                    "near_zero_threshold": cfg.near_zero_threshold, "dead_threshold": cfg.dead_threshold,
                    "dense_threshold": cfg.dense_threshold})
    return json.loads(json.dumps(metrics, default=lambda o: o.item()))


def write_synthetic(base: Path, n: int, f: int, n_classes: int, l0: int, k: int, seed: int) -> dict:
    """Two evaluation folders and a comparison folder under ``base``; returns the times."""
    cfg = EvalConfig(top_k=k)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    classes = [f"class{c}" for c in range(n_classes)]
    d = 8
    names = ("synth-A", "synth-B")
    acc = {m: dict(topk=StreamingTopK(f, k), latent=LatentStats(f, n_classes), recon=ReconstructionStats(n, d, cfg.near_zero_threshold),
                   spill=CodeSpill(base)) for m in names}
    t0 = time.perf_counter()
    x = torch.randn(CHUNK, d)
    for start, *codes in synthetic_codes(n, f, l0, labels, n_classes, seed):
        rows = np.arange(start, start + len(codes[0]))
        for m, code in zip(names, codes):
            a = acc[m]
            a["topk"].update(start, code)
            a["latent"].update(code, torch.from_numpy(labels[rows]))
            a["recon"].update(rows, x[: len(rows)], code, x[: len(rows)] * 0.9)
            a["spill"].append(rows, code)
    stream_s = time.perf_counter() - t0
    for m in names:
        a, out = acc[m], base / "eval" / m
        out.mkdir(parents=True)
        dist = activation_distributions(a["spill"], a["topk"].values[:, 0].numpy(), cfg.histogram_bins, cfg.bands,
                                        cfg.band_samples, cfg.band_seed)
        a["spill"].close()
        stats = {"latent": a["latent"], "topk": a["topk"], "recon": a["recon"], "heatmap": np.zeros((1, f), np.float32),
                 "top_images": SimpleNamespace(rows=np.zeros(0, int), scores=np.zeros(0), latents=np.zeros((0, 1), int),
                                               values=np.zeros((0, 1)))}
        table = latent_table(stats, n, cfg)
        metrics = evaluation_record(stats, table, a["recon"], d, f, classes, m, cfg)
        names_json = {"model": m, "hook": "synthetic", "prompt": cfg.prompt, "classes": classes, "latents": f, "primary": PRIMARY,
                      "methods": {meth: skipped_record(meth, cfg.prompt, k, "synthetic codes") for meth in (PRIMARY, "decoder")}}
        write_results(out, metrics, table, stats, labels, dist, names_json)
    # the comparison: top-k overlap, one-to-one pairing, and the record fields the explorer reads
    topk = [acc[m]["topk"].indices.numpy() for m in names]
    alive = [(t >= 0).all(1) for t in topk]
    counts = overlap_counts(topk[0][alive[0]], topk[1][alive[1]], n).tocsr()
    ra, rb = match_sparse(counts)
    fa, fb = np.flatnonzero(alive[0])[ra], np.flatnonzero(alive[1])[rb]
    overlap = np.asarray(counts[ra, rb]).ravel() / k
    comp = base / "compare"
    comp.mkdir()
    pd.DataFrame({"method": "overlap", "feature_a": fa, "feature_b": fb, "topk_overlap": overlap, "correlation": np.nan,
                  "above_threshold": overlap >= 0.5}).to_csv(comp / "pairs.csv", index=False)
    np.savez(comp / "topk_overlap.npz", topk_a=topk[0], topk_b=topk[1], rows=np.arange(n))
    mean = {"value": float(overlap.mean()), "chance": k / n}
    (comp / "comparison.json").write_text(json.dumps({
        "model_a": names[0], "model_b": names[1], "k": k, "n_images": n, "dataset": "synthetic", "split": "test",
        "settings": {"overlap_threshold": 0.5}, "topk_overlap": mean, "topk_overlap_b_to_a": mean}))
    return {"stream_s": stream_s, "synthetic_total_s": time.perf_counter() - t0, "pairs": int(len(fa)),
            "paired": int((overlap >= 0.5).sum())}


def synthetic_image(px: int):
    """``image_of(row)``: a ``px``-square image with a gradient and noise that depend on the row."""
    yy, xx = np.mgrid[0:px, 0:px]

    def image_of(row: int) -> Image.Image:
        rng = np.random.default_rng(row)
        base = (xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1))[..., None] * rng.uniform(0.3, 1, 3)
        noise = rng.integers(0, 40, (px, px, 3))
        return Image.fromarray(np.clip(base / 2 + noise, 0, 255).astype(np.uint8))
    return image_of


def first_paint(site: Path, routes: list[str]) -> dict | None:
    """First contentful paint (ms) and time until the route's content is drawn, per route, from ``file://``."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1366,768"):
        opts.add_argument(flag)
    out = {}
    with tempfile.TemporaryDirectory() as profile:
        opts.add_argument(f"--user-data-dir={profile}")
        browser = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
        try:
            for route in routes:
                browser.get("about:blank")
                t0 = time.perf_counter()
                browser.get((site / "index.html").as_uri() + route)
                browser.execute_script("""const done = arguments[arguments.length - 1];
                  (function wait() { document.querySelector('#main h1') ? requestAnimationFrame(() => done()) : setTimeout(wait, 5); })();""")
                wall = (time.perf_counter() - t0) * 1000
                fcp = browser.execute_script("const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null")
                out[route] = {"first_contentful_paint_ms": fcp, "content_drawn_ms": round(wall, 1)}
        finally:
            browser.quit()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latents", type=int, default=16384)
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--l0", type=int, default=32)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-px", type=int, default=160)
    ap.add_argument("--out", default="results/bench/explorer_scale.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="results") as tmp:
        base = Path(tmp).resolve()
        prep = write_synthetic(base, args.images, args.latents, args.classes, args.l0, args.k, seed=0)
        models = tuple(ModelInputs(m, base / "eval" / m) for m in ("synth-A", "synth-B"))
        cfg = ExplorerConfig(workers=args.workers)
        t0 = time.perf_counter()
        record = build_explorer(models, base / "compare", synthetic_image(args.image_px), base / "site", cfg)
        build_s = time.perf_counter() - t0
        files = sum(1 for p in (base / "site").rglob("*") if p.is_file())
        first_js = sum(p.stat().st_size for p in (base / "site").glob("*.*")) + (base / "site" / "data" / "site.js").stat().st_size
        busiest = int(np.argmax(pd.read_csv(base / "eval" / "synth-A" / "latents.csv")["fire_count"].to_numpy()))
        paint = first_paint(base / "site", ["#/", f"#/f/synth-A/{busiest}", "#/m/synth-A"])
        result = {
            "latents_per_model": args.latents, "images": args.images, "classes": args.classes, "l0": args.l0, "k": args.k,
            "workers": args.workers, "image_px": args.image_px, "synthetic_inputs": prep, "build_s": round(build_s, 1),
            "site_bytes": record["total_bytes"], "site_files": files, "thumbnails": record["thumbnails"],
            "thumbnail_bytes": record["thumbnail_bytes"], "first_paint_bytes": first_js,
            "models": record["models"], "first_paint": paint,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
