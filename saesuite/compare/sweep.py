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
import scipy.sparse as sp
import torch

from saesuite.cache.reader import ActivationCache
from saesuite.compare.cka import StreamingMoments, debiased_from_moments
from saesuite.compare.overlap import topk_overlap
from saesuite.compare.saes import check_aligned
from saesuite.device import resolve_device
from saesuite.evaluate.evaluation import check_sae_matches_cache
from saesuite.evaluate.topk import StreamingTopK
from saesuite.sae.model import load_sae

COLUMNS = ["name", "architecture", "l0_a", "l0_b", "l0_ratio", "topk_overlap", "topk_overlap_b_to_a",
           "debiased_cka_codes", "alive_a", "alive_b", "n_images"]
# On the CPU a chunk of codes with fewer non-zeros than this is multiplied sparsely, else as float32 GEMMs. Measured
# on 2 cores at F = 16,384, random supports over 2,048 rows (CPU s, sparse against dense): L0 64: 1.2 / 15.7,
# 128: 3.8 / 16.1, 256: 15.8 / 18.9, 512: 36.6 / 18.9; a whole sweep pair of the rehearsal's TopK SAEs at L0 256
# over 50,000 rows: 868 / 1,480 (`rehearsal_cost.py sparse`). On a GPU the chunks stay dense on the device.
SPARSE_BELOW = 1 / 48


def _chunk(f: torch.Tensor, nnz: torch.Tensor):
    """One chunk of codes (with ``nnz`` non-zeros) for :class:`StreamingMoments`: on the CPU, sparse when it fires
    sparsely; else the tensor itself (dense float32 GEMMs, on its device)."""
    if f.device.type == "cpu" and int(nnz) < SPARSE_BELOW * f.numel():
        return sp.csr_matrix(f.numpy())
    return f


class _PairCodes:
    """What the sweep keeps of two SAEs' codes as their row chunks go by: the non-zero counts, the top-k
    image sets and the three cross-products of the debiased CKA (memory set by F_A x F_B, not by rows)."""

    def __init__(self, fa: int, fb: int, k: int, device: str = "cpu"):
        self.rows = self.nnz_a = self.nnz_b = 0
        self.top_a, self.top_b = StreamingTopK(fa, k, device), StreamingTopK(fb, k, device)
        self.ab, self.aa, self.bb = (StreamingMoments(p, q, device) for p, q in ((fa, fb), (fa, fa), (fb, fb)))

    def add(self, fa: torch.Tensor, fb: torch.Tensor) -> None:
        self.top_a.update(self.rows, fa)
        self.top_b.update(self.rows, fb)
        na, nb = torch.count_nonzero(fa), torch.count_nonzero(fb)  # kept on the device: no wait per chunk
        xa, xb = _chunk(fa, na), _chunk(fb, nb)
        self.ab.add(xa, xb)
        self.aa.add(xa, xa)
        self.bb.add(xb, xb)
        self.rows += len(fa)
        self.nnz_a += na
        self.nnz_b += nb

    def scores(self) -> dict:
        return {"l0_a": int(self.nnz_a) / self.rows, "l0_b": int(self.nnz_b) / self.rows,
                "top_a": self.top_a.indices.numpy(), "top_b": self.top_b.indices.numpy(),
                "debiased_cka_codes": debiased_from_moments(self.ab.moments(), self.aa.moments(), self.bb.moments())}


def pair_scores(dir_a: Path, ca: ActivationCache, dir_b: Path, cb: ActivationCache, keep: np.ndarray, k: int,
                chunk_rows: int, device: str) -> dict:
    """L0s, top-k sets and the debiased CKA of two SAEs' codes over the kept rows, streamed in row chunks."""
    (sae_a, cfg_a), (sae_b, cfg_b) = load_sae(dir_a, device), load_sae(dir_b, device)
    check_sae_matches_cache(sae_a, cfg_a, dir_a, ca)
    check_sae_matches_cache(sae_b, cfg_b, dir_b, cb)
    acc = _PairCodes(sae_a.d_sae, sae_b.d_sae, k, device)
    # one inference-mode block around both caches' chunks (two interleaved encode_chunks generators
    # would leave grad mode off when the second one is collected)
    with torch.inference_mode():
        for (start, xa), (_, xb) in zip(ca.chunks(chunk_rows), cb.chunks(chunk_rows)):
            rows = keep[start : start + len(xa)]
            acc.add(sae_a.encode(torch.from_numpy(xa[rows]).to(device)).float(),
                    sae_b.encode(torch.from_numpy(xb[rows]).to(device)).float())
    return {**acc.scores(), "architecture": cfg_a["architecture"]}


def compare_along_sweep(cache_a: str | Path, cache_b: str | Path, saes_a: dict[str, Path], saes_b: dict[str, Path],
                        k: int, chunk_rows: int = 4096, device: str = "cpu") -> pd.DataFrame:
    """One row per name in both ``saes_a`` and ``saes_b`` (name -> SAE directory), in ``saes_a``'s order."""
    ca, cb, device = ActivationCache.open(cache_a), ActivationCache.open(cache_b), str(resolve_device(device))
    check_aligned(ca, cb)
    keep = ca.valid_mask() & cb.valid_mask()
    n = int(keep.sum())
    rows = []
    for name, dir_a in saes_a.items():
        if name not in saes_b:
            continue
        s = pair_scores(Path(dir_a), ca, Path(saes_b[name]), cb, keep, k, chunk_rows, device)
        best_ab, alive_a = topk_overlap(s["top_a"], s["top_b"], n, k)
        best_ba, alive_b = topk_overlap(s["top_b"], s["top_a"], n, k)
        rows.append({
            "name": name, "architecture": s["architecture"], "l0_a": s["l0_a"], "l0_b": s["l0_b"],
            "l0_ratio": s["l0_b"] / s["l0_a"] if s["l0_a"] else np.nan,
            "topk_overlap": float(best_ab.mean()) if len(best_ab) else np.nan,
            "topk_overlap_b_to_a": float(best_ba.mean()) if len(best_ba) else np.nan,
            "debiased_cka_codes": s["debiased_cka_codes"],
            "alive_a": int(alive_a.sum()), "alive_b": int(alive_b.sum()), "n_images": n,
        })
    return pd.DataFrame(rows, columns=COLUMNS)
