"""The ten-minute GPU check: what one H100/H200 does on each stage of the paper run, in bf16.

With random weights and generated data (no download, nothing to prepare), through the library's
own entry points, it measures, in order:

1. ``matmul``: a bf16 ``n x n x n`` matmul, the card's practical peak, beside its datasheet
   dense bf16 peak (``saesuite.cache.bench.BF16_PEAK``, by GPU name);
2. ``cache``: for the real ``RN50`` (``attnpool``) and ``ViT-L-14`` (``resid_cls:22``) towers
   (``pretrained=None``): the tower alone on preprocessed batches in memory (images/s, FLOP per
   image from torch's ``FlopCounterMode``, the fractions of both peaks), and
   ``saesuite.cache.writer.cache_shard`` end to end on generated ImageNet-sized JPEGs (decode
   workers, bf16 autocast, the shard write);
3. ``train``: ``saesuite.sae.train.train_sae`` of the paper's headline SAE (TopK k=64, d=1024,
   F=16,384, batch 1024, 2,621,440 samples, bf16, checkpoints on) on a planted cache of width
   1024: wall seconds and samples/s;
4. ``evaluate``: ``saesuite.evaluate.evaluate_sae`` of that SAE over a 50,000-row cache;
5. ``compare``: ``saesuite.compare.compare_saes`` of two such SAEs (16,384 x 16,384 features)
   over 50,000 images, with the permutations and splits given (fewer than the paper's 100 and 50);
6. ``sweep``: ``saesuite.compare.sweep.compare_along_sweep`` of the same pair (the sweep table's
   scores for one SAE name: L0s, top-k sets, and the debiased CKA's three 16,384 x 16,384
   cross-products as float32 GEMMs on the GPU).

Then the goals (ViT-L/14 caching at >= 60% of the bf16 peak, the paper SAE in under a minute)
and a projection of the paper run's GPU time from these rates. Writes ``results/bench/gpu.json``.
``--cpu-smoke`` runs every step on the CPU at tiny sizes (tiny towers, d=64), so the code paths
can be checked on a machine without a GPU; its numbers mean nothing.

    bash benchmarks/gpu_check.sh                 # on the GPU machine
    python benchmarks/gpu_check.py --cpu-smoke   # anywhere, in about half a minute
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from saesuite.cache.bench import BF16_PEAK, PAPER_IMAGES, gpu_peak, make_images
from saesuite.cache.planted import PlantedSpec, planted_activations, write_array_cache
from saesuite.cache.writer import cache_shard
from saesuite.compare.features import CompareSettings
from saesuite.compare.saes import compare_saes
from saesuite.compare.sweep import compare_along_sweep
from saesuite.data.datasets import load_dataset
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.models.backbones import load_backbone
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_sae

PAPER_SAE_SAMPLES = 2_621_440
GOALS = {"vit_cache_fraction_of_bf16_peak": 0.6, "paper_sae_seconds": 60.0, "paper_gpu_hours": 1.0}


@dataclass(frozen=True)
class Sizes:
    """Everything the check's size depends on: the GPU's, or the CPU smoke's."""

    towers: tuple[tuple[str, str], ...]
    matmul_n: int
    cache_images: int
    cache_batch: int
    model_batches: int
    num_workers: int
    d: int
    n_true: int
    k_true: int
    expansion: int
    k: int
    batch: int
    samples: int
    train_rows: int
    eval_rows: int
    chunk_rows: int
    permutations: int
    interval_splits: int
    compare_rows: int


GPU = Sizes(towers=(("RN50", "attnpool"), ("ViT-L-14", "resid_cls:22")), matmul_n=8192, cache_images=2048,
            cache_batch=256, model_batches=8, num_workers=14, d=1024, n_true=2048, k_true=32, expansion=16, k=64,
            batch=1024, samples=PAPER_SAE_SAMPLES, train_rows=65_536, eval_rows=50_000, chunk_rows=8192,
            permutations=10, interval_splits=4, compare_rows=10_000)
CPU_SMOKE = Sizes(towers=(("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:-2")), matmul_n=256, cache_images=16,
                  cache_batch=8, model_batches=2, num_workers=0, d=64, n_true=128, k_true=4, expansion=4, k=8,
                  batch=128, samples=4096, train_rows=2048, eval_rows=1024, chunk_rows=512, permutations=2,
                  interval_splits=2, compare_rows=256)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """``(result, seconds)`` of ``fn()``, the device synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def matmul_peak(n: int, device: torch.device, repeats: int = 10) -> dict:
    """Achieved FLOP/s of an ``n x n x n`` matmul (bf16 on CUDA, fp32 on CPU): the practical peak."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _, seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "tflop_per_s": 2 * n**3 * repeats / seconds / 1e12}


def bench_tower(name: str, hook: str, sizes: Sizes, device: torch.device, work: Path, peaks: dict) -> dict:
    """One tower: alone on batches in memory (images/s, FLOP/image, fractions of peak), then ``cache_shard``."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    bb = load_backbone(name, None, hook).prepare(device, precision)
    side = bb.preprocess.transforms[0].size if hasattr(bb.preprocess, "transforms") else 224
    side = side if isinstance(side, int) else side[0]
    batch = torch.randn(sizes.cache_batch, 3, side, side, device=device)
    bb.activations(batch)  # warm-up (cuDNN autotuning, lazy init)
    with FlopCounterMode(display=False) as counter:
        bb.activations(batch)
    flop_per_image = counter.get_total_flops() / len(batch)
    _, seconds = timed(lambda: [bb.activations(batch) for _ in range(sizes.model_batches)], device)
    model_ips = sizes.cache_batch * sizes.model_batches / seconds
    achieved = model_ips * flop_per_image
    spec = make_images(work / "images", "jpeg", sizes.cache_images)
    dataset = load_dataset(spec, "val", transform=bb.preprocess)
    _, cache_seconds = timed(lambda: cache_shard(
        bb, dataset, work / f"cache-{name}", 0, 1, dataset_name=spec.kind, split="val", batch_size=sizes.cache_batch,
        num_workers=sizes.num_workers, dtype="float16", device=str(device), precision=precision), device)
    cache_ips = len(dataset) / cache_seconds
    return {"model": name, "hook": hook, "d": bb.d, "precision": precision, "image_side": side,
            "gflop_per_image": flop_per_image / 1e9, "model_images_per_s": model_ips,
            "achieved_tflop_per_s": achieved / 1e12,
            "fraction_of_bf16_peak": achieved / peaks["datasheet"] if peaks["datasheet"] else None,
            "fraction_of_matmul_peak": achieved / peaks["matmul"],
            "cache_shard_images": len(dataset), "cache_shard_images_per_s": cache_ips,
            "cache_shard_bound": "model" if cache_ips > 0.9 * model_ips else "data loading or writing",
            "paper_cache_hours": PAPER_IMAGES / cache_ips / 3600}


def planted_pair(sizes: Sizes, work: Path) -> dict[str, dict[str, Path]]:
    """Train and eval caches of width ``d`` for two "models": planted activations, and the same
    images seen through a random rotation (so the two SAEs share features), rows aligned."""
    spec = PlantedSpec(d=sizes.d, n_true=sizes.n_true, k=sizes.k_true, seed=0)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(sizes.d, sizes.d)))[0].astype(np.float32)
    caches: dict[str, dict[str, Path]] = {"A": {}, "B": {}}
    for split, rows, stream in (("train", sizes.train_rows, 0), ("test", sizes.eval_rows, 1)):
        x, codes = planted_activations(spec, rows, stream)
        labels = codes.argmax(axis=1)
        for model, values in (("A", x), ("B", x @ rotation)):
            caches[model][split] = write_array_cache(work / model / split, values, labels=labels, split=split,
                                                     model=f"planted-{model}", extra={"synthetic": "planted, width d"})
    return caches


def sae_config(sizes: Sizes, device: torch.device, samples: int) -> TrainConfig:
    bf16 = device.type == "cuda"
    return TrainConfig(architecture="topk", k=sizes.k, expansion=sizes.expansion, batch_size=sizes.batch, samples=samples,
                       device=str(device), dtype="bfloat16" if bf16 else "float32",
                       b_dec_init_samples=min(65_536, sizes.train_rows), resample_pool_samples=min(65_536, sizes.train_rows))


def run(sizes: Sizes, device: torch.device, work: Path) -> dict:
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)",
                    "torch": torch.__version__, "machine": platform.machine(), "sizes": sizes.__dict__, "seconds": {}}
    start = time.perf_counter()
    report["matmul"] = matmul_peak(sizes.matmul_n, device)
    peaks = {"datasheet": gpu_peak(device), "matmul": report["matmul"]["tflop_per_s"] * 1e12}
    report["bf16_peak_tflop_per_s"] = peaks["datasheet"] / 1e12 if peaks["datasheet"] else None
    report["cache"] = [bench_tower(name, hook, sizes, device, work, peaks) for name, hook in sizes.towers]
    report["seconds"]["cache"] = time.perf_counter() - start

    caches = planted_pair(sizes, work / "planted")
    _, train_s = timed(lambda: train_sae(caches["A"]["train"], work / "sae" / "A", sae_config(sizes, device, sizes.samples)), device)
    report["train"] = {"d": sizes.d, "F": sizes.d * sizes.expansion, "k": sizes.k, "batch": sizes.batch,
                       "samples": sizes.samples, "seconds": train_s, "samples_per_s": sizes.samples / train_s,
                       "paper_sae_seconds": PAPER_SAE_SAMPLES / (sizes.samples / train_s)}
    # the second SAE only needs to exist: a tenth of the samples
    train_sae(caches["B"]["train"], work / "sae" / "B", sae_config(sizes, device, max(sizes.batch, sizes.samples // 10)))

    eval_cfg = EvalConfig(device=str(device), chunk_rows=sizes.chunk_rows)
    metrics, eval_s = timed(lambda: evaluate_sae(work / "sae" / "A", caches["A"]["test"], work / "eval", eval_cfg), device)
    report["evaluate"] = {"rows": sizes.eval_rows, "latents": sizes.d * sizes.expansion, "seconds": eval_s,
                          "rows_per_s": sizes.eval_rows / eval_s, "explained_variance": metrics["explained_variance"]}
    settings = CompareSettings(permutations=sizes.permutations, interval_splits=sizes.interval_splits,
                               knn_rows=sizes.compare_rows, rbf_rows=sizes.compare_rows)
    comparison, compare_s = timed(lambda: compare_saes(
        caches["A"]["test"], work / "sae" / "A", caches["B"]["test"], work / "sae" / "B", work / "compare",
        chunk_rows=sizes.chunk_rows, device=str(device), settings=settings), device)
    report["compare"] = {"images": sizes.eval_rows, "features": [sizes.d * sizes.expansion] * 2,
                         "permutations": sizes.permutations, "interval_splits": sizes.interval_splits,
                         "seconds": compare_s, "topk_overlap": comparison["topk_overlap"]["value"]}
    table, sweep_s = timed(lambda: compare_along_sweep(
        caches["A"]["test"], caches["B"]["test"], {"main": work / "sae" / "A"}, {"main": work / "sae" / "B"},
        k=9, chunk_rows=sizes.chunk_rows, device=str(device)), device)
    report["sweep"] = {"images": sizes.eval_rows, "pairs": 1, "seconds": sweep_s,
                       "debiased_cka_codes": float(table["debiased_cka_codes"].iloc[0])}
    report["seconds"]["total"] = time.perf_counter() - start
    report["goals"] = goals(report)
    return report


def goals(report: dict) -> dict:
    """Each goal's target, measured value and verdict, and the paper run's projected GPU hours
    (caching both towers over ImageNet at the measured end-to-end rates, plus 20 paper-SAE
    equivalents of training: per model the main SAE, 5 sweep SAEs and 2 seeds, and the replication
    at 4x the width, plus 3 evaluations, one comparison and the sweep table's 6 SAE pairs at the
    measured times)."""
    vit = next((c for c in report["cache"] if c["model"].startswith("ViT")), report["cache"][-1])
    projected_hours = (sum(c["paper_cache_hours"] for c in report["cache"])
                       + (20 * report["train"]["paper_sae_seconds"] + 3 * report["evaluate"]["seconds"]
                          + report["compare"]["seconds"] + 6 * report["sweep"]["seconds"]) / 3600)
    measured = {"vit_cache_fraction_of_bf16_peak": vit["fraction_of_bf16_peak"],
                "paper_sae_seconds": report["train"]["paper_sae_seconds"], "paper_gpu_hours": projected_hours}
    return {name: {"target": target, "value": measured[name],
                   "met": None if measured[name] is None else (measured[name] >= target if name.startswith("vit")
                                                               else measured[name] <= target)}
            for name, target in GOALS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the code paths only")
    parser.add_argument("--out", default="results/bench/gpu.json")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        sizes, device = CPU_SMOKE, torch.device("cpu")
    elif torch.cuda.is_available():
        sizes, device = GPU, torch.device("cuda")
    else:
        print("gpu_check: torch sees no CUDA GPU on this machine, and this check measures one. Run it on a GPU "
              "machine, or pass --cpu-smoke for a tiny CPU run of the same code paths (its numbers mean nothing).",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        report = run(sizes, device, Path(tmp))
    report["cpu_smoke"] = args.cpu_smoke
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for c in report["cache"]:
        of_peak = "no bf16 peak known" if c["fraction_of_bf16_peak"] is None else f"{c['fraction_of_bf16_peak']:.0%} of bf16 peak"
        print(f"cache {c['model']}: {c['model_images_per_s']:.0f} img/s tower alone "
              f"({of_peak}, {c['fraction_of_matmul_peak']:.0%} of matmul), "
              f"{c['cache_shard_images_per_s']:.0f} img/s cache_shard")
    print(f"train: {report['train']['samples_per_s']:.0f} samples/s; evaluate {report['evaluate']['seconds']:.1f} s; "
          f"compare {report['compare']['seconds']:.1f} s; sweep pair {report['sweep']['seconds']:.1f} s; total {report['seconds']['total']:.0f} s")
    for name, goal in report["goals"].items():
        print(f"goal {name}: {goal['value']} (target {goal['target']}) -> {goal['met']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
