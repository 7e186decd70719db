"""The torch device a stage runs on, from the config's ``device`` setting."""

from __future__ import annotations

import torch

from saesuite.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present). Asking for CUDA without it is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but torch sees no CUDA GPU. Run on a GPU machine, or set "
            "device: cpu (or auto) in the config."
        )
    return torch.device(device)
