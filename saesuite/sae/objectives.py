"""The terms of an SAE's training loss: pure functions of tensors, and the terms as objects.

A term object (:class:`Reconstruction`, :class:`L1`, :class:`AuxK`, :class:`GhostGrads`) holds its
``loss`` (a scalar tensor) and says what it logs with ``metrics()`` (scalar tensors, read on the host
only when the log is written, so a GPU step never waits for them); the trainer sums the terms'
losses and logs what they report. A recipe (:mod:`saesuite.sae.recipes`) picks the
reconstruction by name and the dead-latent term by method; the SAE's variant says whether there
is an L1 term.

* Reconstruction, per element ``[B, d]`` (the trainer takes the mean):

  - ``mse``: ``(x_hat - x)^2``.
  - ``input_norm_mse`` (Fry 2024, ``sae_training/sparse_autoencoder.py``):
    ``(x_hat - x)^2 / ||x||_2``, each sample's squared error divided by its own uncentred L2
    norm (not squared). That recipe does not rescale its inputs, so its L1 coefficient's meaning
    depends on the activations' norm.

* Sparsity: ``l1 = mean_b sum_j f_j`` (with unit decoder rows this is ``sum_j f_j ||W_dec[j]||``).
* Dead latents:

  - ``auxk_loss`` (Gao et al. 2024): the ``k_aux`` dead latents with the largest
    pre-activations reconstruct the residual ``e = x - x_hat``; the error is normalised by the
    residual's centred variance, ``mse(e_hat, e) / mse(mean_b(e), e)``, as in openai's
    ``sparse_autoencoder`` (``normalized_mse``).
  - ``ghost_grads_loss`` (Jermyn & Templeton 2024, as Fry's code implements it): the dead
    latents' ``exp`` pre-activations decode a "ghost" output, rescaled to half the residual's
    norm, trained to match the residual under the same per-sample normalisation, and weighted
    per element so its value equals the reconstruction loss's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


def mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """``[B, d]`` squared error."""
    return (x_hat - x).pow(2)


def input_norm_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """``[B, d]`` squared error over each input's L2 norm (Fry 2024)."""
    return (x_hat - x).pow(2) / x.pow(2).sum(-1, keepdim=True).sqrt()


RECONSTRUCTIONS = {"mse": mse, "input_norm_mse": input_norm_mse}


def l1(f: Tensor) -> Tensor:
    """``mean_b sum_j |f_j|`` of a code ``[B, F]`` (or of TopK's values ``[B, k]``)."""
    return f.abs().sum(-1).mean()


def auxk_loss(estimate: Tensor, residual: Tensor) -> Tensor:
    """``mse(estimate, residual) / mse(mean_b(residual), residual)``: both ``[B, d]``."""
    variance = (residual - residual.mean(0)).pow(2).mean()
    return (estimate - residual).pow(2).mean() / variance.clamp_min(1e-12)


def ghost_grads_loss(pre_dead: Tensor, W_dec_dead: Tensor, residual: Tensor, recon: Tensor) -> Tensor:
    """Ghost grads: ``pre_dead [B, n_dead]`` the dead latents' pre-activations, ``W_dec_dead
    [n_dead, d]`` their decoder rows, ``residual [B, d]`` ``x - x_hat`` and ``recon [B, d]`` the
    per-element reconstruction loss. Only ``pre_dead`` and ``W_dec_dead`` get a gradient."""
    residual = residual.detach()
    ghost = torch.exp(pre_dead) @ W_dec_dead
    scale = residual.norm(dim=-1) / (1e-6 + 2 * ghost.norm(dim=-1))
    ghost = ghost * scale.detach()[:, None]
    ghost_recon = (ghost - residual).pow(2) / residual.pow(2).sum(-1, keepdim=True).sqrt()
    weight = (recon / (ghost_recon + 1e-6)).detach()
    return (weight * ghost_recon).mean()


class Term(Protocol):
    """One term of the training loss."""

    loss: Tensor  # scalar, with its gradient

    def metrics(self) -> dict[str, Tensor]:
        """What the training log records of this term (train_log.jsonl's keys), as scalar tensors."""
        ...


@dataclass(frozen=True)
class Reconstruction:
    """The mean of a per-element reconstruction error (:data:`RECONSTRUCTIONS`), logged as ``mse``."""

    per_element: Tensor  # [B, d]
    loss: Tensor

    @classmethod
    def of(cls, kind: str, x_hat: Tensor, x: Tensor) -> "Reconstruction":
        per_element = RECONSTRUCTIONS[kind](x_hat, x)
        return cls(per_element, per_element.mean())

    def metrics(self) -> dict[str, Tensor]:
        return {"mse": self.loss.detach()}


@dataclass(frozen=True)
class L1:
    """``coefficient * sparsity``, ``sparsity`` the code's :func:`l1`.

    It logs nothing of its own: the trainer logs the code's L1 norm and the scheduled coefficient
    for every SAE, whether its loss has this term or not."""

    loss: Tensor

    @classmethod
    def of(cls, sparsity: Tensor, coefficient: float) -> "L1":
        return cls(coefficient * sparsity)

    def metrics(self) -> dict[str, Tensor]:
        return {}


@dataclass(frozen=True)
class AuxK:
    """``coefficient * auxk_loss``: the dead latents' reconstruction of the residual, logged as ``auxk``."""

    loss: Tensor

    @classmethod
    def of(cls, estimate: Tensor, residual: Tensor, coefficient: float | Tensor) -> "AuxK":
        return cls(coefficient * auxk_loss(estimate, residual))

    def metrics(self) -> dict[str, Tensor]:
        return {"auxk": self.loss.detach()}


@dataclass(frozen=True)
class GhostGrads:
    """:func:`ghost_grads_loss`, logged as ``ghost``."""

    loss: Tensor

    @classmethod
    def of(cls, pre_dead: Tensor, W_dec_dead: Tensor, residual: Tensor, recon: Tensor) -> "GhostGrads":
        return cls(ghost_grads_loss(pre_dead, W_dec_dead, residual, recon))

    def metrics(self) -> dict[str, Tensor]:
        return {"ghost": self.loss.detach()}
