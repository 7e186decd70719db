"""Evaluating an SAE on an activation cache, streaming over the rows.

With ``f = encode(x)`` and ``x_hat = decode(f)`` over every row of the cache:

* ``mse`` -- mean over rows and dimensions of ``(x - x_hat)^2``
* ``explained_variance`` -- ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``
* ``l0`` -- mean number of latents with ``f > 0`` per row
* ``population_sparsity`` -- mean over rows of the fraction of latents with ``f > 0``
* ``mean_lifetime_sparsity`` -- mean over latents of the fraction of rows where it
  fires (computed from per-latent counts: an independent path to the same number)
* ``dead_fraction`` -- fraction of latents whose total activation over the split
  is at most ``dead_threshold`` (0: never fire)
* ``fraction_near_zero`` -- mean over rows of the fraction of latents with
  ``|f| < near_zero_threshold``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saesuite.cache import ActivationCache, write_json_atomic
from saesuite.errors import ConfigError
from saesuite.sae import SAE, load_sae
from saesuite.schema import validate


@dataclass(frozen=True)
class EvalConfig:
    near_zero_threshold: float = 1e-6
    dead_threshold: float = 0.0
    chunk_rows: int = 4096
    device: str = "cpu"


class RunningStats:
    """Streaming sums for the metrics above; ``update`` per chunk, ``result`` at the end."""

    def __init__(self, d: int, n_latents: int, near_zero: float):
        self.n = 0
        self.near_zero = near_zero
        self.sum_x = np.zeros(d, np.float64)
        self.sum_sq_x = 0.0
        self.sum_sq_err = 0.0
        self.active_per_row = 0.0
        self.near_zero_per_row = 0.0
        self.fire_count = np.zeros(n_latents, np.int64)
        self.act_sum = np.zeros(n_latents, np.float64)

    def update(self, x: torch.Tensor, f: torch.Tensor, x_hat: torch.Tensor) -> None:
        """``x [b, d]``, ``f [b, F]``, ``x_hat [b, d]``."""
        x64 = x.double()
        self.n += len(x)
        self.sum_x += x64.sum(0).cpu().numpy()
        self.sum_sq_x += float(x64.pow(2).sum())
        self.sum_sq_err += float((x64 - x_hat.double()).pow(2).sum())
        active = f > 0
        self.active_per_row += float(active.sum())
        self.near_zero_per_row += float((f.abs() < self.near_zero).sum())
        self.fire_count += active.sum(0).cpu().numpy()
        self.act_sum += f.double().sum(0).cpu().numpy()

    def result(self, d: int, dead_threshold: float) -> dict:
        n, n_latents = self.n, len(self.fire_count)
        mean = self.sum_x / n
        total_var = self.sum_sq_x - n * float(mean @ mean)
        lifetime = self.fire_count / n
        return {
            "n": n,
            "mse": self.sum_sq_err / (n * d),
            "explained_variance": 1.0 - self.sum_sq_err / total_var,
            "l0": self.active_per_row / n,
            "population_sparsity": self.active_per_row / (n * n_latents),
            "mean_lifetime_sparsity": float(lifetime.mean()),
            "dead_fraction": float((self.act_sum <= dead_threshold).mean()),
            "fraction_near_zero": self.near_zero_per_row / (n * n_latents),
        }


def encode_chunks(sae: SAE, cache: ActivationCache, chunk_rows: int, device: str):
    """Yield ``(start, x, f, x_hat)`` tensors per chunk of the cache, in row order."""
    with torch.inference_mode():
        for start, x in cache.chunks(chunk_rows):
            xt = torch.from_numpy(x).to(device)
            f = sae.encode(xt)
            yield start, xt, f, sae.decode(f)


def evaluate_sae(sae_dir: str | Path, cache_dir: str | Path, out_dir: str | Path, cfg: EvalConfig = EvalConfig()) -> dict:
    """Write ``metrics.json`` (schema-checked) and ``latents.npz`` for the SAE on the cache."""
    sae, sae_cfg = load_sae(sae_dir, cfg.device)
    cache = ActivationCache.open(cache_dir)
    if cache.d != sae.d_in:
        raise ConfigError(f"SAE {sae_dir} takes d={sae.d_in} inputs but cache {cache_dir} has d={cache.d}")
    if cache.manifest["hook"] != sae_cfg["hook"] or cache.manifest["model"] != sae_cfg["model"]:
        raise ConfigError(
            f"SAE {sae_dir} was trained on {sae_cfg['model']} {sae_cfg['hook']} but cache {cache_dir} holds "
            f"{cache.manifest['model']} {cache.manifest['hook']}"
        )
    stats = RunningStats(cache.d, sae.d_sae, cfg.near_zero_threshold)
    for _, x, f, x_hat in encode_chunks(sae, cache, cfg.chunk_rows, cfg.device):
        stats.update(x, f, x_hat)
    metrics = {
        **stats.result(cache.d, cfg.dead_threshold),
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "architecture": sae.architecture,
        "model": sae_cfg["model"],
        "hook": sae_cfg["hook"],
        "dataset": cache.manifest["dataset"],
        "split": cache.manifest["split"],
        "near_zero_threshold": cfg.near_zero_threshold,
        "dead_threshold": cfg.dead_threshold,
    }
    validate(metrics, "metrics")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        out_dir / "latents.npz",
        lifetime_sparsity=stats.fire_count / stats.n,
        mean_activation=stats.act_sum / stats.n,
        fire_count=stats.fire_count,
    )
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
