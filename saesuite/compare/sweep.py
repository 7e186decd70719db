"""The comparison along the sweep: how the cross-model scores move with sparsity.

Top-k overlap and the debiased CKA of the codes depend on how dense the codes are, so a
comparison between SAEs of different L0 measures their L1 coefficients as much as the two
architectures. For every SAE name both models trained (``main`` and each ``train.sweep`` entry,
which share their settings across models), this table gives both SAEs' L0 on the shared images,
their ratio, the best top-k overlap both ways (as in comparison.json) and the debiased CKA of
the codes. The headline comparison (comparison.json) pairs the main SAEs, which the configs give
matched sparsity (TopK with one k for both models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from saesuite.cache.reader import ActivationCache
from saesuite.compare.cka import debiased_cka
from saesuite.compare.saes import check_aligned, encode_sparse
from saesuite.compare.overlap import sparse_topk, topk_overlap
from saesuite.sae.model import read_cfg

COLUMNS = ["name", "architecture", "l0_a", "l0_b", "l0_ratio", "topk_overlap", "topk_overlap_b_to_a",
           "debiased_cka_codes", "alive_a", "alive_b", "n_images"]


def compare_along_sweep(cache_a: str | Path, cache_b: str | Path, saes_a: dict[str, Path], saes_b: dict[str, Path],
                        k: int, chunk_rows: int = 4096, device: str = "cpu") -> pd.DataFrame:
    """One row per name in both ``saes_a`` and ``saes_b`` (name -> SAE directory), in ``saes_a``'s order."""
    ca, cb = ActivationCache.open(cache_a), ActivationCache.open(cache_b)
    check_aligned(ca, cb)
    keep = ca.valid_mask() & cb.valid_mask()
    n = int(keep.sum())
    rows = []
    for name, dir_a in saes_a.items():
        if name not in saes_b:
            continue
        codes_a = encode_sparse(dir_a, ca, chunk_rows, device)[keep]
        codes_b = encode_sparse(saes_b[name], cb, chunk_rows, device)[keep]
        top_a, top_b = sparse_topk(codes_a, k), sparse_topk(codes_b, k)
        best_ab, alive_a = topk_overlap(top_a, top_b, n, k)
        best_ba, alive_b = topk_overlap(top_b, top_a, n, k)
        l0_a, l0_b = codes_a.getnnz() / n, codes_b.getnnz() / n
        architecture = read_cfg(dir_a)[0]["architecture"]
        rows.append({
            "name": name, "architecture": architecture, "l0_a": l0_a, "l0_b": l0_b,
            "l0_ratio": l0_b / l0_a if l0_a else np.nan,
            "topk_overlap": float(best_ab.mean()) if len(best_ab) else np.nan,
            "topk_overlap_b_to_a": float(best_ba.mean()) if len(best_ba) else np.nan,
            "debiased_cka_codes": debiased_cka(codes_a, codes_b),
            "alive_a": int(alive_a.sum()), "alive_b": int(alive_b.sum()), "n_images": n,
        })
    return pd.DataFrame(rows, columns=COLUMNS)
