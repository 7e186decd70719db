"""Geometry of an SAE's dictionary: near-duplicate latents and alignment with model neurons.

Every function works on row vectors (one direction per row) and is chunked over
rows, so no ``[F, F]`` or ``[F, M]`` matrix beyond ``[chunk, F]`` / ``[chunk, M]``
is ever held:

* :func:`max_cosine_with_others` -- per latent, the largest cosine with any other
  latent's vector (SAEBench's ``average_max_encoder/decoder_cosine_sim`` is its mean).
* :func:`max_abs_cosine` -- per latent, the largest ``|cos|`` with a set of reference
  directions (the MLP neurons that write into the hooked space) and which one.
* :func:`basis_alignment` -- the same against the standard basis: ``max_i |w_i| / ||w||``.
* :func:`neuron_directions` -- those reference directions, read off the backbone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from saesuite.backbones import Backbone
from saesuite.errors import ConfigError


def unit_rows(w: Tensor) -> Tensor:
    """``[n, d] -> [n, d]`` rows scaled to unit norm (zero rows stay zero), float32."""
    w = w.detach().float()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def max_cosine_with_others(w: Tensor, chunk: int = 2048) -> np.ndarray:
    """``w [F, d]`` -> ``[F]``: for each row, the largest cosine with any *other* row (signed)."""
    u = unit_rows(w)
    out = np.empty(len(u), np.float64)
    for s in range(0, len(u), chunk):
        cos = u[s : s + chunk] @ u.T  # [chunk, F]
        rows = torch.arange(len(cos), device=cos.device)
        cos[rows, rows + s] = -torch.inf  # not with itself
        out[s : s + chunk] = cos.max(dim=1).values.double().cpu().numpy()
    return out


def max_abs_cosine(w: Tensor, directions: Tensor, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``w [F, d]``, ``directions [M, d]`` -> (``[F]`` largest ``|cos|``, ``[F]`` index of that direction)."""
    u, v = unit_rows(w), unit_rows(directions.to(w.device))
    best = np.empty(len(u), np.float64)
    which = np.empty(len(u), np.int64)
    for s in range(0, len(u), chunk):
        values, index = (u[s : s + chunk] @ v.T).abs().max(dim=1)
        best[s : s + chunk] = values.double().cpu().numpy()
        which[s : s + chunk] = index.cpu().numpy()
    return best, which


def basis_alignment(w: Tensor) -> np.ndarray:
    """``w [F, d]`` -> ``[F]``: largest ``|cos|`` with a standard basis vector, ``max_i |w_i| / ||w||``."""
    return unit_rows(w).abs().max(dim=1).values.double().cpu().numpy()


def neuron_directions(backbone: Backbone) -> tuple[Tensor, str] | None:
    """The output directions ``[M, d]`` of the neurons that write into the hooked space, and their name.

    ``resid_cls:K`` (and ``mlp_out:K``): the columns of
    ``visual.transformer.resblocks[K].mlp.c_proj.weight`` (``[d, 4d]``), one per MLP
    neuron. ``attnpool``: the columns of ``visual.attnpool.c_proj.weight``
    (``[d_out, d_embed]``). None for a hook no single layer of neurons writes into.
    """
    hook = backbone.hook
    if hook.site in ("resid_cls", "mlp_out"):
        proj = backbone.visual.transformer.resblocks[hook.block].mlp.c_proj
        name = f"visual.transformer.resblocks[{hook.block}].mlp.c_proj"
    elif hook.site == "attnpool":
        proj = backbone.visual.attnpool.c_proj
        name = "visual.attnpool.c_proj"
    else:
        return None
    weight = proj.weight.detach()
    if weight.shape[0] != backbone.d:
        raise ConfigError(f"{name} of {backbone.name} writes {weight.shape[0]} dimensions, the hook has d={backbone.d}")
    return weight.T.contiguous(), name
