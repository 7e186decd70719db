"""SAE variants: what differs between a ReLU SAE, a TopK SAE and any other activation, as types.

Every variant shares the linear encoder and decoder of :class:`saesuite.sae.model.SAE`
(``pre = (x - b_dec) @ W_enc + b_enc``, ``x_hat = f @ W_dec + b_dec``); a variant is the
activation that turns ``pre [B, F]`` into the code ``f``, and what follows from it:

* :meth:`Variant.activation`: the dense code ``f [B, F]`` (evaluation, resampling, saved SAEs);
* :meth:`Variant.training_code`: the training step's reconstruction, decoded sparsely where the
  variant can, the code its L1 norm and L0 are measured on, and which latents fired. It reads the
  pre-activations from an :class:`~saesuite.sae.encoder.Encoding`: ``enc.dense()`` for a code with a
  gradient at every entry, or ``enc.pre`` to choose entries and ``enc.at(indices)`` for a code that
  uses only those (whose encoder backward is then sparse);
* :attr:`Variant.l1_penalty`: whether the loss has an L1 term (TopK's sparsity is its k);
* :attr:`Variant.default_dead_method`: what ``dead_latent_method: auto`` does;
* :meth:`Variant.encoder_scale`: ``c`` of the initial ``W_enc = c * W_dec.T``;
* :attr:`Variant.saelens_name` and :meth:`Variant.cfg_fields`: how ``cfg.json`` names it
  (SAELens's names, so ``sae_lens.SAE.load_from_disk`` opens the folder), read back by
  :func:`variant_of_cfg`.

A config names its variant with ``architecture`` (and TopK's ``k``); :func:`variant_of` is the
one place that turns those into a variant. Adding a variant takes its frozen dataclass here
(a subclass of :class:`Variant`, which registers its name in :data:`ARCHITECTURES`), one
``case`` in :func:`variant_of`, and its name in ``config/config.schema.yaml``'s ``architecture``
enum; the model, trainer, loss terms, ``cfg.json`` and CLI follow from the class.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from saesuite.errors import ConfigError
from saesuite.sae.encoder import Encoding


class Code(NamedTuple):
    """One training forward pass, from the pre-activations of a batch."""

    x_hat: Tensor  # [B, d] the reconstruction, b_dec included
    code: Tensor  # the code the step measures (L1 norm, L0): f [B, F], or a sparse code's values [B, k]
    fired: Tensor  # [F] bool: the latents that fired on this batch (computed on the device, no host sync)


def decode_sparse(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """``sum_j values[:, j] * W_dec[indices[:, j]]``: a sparse code ``[B, k]`` decoded to ``[B, d]``
    without the dense code (no ``b_dec``)."""
    return torch.nn.functional.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def fired_in(indices: Tensor, values: Tensor, n: int) -> Tensor:
    """``[n]`` bool: the latents with a positive value somewhere in a sparse code ``(values, indices [B, k])``
    (a count per latent, so no boolean indexing and no host sync on a GPU)."""
    counts = torch.zeros(n, device=values.device)
    return counts.scatter_add_(0, indices.reshape(-1), (values.detach() > 0).reshape(-1).float()) > 0


@dataclass(frozen=True)
class Variant:
    """The activation of an SAE and what follows from it (the module docstring); subclass it."""

    name: ClassVar[str]  # the config's and CLI's name (``architecture``)
    saelens_name: ClassVar[str]  # cfg.json's ``architecture``
    l1_penalty: ClassVar[bool]  # the loss has an L1 term on the code
    default_dead_method: ClassVar[str]  # dead_latent_method "auto" means this one

    def activation(self, pre: Tensor) -> Tensor:
        """``[B, F] -> [B, F]`` the dense code."""
        raise NotImplementedError

    def training_code(self, enc: Encoding, W_dec: Tensor, b_dec: Tensor) -> Code:
        """The training step's forward pass from a batch's pre-activations and the decoder (see :class:`Code`)."""
        raise NotImplementedError

    def encoder_scale(self, d: int, d_sae: int) -> float:
        """``c`` of the initial ``W_enc = c * W_dec.T`` (random unit decoder rows)."""
        raise NotImplementedError

    def active(self) -> int | None:
        """The most latents a row's code uses (TopK's ``k``), or None if any number may fire: whether the
        encoder's backward can be sparse (:func:`saesuite.sae.encoder.sparse_backward_pays`)."""
        return None

    def check_width(self, d_sae: int) -> None:
        """Raise ConfigError if the variant cannot act on ``d_sae`` latents."""

    def cfg_fields(self) -> dict:
        """The variant's keys of ``cfg.json`` (SAELens's ``architecture`` and ``k``)."""
        return {"architecture": self.saelens_name, "k": None}


@dataclass(frozen=True)
class ReLU(Variant):
    """``f = relu(pre)``, made sparse by an L1 penalty (Anthropic 2023; SAELens's "standard")."""

    name: ClassVar[str] = "relu"
    saelens_name: ClassVar[str] = "standard"
    l1_penalty: ClassVar[bool] = True
    default_dead_method: ClassVar[str] = "resample"

    def activation(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def training_code(self, enc: Encoding, W_dec: Tensor, b_dec: Tensor) -> Code:
        f = torch.relu(enc.dense())
        return Code(torch.addmm(b_dec, f, W_dec), f, f.amax(0) > 0)

    def encoder_scale(self, d: int, d_sae: int) -> float:
        # for random unit rows sum_i relu(w_i.v) w_i is about F/(2d) v, so c = 2d/F makes the first
        # reconstruction of a centred input about its own size
        return 2 * d / d_sae


@dataclass(frozen=True)
class TopK(Variant):
    """ReLU of the ``k`` largest pre-activations, zeros elsewhere (Gao et al. 2024)."""

    k: int
    name: ClassVar[str] = "topk"
    saelens_name: ClassVar[str] = "topk"
    l1_penalty: ClassVar[bool] = False
    default_dead_method: ClassVar[str] = "auxk"

    def sparse_code(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """The code in sparse form: ``(values [B, k], indices [B, k])``, values ReLU'd."""
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        return torch.relu(values), indices

    def activation(self, pre: Tensor) -> Tensor:
        values, indices = self.sparse_code(pre)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def training_code(self, enc: Encoding, W_dec: Tensor, b_dec: Tensor) -> Code:
        # chosen on the values, differentiated at the k entries only, decoded without the dense [B, F] code
        _, indices = self.sparse_code(enc.pre)
        values = torch.relu(enc.at(indices))
        return Code(decode_sparse(values, indices, W_dec) + b_dec, values, fired_in(indices, values, W_dec.shape[0]))

    def encoder_scale(self, d: int, d_sae: int) -> float:
        return 1.0  # the k best-aligned rows reconstruct a part of v, as in Gao et al.

    def active(self) -> int:
        return self.k

    def check_width(self, d_sae: int) -> None:
        if not 0 < self.k <= d_sae:
            raise ConfigError(f"architecture topk needs 0 < k <= d_sae={d_sae}, got k={self.k}")

    def cfg_fields(self) -> dict:
        return {"architecture": self.saelens_name, "k": self.k}


# Every variant defined above, by name: the schema's enum and the CLI's choices.
ARCHITECTURES: tuple[str, ...] = tuple(cls.name for cls in Variant.__subclasses__())
_BY_SAELENS_NAME = {cls.saelens_name: cls.name for cls in Variant.__subclasses__()}


def variant_of(architecture: str, k: int | None = None) -> Variant:
    """The variant a config names: ``architecture`` (one of :data:`ARCHITECTURES`) and TopK's ``k``."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture {architecture!r} is not known; choose one of {', '.join(ARCHITECTURES)}")
    match architecture:
        case ReLU.name:
            return ReLU()
        case TopK.name:
            if not k:
                raise ConfigError("architecture topk needs k (active latents per input)")
            return TopK(k)
        case _:  # a Variant subclass without its case here
            typing.assert_never(architecture)


def variant_of_cfg(cfg: dict) -> Variant:
    """The variant of a ``cfg.json``: the inverse of :meth:`Variant.cfg_fields` (``architecture`` may
    also be this suite's own name, as in a hand-written cfg.json)."""
    architecture = _BY_SAELENS_NAME.get(cfg["architecture"], cfg["architecture"])
    return variant_of(architecture, cfg.get("k"))
