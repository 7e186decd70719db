"""The sparsity/fidelity frontier of a sweep: L0 against explained variance per SAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from saesuite.cache.reader import ActivationCache
from saesuite.device import resolve_device
from saesuite.evaluate.stats import ReconstructionStats
from saesuite.evaluate.evaluation import encode_chunks
from saesuite.sae.model import load_sae, read_cfg


def frontier_point(sae_dir: str | Path, cache: ActivationCache, chunk_rows: int = 8192, device: str = "cpu") -> dict:
    """``l0``, ``explained_variance`` and ``mse`` of one SAE over the cache's usable rows (streamed).

    The same accumulator as the evaluation (:class:`saesuite.evaluate.stats.ReconstructionStats`).
    """
    sae, _ = load_sae(sae_dir, device)
    valid = cache.valid_mask()
    stats = ReconstructionStats(cache.n, cache.d, near_zero=0.0)
    for start, x, f, x_hat in encode_chunks(sae, cache, chunk_rows, device):
        ok = valid[start : start + len(x)]
        keep = torch.from_numpy(ok).to(x.device)
        stats.update(np.arange(start, start + len(x))[ok], x[keep], f[keep], x_hat[keep])
    result = stats.result(cache.d, sae.d_sae)
    return {key: result[key] for key in ("l0", "explained_variance", "mse")}


def frontier_table(sae_dirs: dict[str, str | Path], cache_dir: str | Path, chunk_rows: int = 8192,
                   device: str = "cpu") -> pd.DataFrame:
    """One row per SAE of a sweep: its name, architecture, k, L1 coefficient, L0, explained variance, mse.

    The L1 coefficient is empty (NA) for TopK SAEs, whose loss has no L1 term; k is empty for ReLU SAEs.
    """
    cache, device = ActivationCache.open(cache_dir), str(resolve_device(device))
    rows = []
    for name, path in sae_dirs.items():
        cfg, variant = read_cfg(path)
        rows.append({"name": name, "model": cfg["model"], "architecture": variant.name, "k": cfg["k"],
                     "l1_coefficient": cfg["training"]["l1_coefficient"] if variant.l1_penalty else None,
                     **frontier_point(path, cache, chunk_rows, device)})
    return pd.DataFrame(rows).astype({"k": "Int64"})  # an integer column with NA, written 32 and empty
