"""The rehearsal's cost table and the paper run's projected cost (benchmarks/README.md, "Rehearsal").

    python benchmarks/rehearsal_cost.py [--run results/rehearsal] [--readme benchmarks/README.md]
    python benchmarks/rehearsal_cost.py memory --rows 25000 50000   # peak memory against rows
    python benchmarks/rehearsal_cost.py sparse --k 64 256   # the inflated host terms at trained sparsity

Measured: every job's Snakemake benchmark file (wall ``s``, ``cpu_time``, ``max_rss``, ``io_out``)
summed per rule, and the bytes each stage's folder holds. On a shared machine wall time is inflated
by other processes; rates are taken from ``cpu_time``.

Projected (labelled so): the paper run (config/config.yaml: 1,281,167 + 50,000 images, 2,560 steps,
6 SAEs per model in one pass, 2 extra seeds, the expansion-64 replication, 100 permutations and 50
interval splits). GPU stages are FLOP counts over (peak x a stated achievable fraction), floored by
the CPU work that stays on the host (JPEG decoding, measured here per image); stages that run on
the CPU whatever the device (the comparison's scores, figures, explorer, paper) are their measured
CPU time scaled by the paper's counts. A SLURM cluster of N GPUs divides the GPU-parallel stages
(cache shards, SAE jobs) by N and leaves the rest.

``memory`` evaluates the ViT-L-14 SAE and compares the two main SAEs (2 permutations on 2 worker
processes, no splits) on the first 25,000 and all 50,000 rows of the rehearsal's eval caches, each in
its own process, and writes peak RSS (and the comparison's largest worker's) and its slope per row to
``results/rehearsal/memory.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# what the paper run does (config/config.yaml) against what the rehearsal did (config/rehearsal.yaml)
PAPER = {"train_images": 1_281_167, "eval_images": 50_000, "steps": 2560, "batch": 1024, "d": 1024, "F": 16384,
         "F_replication": 65536, "saes_per_pass": 6, "extra_seeds": 2, "permutations": 100, "interval_splits": 50,
         "cache_workers": 14}
GPUS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 peak FLOP/s (SXM)
FP32 = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12}  # fp32 (non-tensor) peak FLOP/s: the sweep's float32 GEMMs
FIGURE_RULES = {"frontier": "figure_frontier", "training_curve": "figure_training_curve",
                "lifetime_sparsity": "figure_lifetime_sparsity", "compare_sweep": "figure_compare_sweep"}
STAGE_DIRS = ("data", "cache", "sae", "eval", "sweep", "compare", "explorer", "figures", "paper", "planted")
SHARD_LOG = re.compile(r"(\d+) images in ([\d.]+) s .*waiting for data ([\d.]+) s, model ([\d.]+) s")
MARK = ("<!-- rehearsal-cost:start -->", "<!-- rehearsal-cost:end -->")


def rule_of(tsv: Path, bench_dir: Path) -> str:
    """The rule a benchmark file belongs to: its folder (``cache_shard/...``), its stem, or a figure rule."""
    rel = tsv.relative_to(bench_dir)
    if rel.parts[0] == "figures":
        return next(rule for prefix, rule in FIGURE_RULES.items() if rel.stem.startswith(prefix))
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def measured(run: Path) -> dict:
    """Per rule: jobs, wall and cpu seconds (summed over its jobs), peak RSS (MB, the largest job), MB written."""
    rules: dict[str, dict] = {}
    for tsv in sorted((run / "benchmarks").rglob("*.tsv")):
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        r = rules.setdefault(rule_of(tsv, run / "benchmarks"),
                             {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "written_mb": 0.0})
        r["jobs"] += 1
        r["wall_s"] += float(row["s"])
        r["cpu_s"] += float(row["cpu_time"])
        r["peak_rss_mb"] = max(r["peak_rss_mb"], float(row["max_rss"]))
        r["written_mb"] += float(row["io_out"])
    return rules


def disk(run: Path) -> dict:
    """MB on disk per stage folder of the run (``du``-like: the files' sizes)."""
    return {name: round(sum(f.stat().st_size for f in (run / name).rglob("*") if f.is_file()) / 1e6, 1)
            for name in STAGE_DIRS if (run / name).exists()}


def projected_disk(run: Path) -> dict:
    """GB the paper run writes, per stage folder: a cache split's bytes scale with its rows (activations and
    embeddings are per row), the SAE folder with the SAEs per model (main, 5 sweep, 2 seeds: 8 against
    those here; the replication as here), every other folder is already at the paper's size (50,000 eval rows,
    F = 16,384). Not counted: the dataset itself (ImageNet-1k: about 150 GB of JPEGs)."""
    size = lambda path: sum(f.stat().st_size for f in path.rglob("*") if f.is_file())  # noqa: E731
    out = {}
    for name in STAGE_DIRS:
        folder = run / name
        if not folder.exists() or name == "data":
            continue
        if name == "cache":
            total = 0.0
            for manifest in folder.glob("*/*/manifest.json"):
                m = json.loads(manifest.read_text())
                rows = PAPER["train_images"] if m["split"] == "train" else PAPER["eval_images"]
                total += size(manifest.parent) * rows / m["n"]
        elif name == "sae":
            replication = sum(size(d) for d in folder.glob("*/replication"))
            here = [c for c in folder.rglob("cfg.json") if "replication" not in c.parts]  # SAEs of all models
            per_model = len(here) / len({c.relative_to(folder).parts[0] for c in here})
            total = (size(folder) - replication) * (PAPER["saes_per_pass"] + PAPER["extra_seeds"]) / per_model + replication
        else:
            total = size(folder)
        out[name] = round(total / 1e9, 2)
    out["total"] = round(sum(out.values()), 1)
    return out


def backbone_rates(run: Path) -> dict:
    """Per model, from its cache shards' logs: seconds of model and of data loading (decode + resize,
    in one process) per image. A cache's images are its manifest's ``synthetic.rows[0]`` (all its rows
    without synthetic rows); a shard of synthetic rows only adds no model or data time."""
    rates = {}
    for manifest in sorted((run / "cache").glob("*/*/manifest.json")):
        m = json.loads(manifest.read_text())
        r = rates.setdefault(m["model"], {"images": 0, "model_s": 0.0, "data_s": 0.0})
        r["images"] += (m.get("synthetic") or {"rows": [m["n"]]})["rows"][0]
        for log in (run / "logs" / "cache_shard").glob(f"{m['model']}_{m['split']}_*.log"):
            found = SHARD_LOG.search(log.read_text())
            r["model_s"] += float(found.group(4))
            r["data_s"] += float(found.group(3))
    return {m: {"images": r["images"], "model_s_per_image": r["model_s"] / r["images"],
                "data_s_per_image": r["data_s"] / r["images"]} for m, r in rates.items()}


def backbone_flops() -> dict:
    """FLOPs of one 224 px image up to each paper hook (torch's FlopCounterMode on the real towers).
    MultiheadAttention's fused fast path is turned off: the counter does not see inside it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from saesuite.models.backbones import load_backbone

    torch.backends.mha.set_fastpath_enabled(False)
    out = {}
    for name, hook in (("RN50", "attnpool"), ("ViT-L-14", "resid_cls:22")):
        backbone = load_backbone(name, None, hook, init_seed=0)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            backbone.activations(torch.zeros(1, 3, 224, 224))
        out[name] = counter.get_total_flops()
    return out


def sweep_on_gpu(sparse: dict, rate: float, fp32_rate: float) -> dict:
    """compare_sweep on the GPU: per SAE pair the encodes (2·N·d·F per SAE, bf16) and the debiased CKA's
    three cross-products as float32 GEMMs (2·N·F² each). The top-k merges run on the device too; their CPU
    time measured here (the sparse stage at L0 64) is what they would cost the host if they did not."""
    p, pairs = PAPER, PAPER["saes_per_pass"]
    gemm = pairs * 3 * 2 * p["eval_images"] * p["F"] ** 2
    encode = pairs * 2 * 2 * p["eval_images"] * p["d"] * p["F"]
    topk_cpu = pairs * sparse["sweep_pair_topk"]["64"]["topk_cpu_s"]
    return {"gpu_s": gemm / fp32_rate + encode / rate, "parallel": False,
            "how": f"{pairs} SAE pairs: 3 cross-products of 2·N·F² FLOPs as float32 GEMMs / (fp32 peak x fraction) "
                   f"+ encodes / rate; the top-k merges run on the GPU (on this CPU they took {topk_cpu:.0f} s for "
                   f"{pairs} pairs, sparse.json); not checked on a GPU"}


def replication_at_l0(rules: dict, run: Path, sparse: dict) -> dict:
    """evaluate_sae's host term with the replication's codes as sparse as a trained SAE's: the rehearsal's
    replication job (its 16-step ReLU codes fire on half the latents) replaced by 4 x (F = 65,536 against
    16,384) the measured CPU time of evaluating an F = 16,384 SAE at each measured L0 (sparse.json)."""
    tsv = run / "benchmarks" / "evaluate_sae" / "ViT-L-14" / "replication.tsv"
    with open(tsv) as fh:
        replication = float(next(csv.DictReader(fh, delimiter="\t"))["cpu_time"])
    others = rules["evaluate_sae"]["cpu_s"] - replication
    return {k: others + PAPER["F_replication"] / PAPER["F"] * r["cpu_s"] for k, r in sparse["evaluate_topk"].items()}


def project(rules: dict, rates: dict, flops: dict, gpu: str, fraction: float, n_gpus: int, host_cores: int,
            run: Path, sparse: dict | None = None) -> dict:
    """Projected seconds per rule of the paper run: on one ``gpu`` at ``fraction`` of its bf16 peak with
    ``host_cores`` CPU cores beside it, and on ``n_gpus`` of them under SLURM. Each entry says how it was obtained.
    With ``sparse`` (the ``sparse`` mode's measurements) the sweep's cross-products are projected on the GPU."""
    p, rate = PAPER, GPUS[gpu] * fraction
    sae_step = 10 * p["batch"] * p["d"] * p["F"]  # encode + decode, and the backward matmuls for W_dec, f and W_enc
    images = p["train_images"] + p["eval_images"]
    out = {}
    cache_gpu = sum(flops.values()) * images / rate
    decode = sum(r["data_s_per_image"] for r in rates.values()) * images / p["cache_workers"]
    out["cache_shard"] = {"gpu_s": max(cache_gpu, decode), "parallel": True,
                          "how": f"max(FLOPs {sum(flops.values()) / 1e9:.0f} GFLOP/image x {images:,} images / rate, "
                                 f"JPEG decode {sum(r['data_s_per_image'] for r in rates.values()) * 1e3:.0f} ms/image "
                                 f"(measured, both models) / {p['cache_workers']} workers)"}
    train = {"train_sae": 2 * p["saes_per_pass"], "train_seed_sae": 2 * p["extra_seeds"],
             "train_replication": p["F_replication"] / p["F"]}
    for rule, saes in train.items():
        out[rule] = {"gpu_s": saes * p["steps"] * sae_step / rate, "parallel": True,
                     "how": f"{saes:g} SAE(s) of F = 16,384 x {p['steps']} steps x 10·B·d·F FLOPs / rate"}
    encode = 4 * p["eval_images"] * p["d"] * p["F"]  # encode + decode of every eval row
    # zero-shot fidelity of A, B and the replication (on B) over every eval image: at most 2 passes each
    fidelity = p["eval_images"] * 2 * (flops["RN50"] + 2 * flops["ViT-L-14"])
    host = lambda rule: rules.get(rule, {}).get("cpu_s", 0.0)  # noqa: E731 (measured here at the paper's shapes)
    out["evaluate_sae"] = {"gpu_s": (2 * encode + 4 * encode + fidelity) / rate + host("evaluate_sae"), "parallel": True,
                           "how": "A, B (F = 16k), replication (F = 64k): 4·N·d·F each + zero-shot fidelity over 50,000 "
                                  "images (2 passes) / rate, + the measured CPU time at the same shapes (an upper "
                                  "bound on the host's statistics)"}
    if sparse is not None:
        out["evaluate_sae"]["at_l0_s"] = {k: (2 * encode + 4 * encode + fidelity) / rate + host_s
                                          for k, host_s in replication_at_l0(rules, run, sparse).items()}
    out["sweep_frontier"] = {"gpu_s": 2 * p["saes_per_pass"] * encode / rate + host("sweep_frontier") * 2, "parallel": True,
                             "how": "6 SAEs per model: 4·N·d·F each / rate, + measured CPU time x 2 (3 SAEs here)"}
    units = lambda perms, splits, seeds: 1 + perms + splits + seeds  # noqa: E731 (score passes of one comparison)
    for rule in rules:
        if rule in out or rule == "imagenet_fixture":
            continue
        scale = 1.0
        how = "measured CPU time (runs on the CPU at any device, same counts)"
        if rule == "compare_saes":  # the null's and the halves' passes run in parallel on the host's cores
            serial, parallel = 1 + p["extra_seeds"], p["permutations"] + p["interval_splits"]
            scale = (serial + parallel / host_cores) / units(2, 2, 1)
            how = (f"measured CPU time / {units(2, 2, 1)} score passes here (1 + 2 permutations + 2 splits + 1 seed) x "
                   f"({serial} serial passes (observed, {p['extra_seeds']} seeds) + {parallel} null and split passes "
                   f"/ {host_cores} host cores): the scores run on the CPU, their passes in parallel")
        elif rule == "compare_sweep" and sparse is None:
            scale = p["saes_per_pass"] / 3
            how = "measured CPU time x 2: 6 SAE pairs against 3 here"
        elif rule == "compare_sweep":
            out[rule] = sweep_on_gpu(sparse, rate, FP32[gpu] * fraction)
            continue
        out[rule] = {"gpu_s": rules[rule]["cpu_s"] * scale, "parallel": False, "how": how}
    for entry in out.values():
        entry["slurm_s"] = entry["gpu_s"] / n_gpus if entry["parallel"] else entry["gpu_s"]
    return out


def table(rules: dict, projection: dict, gpu: str, n_gpus: int) -> str:
    """The markdown table: measured per rule beside the projection."""
    lines = [f"| rule | jobs | wall s (measured) | CPU s (measured) | peak RSS MB (measured) | written MB (measured) "
             f"| paper on 1 {gpu} s (projected) | paper on {n_gpus} GPUs s (projected) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rule, r in sorted(rules.items(), key=lambda kv: -kv[1]["cpu_s"]):
        proj = projection.get(rule, {})
        lines.append(f"| {rule} | {r['jobs']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['written_mb']:.0f} | {proj.get('gpu_s', 0):.0f} | {proj.get('slurm_s', 0):.0f} |")
    total = lambda key: sum(e.get(key, 0) for e in projection.values())  # noqa: E731
    lines.append(f"| **total** | {sum(r['jobs'] for r in rules.values())} | {sum(r['wall_s'] for r in rules.values()):.0f} "
                 f"| {sum(r['cpu_s'] for r in rules.values()):.0f} | {max(r['peak_rss_mb'] for r in rules.values()):.0f} "
                 f"| {sum(r['written_mb'] for r in rules.values()):.0f} | {total('gpu_s'):.0f} | {total('slurm_s'):.0f} |")
    at_l0 = projection.get("evaluate_sae", {}).get("at_l0_s", {})
    if at_l0:
        upper = projection["evaluate_sae"]["gpu_s"]
        lines.append("")
        lines.append("With the replication's codes as sparse as a trained SAE's (`rehearsal_cost.py sparse`), evaluate_sae "
                     "and the total on 1 " + gpu + " are " + "; ".join(
                         f"at L0 {k}: {s:.0f} s and {total('gpu_s') - upper + s:.0f} s" for k, s in at_l0.items()) + ".")
    return "\n".join(lines)


def write_readme(readme: Path, text: str) -> None:
    """Replace the block between the rehearsal markers of ``readme`` (appended if absent)."""
    old = readme.read_text()
    block = f"{MARK[0]}\n{text}\n{MARK[1]}"
    if MARK[0] in old:
        head, rest = old.split(MARK[0], 1)
        readme.write_text(head + block + rest.split(MARK[1], 1)[1])
    else:
        readme.write_text(old.rstrip("\n") + "\n\n" + block + "\n")


def stage_in_child(run: Path, stage: str, rows: int, k: int = 64) -> dict:
    """:func:`run_stage` in a fresh process (this script's ``stage`` mode), so that its peak RSS is its own."""
    child = subprocess.run([sys.executable, __file__, "stage", "--run", str(run), "--stage", stage,
                            "--rows", str(rows), str(rows), "--k", str(k)], capture_output=True, text=True, cwd=REPO)
    if child.returncode:
        raise RuntimeError(child.stderr[-2000:])
    return json.loads(child.stdout.strip().splitlines()[-1])


def memory_slope(run: Path, rows: list[int]) -> dict:
    """Peak RSS of evaluation and comparison on the first ``rows`` rows of the eval caches, each in a fresh
    process (this script's ``stage`` mode), and its slope in MB per 1,000 rows."""
    out: dict = {}
    for n in rows:
        for stage in ("evaluate", "compare"):
            out.setdefault(stage, {})[n] = stage_in_child(run, stage, n)
    for sizes in out.values():
        (a, ra), (b, rb) = sorted(sizes.items())
        sizes["slope_mb_per_1k_rows"] = (rb["peak_rss_mb"] - ra["peak_rss_mb"]) / (b - a) * 1000
    return out


def sparse_rates(run: Path, ks: list[int], stages: list[str]) -> dict:
    """The two host terms that the rehearsal's 16-step ReLU SAEs inflate (they fire on half their latents),
    measured instead with codes of a trained SAE's sparsity: the main SAEs re-read as TopK at each ``k``
    (exactly ``k`` latents per row, the paper's main SAEs at k = 64). Per ``k``, each in a fresh process
    over all 50,000 eval rows: CPU seconds and peak RSS of evaluating one SAE (its host statistics; the
    copied caches carry no CLIP embeddings, so no zero-shot fidelity) and of the sweep table's scores for one
    SAE pair (``compare.sweep.pair_scores``). Entries already in ``sparse.json`` for other stages or ``k`` are kept."""
    path = run / "sparse.json"
    out: dict = json.loads(path.read_text()) if path.exists() else {}
    for k in ks:
        for stage in stages:
            out.setdefault(stage, {})[str(k)] = stage_in_child(run, stage, PAPER["eval_images"], k)
            path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def as_topk(sae_dir: Path, k: int, out: Path) -> Path:
    """A copy of the TopK SAE at ``sae_dir`` that keeps ``k`` latents per row (same weights)."""
    import shutil

    shutil.copytree(sae_dir, out, ignore=shutil.ignore_patterns("seeds", "sweep", "replication", "checkpoints"))
    cfg = json.loads((out / "cfg.json").read_text())
    if cfg["architecture"] != "topk":
        raise SystemExit(f"{sae_dir} is a {cfg['architecture']} SAE; the sparse rates need the rehearsal's TopK main SAEs")
    (out / "cfg.json").write_text(json.dumps({**cfg, "k": k}, indent=2))
    return out


def run_stage(run: Path, n_rows: int, stage: str, k: int = 64) -> dict:
    """One stage on the first ``n_rows`` rows of the eval caches (copied to a temporary folder first):
    the process's peak RSS (MB), its RSS before the stage started, the stage's seconds and its CPU seconds
    (all threads). ``*_topk`` stages use the main SAEs as TopK SAEs at ``k`` (:func:`as_topk`)."""
    import shutil
    import tempfile
    import time

    import numpy as np

    from saesuite.cache.format import write_array_cache
    from saesuite.cache.reader import ActivationCache

    tmp = Path(tempfile.mkdtemp(prefix="rehearsal-rows-"))

    def first_rows(model: str) -> Path:
        cache = ActivationCache.open(run / "cache" / model / "val", checksums=False)
        meta = {k: v for k, v in cache.manifest.items() if k not in ("n", "shards", "n_bad", "bad_rows", "d", "dtype", "embed_dim")}
        return write_array_cache(tmp / model, cache.gather(np.arange(n_rows)), meta,
                                 labels=cache.labels()[:n_rows], n_shards=2)

    try:
        caches = {model: first_rows(model) for model in ("RN50", "ViT-L-14")}
        saes = {model: run / "sae" / model for model in caches}
        if stage.endswith("_topk"):
            saes = {model: as_topk(path, k, tmp / "sae" / model) for model, path in saes.items()}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731 (user + system, all threads)
        t0, c0, extra = time.perf_counter(), cpu(), {}
        if stage.startswith("evaluate"):
            from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae

            evaluate_sae(saes["ViT-L-14"], caches["ViT-L-14"], tmp / "eval", EvalConfig(device="cpu"))
        elif stage == "sweep_pair_topk":
            from saesuite.compare.sweep import compare_along_sweep
            from saesuite.evaluate.topk import StreamingTopK

            update, topk_cpu = StreamingTopK.update, [0.0]

            def timed_update(self, start, f):  # the top-k merges' share (on a GPU they run on the device)
                c = cpu()
                update(self, start, f)
                topk_cpu[0] += cpu() - c

            StreamingTopK.update = timed_update
            compare_along_sweep(caches["RN50"], caches["ViT-L-14"], {"main": saes["RN50"]}, {"main": saes["ViT-L-14"]}, k=9)
            extra["topk_cpu_s"] = topk_cpu[0]
        else:
            from saesuite.compare.features import CompareSettings
            from saesuite.compare.saes import compare_saes

            compare_saes(caches["RN50"], run / "sae" / "RN50", caches["ViT-L-14"], run / "sae" / "ViT-L-14",
                         tmp / "compare", settings=CompareSettings(permutations=2, interval_splits=0), workers=2)
        return {"rows": n_rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "before_stage_mb": before, "seconds": time.perf_counter() - t0, "cpu_s": cpu() - c0, "k": k,
                # the largest forked worker of the comparison's null (its RSS counts the pages it shares with the parent)
                "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if stage == "compare" else None,
                **extra}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="cost", choices=("cost", "memory", "sparse", "stage"),
                        help="stage: one stage at --rows rows (the child process of memory and sparse)")
    parser.add_argument("--stage", choices=("evaluate", "compare", "evaluate_topk", "sweep_pair_topk"), default="evaluate")
    parser.add_argument("--k", type=int, nargs="+", default=[64, 256],
                        help="sparse: the L0s (TopK k) to measure at; stage: the first one")
    parser.add_argument("--stages", nargs="+", choices=("evaluate_topk", "sweep_pair_topk"),
                        default=["evaluate_topk", "sweep_pair_topk"], help="sparse: the stages to (re)measure")
    parser.add_argument("--run", type=Path, default=REPO / "results" / "rehearsal")
    parser.add_argument("--readme", type=Path, default=REPO / "benchmarks" / "README.md")
    parser.add_argument("--gpu", default="H100", choices=sorted(GPUS))
    parser.add_argument("--fraction", type=float, default=0.4, help="achievable fraction of the bf16 peak")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the SLURM projection")
    parser.add_argument("--host-cores", type=int, default=16, help="CPU cores beside the GPU (the comparison's passes)")
    parser.add_argument("--rows", type=int, nargs=2, default=[25000, 50000])
    args = parser.parse_args()
    if args.mode == "stage":
        print(json.dumps(run_stage(args.run, args.rows[0], args.stage, args.k[0])))
        return
    if args.mode == "sparse":
        print(json.dumps(sparse_rates(args.run, args.k, args.stages), indent=2))
        return
    if args.mode == "memory":
        result = memory_slope(args.run, args.rows)
        (args.run / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    rules, rates, flops = measured(args.run), backbone_rates(args.run), backbone_flops()
    sparse_json = args.run / "sparse.json"
    sparse = json.loads(sparse_json.read_text()) if sparse_json.exists() else None
    projection = project(rules, rates, flops, args.gpu, args.fraction, args.gpus, args.host_cores, args.run, sparse)
    total = sum(e["gpu_s"] for e in projection.values())
    at_l0 = {k: total - projection["evaluate_sae"]["gpu_s"] + s for k, s in projection["evaluate_sae"].get("at_l0_s", {}).items()}
    cost = {"measured": {"rules": rules, "disk_mb": disk(args.run), "backbone_rates": rates,
                         "note": "Snakemake's benchmark files: wall s, cpu_time, max_rss, io_out, summed per rule"},
            "projected": {"disk_gb": projected_disk(args.run), "gpu": args.gpu, "fraction_of_peak": args.fraction, "peak_flops": GPUS[args.gpu],
                          "slurm_gpus": args.gpus, "host_cores": args.host_cores, "backbone_flops_per_image": flops, "paper": PAPER, "rules": projection,
                          "total_gpu_s": total,
                          "total_gpu_s_replication_at_l0": at_l0, "sparse": sparse,
                          "total_slurm_s": sum(e["slurm_s"] for e in projection.values())}}
    (args.run / "cost.json").write_text(json.dumps(cost, indent=2) + "\n")
    write_readme(args.readme, table(rules, projection, args.gpu, args.gpus))
    print(table(rules, projection, args.gpu, args.gpus))


if __name__ == "__main__":
    main()
