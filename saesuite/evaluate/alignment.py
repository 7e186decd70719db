"""Geometry of an SAE's dictionary: near-duplicate latents and alignment with model neurons.

Every function works on row vectors (one direction per row) and is chunked over
rows, so no ``[F, F]`` or ``[F, M]`` matrix beyond ``[chunk, F]`` / ``[chunk, M]``
is ever held:

* :func:`max_cosine_with_others` -- per latent, the largest cosine with any other
  latent's vector (SAEBench's ``average_max_encoder/decoder_cosine_sim`` is its mean).
* :func:`max_abs_cosine` -- per latent, the largest ``|cos|`` with a set of reference
  directions (the MLP neurons that write into the hooked space) and which one.
* :func:`basis_alignment` -- the same against the standard basis: ``max_i |w_i| / ||w||``.
* :func:`neuron_directions` -- those reference directions, read off the backbone, with
  what they are: for ``resid_cls:K`` / ``mlp_out:K`` the MLP neurons of block K; for
  ``attnpool`` the *inputs of* ``attnpool.c_proj`` (the attention pool's per-channel outputs,
  concatenated over heads), which are not MLP neurons.
* :func:`chance_alignment` -- the chance level: the same statistics computed for random
  unit directions (:func:`random_unit_directions`: normalised isotropic Gaussians) against
  the same references.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from saesuite.models.backbones import Backbone
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


def neuron_directions(backbone: Backbone) -> tuple[Tensor, str, str] | None:
    """The output directions ``[M, d]`` of the units that write into the hooked space, their module and what they are.

    ``resid_cls:K`` (and ``mlp_out:K``): the columns of
    ``visual.transformer.resblocks[K].mlp.c_proj.weight`` (``[d, 4d]``), one per MLP
    neuron. ``attnpool``: the columns of ``visual.attnpool.c_proj.weight``
    (``[d_out, d_embed]``), one per input of that projection. None for a hook no single
    layer of units writes into (``mlp_hidden``).
    """
    hook = backbone.hook
    if hook.site in ("resid_cls", "mlp_out"):
        proj = backbone.visual.transformer.resblocks[hook.block].mlp.c_proj
        name = f"visual.transformer.resblocks[{hook.block}].mlp.c_proj"
        what = (f"the {proj.in_features} MLP neurons of block {hook.block}, each as its output direction "
                f"(a column of {name}.weight)")
    elif hook.site == "attnpool":
        proj = backbone.visual.attnpool.c_proj
        name = "visual.attnpool.c_proj"
        what = (f"the {proj.in_features} inputs of {name} (the attention pool's per-channel outputs, concatenated "
                f"over heads; not MLP neurons), each as its output direction (a column of {name}.weight)")
    else:
        return None
    weight = proj.weight.detach()
    if weight.shape[0] != backbone.d:
        raise ConfigError(f"{name} of {backbone.name} writes {weight.shape[0]} dimensions, the hook has d={backbone.d}")
    return weight.T.contiguous(), name, what


def random_unit_directions(n: int, d: int, seed: int) -> Tensor:
    """``[n, d]`` float32 directions uniform on the unit sphere (normalised Gaussians), drawn on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return unit_rows(torch.randn(n, d, generator=g, dtype=torch.float64))


def chance_alignment(n: int, d: int, seed: int, threshold: float, neurons: Tensor | None = None) -> dict:
    """The alignment statistics of ``n`` random unit directions in ``d`` dimensions: the chance level.

    ``basis_mean`` / ``basis_fraction_above``: mean of ``max_i |u_i|`` and the fraction above
    ``threshold``; with ``neurons [M, d]`` the same for the largest ``|cos|`` with a neuron
    (``neuron_mean``, ``neuron_fraction_above``; None without neurons).
    """
    random = random_unit_directions(n, d, seed)
    basis = basis_alignment(random)
    out = {"directions": n, "seed": seed, "basis_mean": float(basis.mean()),
           "basis_fraction_above": float((basis > threshold).mean()),
           "neuron_mean": None, "neuron_fraction_above": None}
    if neurons is not None:
        cos, _ = max_abs_cosine(random.to(neurons.device), neurons)
        out["neuron_mean"], out["neuron_fraction_above"] = float(cos.mean()), float((cos > threshold).mean())
    return out
