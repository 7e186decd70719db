"""Acting on dead latents: resampling (ReLU SAEs) and the AuxK loss (TopK SAEs).

A latent is dead once it has not fired for ``dead_window_samples`` training
samples (the trainer keeps one clock per latent).

* Resampling, after Anthropic's 2023 recipe: every ``resample_every_samples``
  (until ``resample_until_fraction`` of the run) each dead latent is re-initialised
  on an input drawn with probability proportional to its squared reconstruction
  loss, from a pool of ``resample_pool_samples`` cache rows: the decoder row
  becomes that input's unit direction (after subtracting ``b_dec``), the encoder
  column the same direction times 0.2 times the mean encoder norm of alive
  latents, the bias 0, and the Adam moments of those entries are reset.
* AuxK, after Gao et al. 2024: the ``auxk_k`` dead latents with the largest
  pre-activations reconstruct the main reconstruction's residual; the loss is
  that error's mean square over the residual's centred variance (as openai's
  ``sparse_autoencoder`` normalises it), weighted by ``auxk_coefficient`` (1/32).
  It gives dead latents a gradient again.
* Ghost grads (Fry 2024's recipe): see :func:`saesuite.sae.objectives.ghost_grads_loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from saesuite.sae import objectives
from saesuite.sae.model import SAE

if TYPE_CHECKING:
    from saesuite.sae.train import Trainer


def auxk_loss(sae: SAE, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Error of reconstructing ``residual [B, d]`` from the top ``k_aux`` dead latents of ``pre [B, F]``,
    over the residual's centred variance (:func:`saesuite.sae.objectives.auxk_loss`)."""
    k_aux = min(k_aux, int(dead.sum()))
    masked = pre.masked_fill(~dead, float("-inf"))
    values, indices = masked.topk(k_aux, dim=-1, sorted=False)
    return objectives.auxk_loss(sae.decode_sparse(torch.relu(values), indices).float(), residual)


@torch.no_grad()
def resample_dead(trainer: "Trainer", step: int, chunk_rows: int = 4096) -> int:
    """Re-initialise the trainer's dead latents (see the module docstring); return how many."""
    dead = trainer.dead_mask()
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    cfg, sae, cache = trainer.cfg, trainer.sae, trainer.cache
    rng = np.random.default_rng([cfg.seed, step, 2])
    valid = cache.valid_indices()
    pool = np.sort(rng.choice(valid, size=min(cfg.resample_pool_samples, len(valid)), replace=False))
    x = torch.from_numpy(cache.gather(pool)).to(trainer.device) * trainer.scale
    losses = torch.cat([(c - sae(c)[0]).pow(2).sum(1) for c in x.split(chunk_rows)]).double().cpu().numpy()
    weights = losses**2
    p = weights / weights.sum() if weights.sum() > 0 else None
    picked = rng.choice(len(x), size=n_dead, replace=n_dead > len(x), p=p)
    directions = x[torch.from_numpy(picked).to(x.device)] - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    idx = dead.nonzero().squeeze(1)
    sae.W_dec[idx] = directions
    sae.W_enc[:, idx] = directions.T * enc_norm * 0.2
    sae.b_enc[idx] = 0.0
    for param, where in ((sae.W_enc, (slice(None), idx)), (sae.W_dec, (idx,)), (sae.b_enc, (idx,))):
        state = trainer.optimizer.state.get(param)
        if state:
            state["exp_avg"][where] = 0.0
            state["exp_avg_sq"][where] = 0.0
    trainer.since_fired[idx] = 0
    return n_dead
