"""Training an SAE from an activation cache: the seed's recipe (MSE + L1, Adam).

The loop, in one screen (:func:`train_sae`):

1. Inputs are scaled by one constant so their mean L2 norm is ``sqrt(d)`` (each
   dimension then has mean square about 1, whatever the model's units), the
   scale is stored in ``cfg.json`` and folded back into the saved weights.
2. ``b_dec`` starts at the mean of a sample of inputs; ``W_dec`` rows are random
   unit vectors and ``W_enc`` starts as ``W_dec.T``.
3. Each step draws ``batch_size`` rows uniformly without replacement from the
   whole cache (a fresh permutation every pass, across all shards, read through
   memory maps), so ``samples`` is independent of the cache size.
4. ``loss = mse + l1_coefficient * l1`` with ``mse`` the mean over batch and
   dimensions of ``(x_hat - x)^2`` and ``l1`` the batch mean of
   ``sum_i f_i * ||W_dec[i]||``. Decoder rows are kept at unit norm after every
   step (and the gradient component along them removed), so the L1 term cannot
   be cheated by shrinking ``f`` and growing ``W_dec``.
5. Adam, learning rate with linear warm-up and linear decay over the last 20% of
   steps, L1 coefficient with linear warm-up, gradient-norm clipping.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saesuite.cache import ActivationCache, resolve_device
from saesuite.errors import ConfigError, TrainingError
from saesuite.sae import SAE, save_sae


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; defaults are the paper's (the seed's recipe)."""

    architecture: str = "relu"
    expansion: int = 16
    k: int | None = None
    l1_coefficient: float = 8e-5
    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 1024
    samples: int = 2_621_440
    seed: int = 0
    device: str = "cpu"
    normalize_activations: bool = True
    lr_warmup_samples: int = 65_536
    lr_decay_fraction: float = 0.2
    l1_warmup_samples: int = 131_072
    grad_clip_norm: float = 1.0
    b_dec_init_samples: int = 65_536
    dead_window_samples: int = 262_144
    log_every: int = 10

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)

    @property
    def steps(self) -> int:
        return math.ceil(self.samples / self.batch_size)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, flat, linear decay to 0 over the last fraction."""
    warm = max(1, cfg.lr_warmup_samples // cfg.batch_size)
    total = cfg.steps
    decay_start = int(total * (1 - cfg.lr_decay_fraction))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if step >= decay_start and total > decay_start:
        return cfg.lr * (total - step) / (total - decay_start)
    return cfg.lr


def l1_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, cfg.l1_warmup_samples // cfg.batch_size)
    return cfg.l1_coefficient * min(1.0, (step + 1) / warm)


def input_scale(cache: ActivationCache, rng: np.random.Generator, samples: int) -> tuple[float, np.ndarray]:
    """``(scale, mean)``: the factor giving mean norm ``sqrt(d)``, and the mean raw row, from a sample."""
    idx = np.sort(rng.choice(cache.n, size=min(samples, cache.n), replace=False))
    x = cache.gather(idx).astype(np.float64)
    mean_norm = np.linalg.norm(x, axis=1).mean()
    if not np.isfinite(mean_norm) or mean_norm == 0:
        raise TrainingError(f"cache {cache.path} has mean row norm {mean_norm}; it cannot be trained on")
    return float(math.sqrt(cache.d) / mean_norm), x.mean(axis=0)


def init_sae(d: int, cfg: TrainConfig, b_dec: np.ndarray, generator: torch.Generator) -> SAE:
    sae = SAE(d, cfg.expansion * d, cfg.architecture, cfg.k)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(sae.d_sae, d, generator=generator))
        sae.normalize_decoder()
        # W_enc = c * W_dec.T with c = 2d/F: for random unit rows, E[sum_i relu(w_i.v) w_i] = F/(2d) v,
        # so the initial reconstruction of a centred input has about the input's own scale.
        sae.W_enc.copy_(sae.W_dec.T * (2 * d / sae.d_sae))
        sae.b_dec.copy_(torch.as_tensor(b_dec, dtype=torch.float32))
    return sae


def batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    """Yield ``steps`` index arrays ``[batch_size]``: consecutive slices of fresh permutations of ``range(n)``."""
    perm, at = rng.permutation(n), 0
    for _ in range(steps):
        if at + batch_size > n:
            rest = perm[at:]
            perm, at = rng.permutation(n), batch_size - len(rest)
            yield np.concatenate([rest, perm[:at]])
        else:
            yield perm[at : at + batch_size]
            at += batch_size


def train_sae(cache_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, extra_cfg: dict | None = None) -> dict:
    """Train an SAE on the cache at ``cache_dir`` and save it to ``out_dir``; return its ``cfg.json``."""
    cache = ActivationCache.open(cache_dir)
    device = resolve_device(cfg.device)
    if cfg.batch_size > cache.n:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the cache ({cache.n} rows)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    scale, mean = input_scale(cache, rng, cfg.b_dec_init_samples)
    if not cfg.normalize_activations:
        scale = 1.0
    sae = init_sae(cache.d, cfg, mean * scale, generator).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)  # samples since each latent fired
    with open(log_path, "w") as log, tqdm(total=cfg.steps * cfg.batch_size, unit="sample", unit_scale=True, desc="train SAE") as bar:
        for step, idx in enumerate(batches(cache.n, cfg.batch_size, cfg.steps, rng)):
            x = torch.from_numpy(cache.gather(idx)).to(device) * scale
            lr, l1_coef = lr_at(step, cfg), l1_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x_hat, f = sae(x)
            mse = (x_hat - x).pow(2).mean()
            l1 = (f * sae.W_dec.norm(dim=1)).sum(dim=1).mean()
            loss = mse + l1_coef * l1
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {step} (mse={mse.item()}, l1={l1.item()}); "
                    "lower the learning rate or check the cache for extreme values"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_grad()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip_norm)
            optimizer.step()
            sae.normalize_decoder()
            with torch.no_grad():
                fired = (f > 0).any(dim=0)
                since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(idx))
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                with torch.no_grad():
                    resid = (x - x_hat).pow(2).sum()
                    total = (x - x.mean(dim=0)).pow(2).sum()
                    record = {
                        "step": step,
                        "samples": (step + 1) * cfg.batch_size,
                        "loss": loss.item(),
                        "mse": mse.item(),
                        "l1": l1.item(),
                        "l0": (f > 0).float().sum(dim=1).mean().item(),
                        "explained_variance": (1 - resid / total).item(),
                        "dead": int((since_fired >= cfg.dead_window_samples).sum().item()),
                        "lr": lr,
                        "l1_coefficient": l1_coef,
                    }
                log.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.4g}", l0=f"{record['l0']:.1f}")
            bar.update(len(idx))
    manifest = cache.manifest
    sae_cfg = {
        **asdict(cfg),
        "adam_betas": list(cfg.adam_betas),
        "d_in": cache.d,
        "d_sae": sae.d_sae,
        "architecture": cfg.architecture,
        "k": cfg.k,
        "normalisation_scale": scale,
        "hook": manifest["hook"],
        "model": manifest["model"],
        "pretrained": manifest["pretrained"],
        "dataset": manifest["dataset"],
        "split": manifest["split"],
        "cache_rows": cache.n,
        "steps": cfg.steps,
        **(extra_cfg or {}),
    }
    save_sae(sae.cpu(), out_dir, sae_cfg, scale=scale)
    return sae_cfg
