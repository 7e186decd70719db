"""Streaming per-latent top-k over the rows of a split."""

from __future__ import annotations

import numpy as np
import torch


class StreamingTopK:
    """Per-latent top-k rows over a stream of code chunks ``f [b, F]`` given in row order.

    Keeps ``values [F, k]`` and ``indices [F, k]`` (``-1`` and ``0`` where a latent
    has fired on fewer than ``k`` rows). Only positive activations count. Ties go to
    the lower row index: candidates are kept sorted by ``(-value, index)`` and each
    new chunk (higher indices, in index order) is merged with a stable sort. The merge runs
    on ``device`` (the codes' device: on a GPU it does not wait on the host); ``values`` and
    ``indices`` are read back on the CPU.
    """

    def __init__(self, n_latents: int, k: int, device: str | torch.device = "cpu"):
        self.k = k
        self._values = torch.zeros(n_latents, k, dtype=torch.float32, device=device)
        self._indices = torch.full((n_latents, k), -1, dtype=torch.long, device=device)

    @property
    def values(self) -> torch.Tensor:
        return self._values.cpu()

    @property
    def indices(self) -> torch.Tensor:
        return self._indices.cpu()

    def update(self, start: int, f: torch.Tensor) -> None:
        f = f.detach().to(self._values.device, torch.float32).T  # [F, b]
        rows = torch.arange(start, start + f.shape[1], device=f.device).expand_as(f)
        values = torch.cat([self._values, f.clamp_min(0)], dim=1)
        indices = torch.cat([self._indices, torch.where(f > 0, rows, torch.full_like(rows, -1))], dim=1)
        order = torch.sort(-values, dim=1, stable=True).indices[:, : self.k]
        self._values = values.gather(1, order)
        self._indices = indices.gather(1, order)

    def alive(self) -> np.ndarray:
        """Boolean ``[F]``: latents with a full top-k of positive activations."""
        return (self.indices >= 0).all(dim=1).numpy()
