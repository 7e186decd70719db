"""The sparsity/fidelity frontier of a sweep: L0 against explained variance per SAE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from saesuite.cache import ActivationCache
from saesuite.sae import load_sae


@torch.inference_mode()
def frontier_point(sae_dir: str | Path, cache: ActivationCache, chunk_rows: int = 8192, device: str = "cpu") -> dict:
    """``l0``, ``explained_variance`` and ``mse`` of one SAE over every row of ``cache`` (streamed)."""
    sae, _ = load_sae(sae_dir, device)
    n, active, sq_err = 0, 0.0, 0.0
    sum_x, sum_sq_x = np.zeros(cache.d), 0.0
    for _, x in cache.chunks(chunk_rows):
        xt = torch.from_numpy(x).to(device)
        f = sae.encode(xt)
        err = (xt - sae.decode(f)).double()
        n += len(x)
        active += float((f > 0).sum())
        sq_err += float(err.pow(2).sum())
        sum_x += x.sum(0, dtype=np.float64)
        sum_sq_x += float((x.astype(np.float64) ** 2).sum())
    total_var = sum_sq_x - float(sum_x @ sum_x) / n
    return {"l0": active / n, "explained_variance": 1 - sq_err / total_var, "mse": sq_err / (n * cache.d)}


def frontier_table(sae_dirs: dict[str, str | Path], cache_dir: str | Path, chunk_rows: int = 8192,
                   device: str = "cpu") -> pd.DataFrame:
    """One row per SAE of a sweep: its name, architecture, k, L1 coefficient, L0, explained variance, mse."""
    cache = ActivationCache.open(cache_dir)
    rows = []
    for name, path in sae_dirs.items():
        cfg = json.loads((Path(path) / "cfg.json").read_text())
        training = cfg["training"]
        rows.append({"name": name, "model": cfg["model"], "architecture": training["architecture"],
                     "k": training["k"], "l1_coefficient": training["l1_coefficient"],
                     **frontier_point(path, cache, chunk_rows, device)})
    return pd.DataFrame(rows)
