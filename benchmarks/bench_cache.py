"""Images/s of activation caching against a naive loop, measured in the same run (issue 4).

    .venv/bin/python benchmarks/bench_cache.py                       # CPU: tiny-RN and tiny-ViT on the CIFAR fixture
    python benchmarks/bench_cache.py --paper --device cuda           # GPU: RN50 and ViT-L-14 at 224 px on JPEGs

Writes results/bench/cache.json (see saesuite/cache/bench.py for what each figure means).
"""
import argparse
import json
from pathlib import Path

import torch

from saesuite.cache.bench import run_benchmark

TINY = [("tiny-RN", "attnpool"), ("tiny-ViT", "resid_cls:-2")]
PAPER = [("RN50", "attnpool"), ("ViT-L-14", "resid_cls:22")]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--paper", action="store_true", help="RN50 and ViT-L-14 (random weights) instead of the tiny models")
parser.add_argument("--images", choices=["cifar10", "jpeg"], default=None, help="default: cifar10 (tiny), jpeg (--paper)")
parser.add_argument("--n", type=int, default=None, help="images (default 1000 tiny, 4096 paper)")
parser.add_argument("--batch-size", type=int, default=None, help="default 100 tiny, 256 paper")
parser.add_argument("--num-workers", type=int, default=None, help="cache-path DataLoader workers (default 0 on cpu, 12 on cuda)")
parser.add_argument("--device", default="cpu")
parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
parser.add_argument("--out", default="results/bench/cache.json")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
models = PAPER if args.paper else TINY
results = run_benchmark(
    models, args.images or ("jpeg" if args.paper else "cifar10"), args.n or (4096 if args.paper else 1000),
    dict(batch_size=args.batch_size or (256 if args.paper else 100),
         num_workers=args.num_workers if args.num_workers is not None else (12 if args.device.startswith("cuda") else 0),
         device=args.device, precision=args.precision, repeats=args.repeats),
)
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
for r in results:
    c, n = r["cache"], r["naive"]
    print(f"{r['model']:>9} {r['hook']:<13} cache {c['images_per_s']:8.1f} img/s  naive {n['images_per_s']:8.1f} img/s  "
          f"x{r['speedup_vs_naive']:.2f} | cache loader {c['loader_images_per_s']:.0f} img/s, model {c['model_images_per_s']:.0f} img/s "
          f"({c['gflop_per_image']} GFLOP/img, {c['achieved_tflop_per_s']} TFLOP/s) -> {c['bottleneck']} bound")
print(f"wrote {args.out}")
