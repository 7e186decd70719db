"""Streaming accumulators of the evaluation: each sees every chunk ``(x, f, x_hat, labels)`` once.

Memory is bounded by the number of latents ``F`` (and classes ``C``), never by
``N x F``: per-latent sums ``[F]``, class sums ``[C, F]``, per-input scalars ``[N]``,
and a fixed-size top list. Everything is summed in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class ReconstructionStats:
    """Reconstruction and per-input sparsity sums (SAEBench core definitions, over the whole split)."""

    def __init__(self, n: int, d: int, near_zero: float):
        self.n, self.near_zero = 0, near_zero
        self.seen = np.zeros(n, bool)  # rows that were given (bad-image rows are not)
        self.sum_x = np.zeros(d, np.float64)
        self.sum_sq_x = self.sum_sq_err = 0.0
        self.sum_cos = self.sum_norm_in = self.sum_norm_out = self.sum_ratio = 0.0
        self.sum_xhat_sq = self.sum_x_dot_xhat = 0.0
        self.n_cos = self.n_ratio = 0  # rows where cos(x, x_hat) / ||x_hat|| / ||x|| are defined
        self.zero_input_rows = 0
        self.l0 = np.zeros(n, np.int64)  # per input
        self.l1 = np.zeros(n, np.float64)
        self.near_zero_fraction = np.zeros(n, np.float64)

    def update(self, rows: np.ndarray, x: Tensor, f: Tensor, x_hat: Tensor) -> None:
        """``x [b, d]``, ``f [b, F]``, ``x_hat [b, d]`` of the rows ``rows [b]`` (int indices)."""
        x64, xh64 = x.double(), x_hat.double()
        b = len(x)
        self.n += b
        self.sum_x += x64.sum(0).cpu().numpy()
        self.sum_sq_x += float(x64.pow(2).sum())
        self.sum_sq_err += float((x64 - xh64).pow(2).sum())
        norm_in, norm_out = x64.norm(dim=1), xh64.norm(dim=1)
        dot = (x64 * xh64).sum(1)
        has_in = norm_in > 0  # a zero row has no direction: cos and the norm ratio are undefined there
        has_both = has_in & (norm_out > 0)
        self.sum_cos += float(torch.where(has_both, dot / torch.where(has_both, norm_in * norm_out, 1.0), 0.0).sum())
        self.sum_ratio += float(torch.where(has_in, norm_out / torch.where(has_in, norm_in, 1.0), 0.0).sum())
        self.n_cos += int(has_both.sum())
        self.n_ratio += int(has_in.sum())
        self.zero_input_rows += int((~has_in).sum())
        self.sum_norm_in += float(norm_in.sum())
        self.sum_norm_out += float(norm_out.sum())
        self.sum_xhat_sq += float(norm_out.pow(2).sum())
        self.sum_x_dot_xhat += float(dot.sum())
        self.seen[rows] = True
        self.l0[rows] = (f > 0).sum(1).cpu().numpy()
        self.l1[rows] = f.double().abs().sum(1).cpu().numpy()
        self.near_zero_fraction[rows] = (f.abs() < self.near_zero).double().mean(1).cpu().numpy()

    @property
    def mean(self) -> np.ndarray:
        """``[d]`` mean input over the split (the mean-ablation value)."""
        return self.sum_x / self.n

    def result(self, d: int, n_latents: int) -> dict:
        """The split's scores. A score undefined on a row (cos and the norm ratio on a zero row)
        averages over the rows where it is defined (None if none); ``undefined_rows`` counts the
        rows each one left out. ``normalized_mse`` and ``explained_variance`` are None when the
        inputs do not vary (total squared deviation at float precision of zero)."""
        n = self.n
        total_sq_dev = self.sum_sq_x - n * float(self.mean @ self.mean)
        varies = total_sq_dev > 1e-12 * self.sum_sq_x
        return {
            "n": n,
            "mse": self.sum_sq_err / (n * d),
            "normalized_mse": self.sum_sq_err / total_sq_dev if varies else None,
            "explained_variance": 1.0 - self.sum_sq_err / total_sq_dev if varies else None,
            "cosine_similarity": self.sum_cos / self.n_cos if self.n_cos else None,
            "l2_norm_in": self.sum_norm_in / n,
            "l2_norm_out": self.sum_norm_out / n,
            "l2_ratio": self.sum_ratio / self.n_ratio if self.n_ratio else None,
            "undefined_rows": {"cosine_similarity": n - self.n_cos, "l2_ratio": n - self.n_ratio},
            "zero_input_rows": self.zero_input_rows,
            "rows_without_active_latent": int((self.l0[self.seen] == 0).sum()),
            "relative_reconstruction_bias": self.sum_xhat_sq / self.sum_x_dot_xhat if self.sum_x_dot_xhat else None,
            "l0": float(self.l0[self.seen].mean()),
            "l1": float(self.l1[self.seen].mean()),
            "population_sparsity": float((self.l0[self.seen] / n_latents).mean()),
            "fraction_near_zero": float(self.near_zero_fraction[self.seen].mean()),
        }


class LatentStats:
    """Per-latent firing counts, activation sums, and per class ``[C, F]`` the activation mass and firing count."""

    def __init__(self, n_latents: int, n_classes: int, device: str | torch.device = "cpu"):
        self.n = 0
        self.fire_count = torch.zeros(n_latents, dtype=torch.int64, device=device)
        self.act_sum = torch.zeros(n_latents, dtype=torch.float64, device=device)
        self.class_act = torch.zeros(n_classes, n_latents, dtype=torch.float64, device=device)
        # float32 counts: exact up to 2^24 firings per (class, latent), half the memory of float64
        self.class_fire = torch.zeros(n_classes, n_latents, dtype=torch.float32, device=device)

    def update(self, f: Tensor, labels: Tensor) -> None:
        """``f [b, F]``, ``labels [b]`` (int64 class indices)."""
        self.n += len(f)
        fires = f > 0
        self.fire_count += fires.sum(0)
        f64 = f.double()
        self.act_sum += f64.sum(0)
        labels = labels.to(f.device)
        self.class_act.index_add_(0, labels, f64.clamp_min(0))
        self.class_fire.index_add_(0, labels, fires.float())

    def numpy(self) -> dict[str, np.ndarray]:
        return {
            "fire_count": self.fire_count.cpu().numpy(),
            "total_activation": self.act_sum.cpu().numpy(),
            "class_activation": self.class_act.cpu().numpy(),
            "class_fire_count": self.class_fire.cpu().numpy().astype(np.float64),
        }


def label_entropy(class_mass: np.ndarray) -> np.ndarray:
    """``[C, F]`` mass per class -> ``[F]`` entropy (nats) of ``p_c = mass_c / sum_c mass_c``.

    With activation mass this is the activation-weighted label entropy (an input counts by
    how strongly the latent fires on it); with firing counts, the entropy of the classes of
    the inputs on which the latent fires, each input counting once. NaN for latents that
    never fire (no distribution).
    """
    total = class_mass.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = class_mass / total
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.where(total > 0, terms.sum(0), np.nan)


class TopActivatingImages:
    """The ``n_images`` inputs with the largest activation of any latent, and the latents firing most on each.

    Ties keep the lower row index (candidates are merged with a stable sort, chunks
    arrive in row order).
    """

    def __init__(self, n_images: int, n_latents_per_image: int):
        self.n_images, self.m = n_images, n_latents_per_image
        self.rows = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float64)
        self.latents = np.zeros((0, n_latents_per_image), np.int64)
        self.values = np.zeros((0, n_latents_per_image), np.float64)

    def update(self, start: int, f: Tensor) -> None:
        """``f [b, F]`` codes of rows ``start .. start + b``."""
        score = f.max(dim=1).values
        keep = torch.sort(-score, stable=True).indices[: self.n_images]
        values, latents = f[keep].topk(min(self.m, f.shape[1]), dim=1)
        rows = np.concatenate([self.rows, start + keep.cpu().numpy()])
        scores = np.concatenate([self.scores, score[keep].double().cpu().numpy()])
        order = np.argsort(-scores, kind="stable")[: self.n_images]
        self.rows, self.scores = rows[order], scores[order]
        self.latents = np.concatenate([self.latents, latents.cpu().numpy()])[order]
        self.values = np.concatenate([self.values, values.double().cpu().numpy()])[order]
