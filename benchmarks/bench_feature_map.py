"""Scale benchmark of the feature map: both models' 16,384 features over 50,000 images on one map.

Synthetic sparse codes stand in for two SAEs: each feature of A fires on a random set of
images (densities log-uniform between 10^-3.5 and 10^-2, so every feature is alive), and the
first ``shared`` features of B fire on 80% of their A partner's images plus as many of their own
(known pairs, so the map's quality is measured at scale too); B's other features are its own.
It runs :func:`saesuite.compare.feature_map.feature_map` itself (profiles, truncated SVD, UMAP,
top classes, pair quality) and reports wall and CPU seconds (the process's, all threads) and
peak memory. Writes ``results/bench/feature_map.json``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_feature_map.py [--features 16384 --images 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from saesuite.compare.feature_map import feature_map


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synthetic_codes(n: int, features: int, shared: int, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Codes ``[n, features]`` of A and B; B's feature j < shared follows A's feature j."""
    def columns(count):
        sizes = np.maximum(20, (n * 10 ** rng.uniform(-3.5, -2, count)).astype(int))
        return [rng.choice(n, size, replace=False) for size in sizes]

    cols_a = columns(features)
    cols_b = [np.union1d(rng.choice(c, int(0.8 * len(c)), replace=False), rng.choice(n, int(0.8 * len(c)), replace=False))
              for c in cols_a[:shared]] + columns(features - shared)

    def matrix(cols):
        rows = np.concatenate(cols)
        which = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
        return sp.csr_matrix((rng.uniform(0.1, 3, len(rows)), (rows, which)), shape=(n, len(cols)))

    return matrix(cols_a), matrix(cols_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16384)
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--shared", type=int, default=4096)
    parser.add_argument("--out", default="results/bench/feature_map.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a, b = synthetic_codes(args.images, args.features, args.shared, rng)
    labels = rng.integers(0, 1000, args.images)
    alive = {"a": np.ones(args.features, bool), "b": np.ones(args.features, bool)}
    t, c = time.perf_counter(), cpu_seconds()
    table, record = feature_map({"a": a, "b": b}, alive, {"a": "A", "b": "B"}, labels, [],
                                [(j, j) for j in range(args.shared)])
    result = {
        "features_per_model": args.features, "images": args.images, "known_pairs": args.shared,
        "nonzeros": int(a.nnz + b.nnz), "threads": os.environ.get("OMP_NUM_THREADS"),
        "wall_s": round(time.perf_counter() - t, 1), "cpu_s": round(cpu_seconds() - c, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load_average": os.getloadavg()[0], "quality": record["quality"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
