"""The sparse autoencoder and its on-disk format.

``encode(x) = act((x - b_dec) @ W_enc + b_enc)`` with act the SAE's variant
(:mod:`saesuite.sae.variants`: ReLU, or for TopK ReLU of the k largest pre-activations and
zeros elsewhere); ``decode(f) = f @ W_dec + b_dec``. Shapes: ``W_enc [d, F]``, ``b_enc [F]``,
``W_dec [F, d]``, ``b_dec [d]`` (SAELens's names). A directory holds
``sae_weights.safetensors`` and ``cfg.json``; the saved weights act on the raw
cached activations. :func:`read_cfg` is the library's one reader of ``cfg.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file
from torch import Tensor, nn

from saesuite.errors import ConfigError
from saesuite.files import write_json_atomic
from saesuite.outputs import atomic_path, default_file_mode
from saesuite.sae.encoder import Encoding, sparse_backward_pays
from saesuite.sae.variants import ReLU, Variant, variant_of_cfg

WEIGHTS = "sae_weights.safetensors"
CFG = "cfg.json"


class SAE(nn.Module):
    """An overcomplete linear autoencoder with a sparse code: ``[b, d] -> [b, F] -> [b, d]``."""

    def __init__(self, d_in: int, d_sae: int, variant: Variant = ReLU()):
        super().__init__()
        variant.check_width(d_sae)
        self.d_in, self.d_sae, self.variant = d_in, d_sae, variant
        # [d, F] to every reader, stored latent-major ([F, d] in memory): each latent's encoder vector is one
        # contiguous row, as the sparse encoder gradient (saesuite.sae.encoder) and resampling write them
        self.W_enc = nn.Parameter(torch.zeros(d_sae, d_in).T)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: Tensor) -> Tensor:
        """``[b, d] -> [b, F]`` encoder pre-activations (with a dense gradient under autograd)."""
        return self.encoding(x).dense()

    def encoding(self, x: Tensor) -> Encoding:
        """The pre-activations of ``x [b, d]`` as the training step differentiates them (densely, or at the
        entries a sparse code uses: :class:`saesuite.sae.encoder.Encoding`)."""
        sparse = sparse_backward_pays(self.d_in, self.d_sae, self.variant.active())
        return Encoding(x, self.b_dec, self.W_enc, self.b_enc, sparse)

    @property
    def architecture(self) -> str:
        """The variant's name (``relu``, ``topk``)."""
        return self.variant.name

    def encode(self, x: Tensor) -> Tensor:
        """``[b, d] -> [b, F]`` sparse code."""
        return self.variant.activation(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        """``[b, F] -> [b, d]`` reconstruction."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale every decoder row to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_grad(self, rows: int = 1024) -> None:
        """Project out of ``W_dec.grad`` the component along each (unit) decoder row: ``grad -= (grad . row) row``,
        in place, ``rows`` rows at a time, so its temporaries are ``[rows, d]``, not ``[F, d]``."""
        if self.W_dec.grad is None:
            return
        for grad, rows in zip(self.W_dec.grad.split(rows), self.W_dec.split(rows)):
            grad -= (grad * rows).sum(dim=1, keepdim=True) * rows


def save_sae(sae: SAE, out_dir: str | Path, cfg: dict, scale: float = 1.0) -> None:
    """Write ``sae`` to ``out_dir`` acting on raw inputs.

    ``scale`` is the factor the inputs were multiplied by during training
    (``x_train = scale * x_raw``); it is folded back in so that the saved
    weights act on raw activations and give the same code ``f``:
    ``W_enc = scale * W_enc'``, ``W_dec = W_dec' / scale``, ``b_dec = b_dec' / scale``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": (sae.W_enc.detach() * scale),
        "b_enc": sae.b_enc.detach(),
        "W_dec": (sae.W_dec.detach() / scale),
        "b_dec": (sae.b_dec.detach() / scale),
    }
    tensors = {k: v.float().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
        tmp.chmod(default_file_mode())  # safetensors creates its file 0600; outputs get the usual mode
    write_json_atomic(out_dir / CFG, cfg)


def read_cfg(path: str | Path) -> tuple[dict, Variant]:
    """An SAE's ``cfg.json`` (``path``: the SAE directory or the file itself) and the variant it
    names, checked: it gives ``d_in``, ``d_sae`` and a known ``architecture`` (with TopK's ``k``, at
    most ``d_sae``). ConfigError otherwise."""
    path = Path(path)
    file = path if path.name == CFG and path.is_file() else path / CFG
    if not file.is_file():
        raise ConfigError(f"{path} is not an SAE directory: it needs {WEIGHTS} and {CFG} (train one with 'saesuite train')")
    cfg = json.loads(file.read_text())
    missing = [key for key in ("d_in", "d_sae", "architecture") if key not in cfg]
    if missing:
        raise ConfigError(f"{file} lacks {', '.join(missing)}")
    variant = variant_of_cfg(cfg)
    variant.check_width(cfg["d_sae"])
    return cfg, variant


def load_sae(path: str | Path, device: str = "cpu") -> tuple[SAE, dict]:
    """Load an SAE directory written by :func:`save_sae`; return it and its ``cfg.json``."""
    if not (Path(path) / WEIGHTS).is_file():
        raise ConfigError(f"{path} is not an SAE directory: it needs {WEIGHTS} and {CFG} (train one with 'saesuite train')")
    cfg, variant = read_cfg(path)
    weights = load_numpy(str(Path(path) / WEIGHTS))
    sae = SAE(cfg["d_in"], cfg["d_sae"], variant)
    with torch.no_grad():
        for name, value in weights.items():
            getattr(sae, name).copy_(torch.from_numpy(value))
    return sae.to(device), cfg
