"""Dead latents: the trainer's :class:`DeadLatents` keeps their clocks and acts on them.

A latent is dead once it has not fired for ``dead_window_samples`` training
samples (one clock per latent). What is done about them is ``dead_latent_method``
(``auto``: the variant's default, resampling for ReLU and AuxK for TopK):

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
* ``none``: nothing (the clocks still count them for the log).

The clocks live on the training device and a step reads nothing of them on the host (a GPU step
never waits): the host keeps only a lower bound on the samples before any latent can be dead,
refreshed whenever it reads the clocks anyway (:meth:`DeadLatents.look`), and skips the dead-latent
term while no latent can be dead. AuxK is then computed with a fixed number of candidates and
weighted by whether any latent is dead, so its value is that of the dead latents alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from saesuite.sae.encoder import Encoding
from saesuite.sae.model import SAE
from saesuite.sae.objectives import AuxK, GhostGrads, Term
from saesuite.sae.variants import decode_sparse

if TYPE_CHECKING:
    from saesuite.cache.reader import ActivationCache
    from saesuite.sae.config import TrainConfig


class DeadLatents:
    """The dead-latent clocks of one SAE being trained, and its dead-latent method.

    Resampling draws its inputs from ``cache`` (multiplied by ``scale``, the training inputs' scale).
    """

    def __init__(self, cfg: "TrainConfig", d_sae: int, device: torch.device,
                 cache: "ActivationCache | None" = None, scale: float = 1.0):
        self.cfg, self.method, self.device = cfg, cfg.dead_method, device
        self.cache, self.scale = cache, scale
        self.since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)  # samples since each latent fired
        self.resampled = 0
        self.samples_before_any_dead = cfg.dead_window_samples  # host: no latent is dead before this many more

    def state(self) -> dict:
        return {"since_fired": self.since_fired, "resampled": self.resampled}

    def load_state(self, state: dict) -> None:
        self.since_fired, self.resampled = state["since_fired"].to(self.device), state["resampled"]
        self.look()

    def look(self) -> None:
        """Read the clocks on the host (a sync on a GPU: only where the trainer reads the device anyway) to
        refresh :attr:`samples_before_any_dead`: the dead window less the longest silence now."""
        self.samples_before_any_dead = self.cfg.dead_window_samples - int(self.since_fired.max())

    def mask(self) -> Tensor:
        """``[F]`` bool: the latents silent for ``dead_window_samples``."""
        return self.since_fired >= self.cfg.dead_window_samples

    def terms(self, sae: SAE, enc: Encoding, x: Tensor, x_hat: Tensor, recon: Tensor) -> list[Term]:
        """The dead-latent loss term (AuxK or ghost grads) of a batch, if the method has one and a latent is
        dead: ``enc`` the batch's pre-activations, ``x``, ``x_hat [B, d]`` the batch and its reconstruction,
        ``recon [B, d]`` the per-element reconstruction loss.

        AuxK takes the ``auxk_k`` largest pre-activations among the dead latents (fewer if fewer are dead:
        the other candidates count zero) and is weighted by whether any latent is dead, all on the device.
        Ghost grads acts on the dead latents' columns, so it reads how many are dead on the host."""
        if self.method not in ("auxk", "ghost_grads") or self.samples_before_any_dead > 0:
            return []  # no latent can be dead yet
        dead = self.mask()
        if self.method == "auxk":
            k_aux = min(self.cfg.auxk_k or x.shape[1] // 2, len(dead))
            _, indices = enc.pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            values = torch.relu(enc.at(indices)) * dead[indices]
            estimate = decode_sparse(values, indices, sae.W_dec).float()
            return [AuxK.of(estimate, x - x_hat.detach().float(), self.cfg.auxk_coefficient * dead.any())]
        if bool(dead.any()):
            return [GhostGrads.of(enc.dense()[:, dead].float(), sae.W_dec[dead], x - x_hat.float(), recon)]
        return []

    @torch.no_grad()
    def after_step(self, step: int, n: int, fired: Tensor, sae: SAE, optimizer: torch.optim.Optimizer) -> None:
        """Advance the clocks by the ``n`` samples of ``step`` (zero for the latents that ``fired``), then
        resample if one is due (:meth:`resample_due`)."""
        self.since_fired.add_(n).masked_fill_(fired, 0)
        self.samples_before_any_dead -= n
        if self.resample_due(step):
            self.resampled += self.resample(step, sae, optimizer)
            self.look()

    def metrics(self) -> dict[str, Tensor | int]:
        """What the training log records: the dead latents now (a tensor on the device), and how many were
        resampled in all."""
        return {"dead": self.mask().sum(), "resampled": self.resampled}

    def resample_due(self, step: int) -> bool:
        """Whether the method is resampling and step ``step`` ends with one."""
        every = max(1, self.cfg.resample_every_samples // self.cfg.batch_size)
        return (self.method == "resample" and (step + 1) % every == 0
                and step < self.cfg.resample_until_fraction * self.cfg.steps)

    @torch.no_grad()
    def resample(self, step: int, sae: SAE, optimizer: torch.optim.Optimizer, chunk_rows: int = 4096) -> int:
        """Re-initialise the dead latents of ``sae`` and their Adam moments (the module docstring); return how many."""
        dead = self.mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        cfg, cache = self.cfg, self.cache
        rng = np.random.default_rng([cfg.seed, step, 2])
        valid = cache.valid_indices()
        pool = np.sort(rng.choice(valid, size=min(cfg.resample_pool_samples, len(valid)), replace=False))
        x = torch.from_numpy(cache.gather(pool)).to(self.device) * self.scale
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
            state = optimizer.state.get(param)
            if state:
                state["exp_avg"][where] = 0.0
                state["exp_avg_sq"][where] = 0.0
        self.since_fired[idx] = 0
        return n_dead
