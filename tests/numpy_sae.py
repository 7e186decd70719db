"""The SAE's encoder in numpy alone: the independent reference that tests check the torch model,
the saved weights and the evaluation against (docs/architecture.md, "the SAE forward")."""

from __future__ import annotations

import numpy as np


def encode_numpy(weights: dict[str, np.ndarray], x: np.ndarray, architecture: str = "relu", k: int | None = None) -> np.ndarray:
    """``x [b, d] -> f [b, F]``: ``act((x - b_dec) @ W_enc + b_enc)``, act ReLU, or for ``topk`` ReLU of
    the ``k`` largest pre-activations and zeros elsewhere."""
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    if architecture == "relu":
        return np.maximum(pre, 0)
    f = np.zeros_like(pre)
    top = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    np.put_along_axis(f, top, np.maximum(np.take_along_axis(pre, top, axis=1), 0), axis=1)
    return f
