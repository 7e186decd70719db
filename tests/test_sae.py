import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from saesuite.errors import ConfigError
from saesuite.sae.model import SAE, encode_numpy, load_sae, save_sae


def random_sae(d=8, F=32, architecture="relu", k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    sae = SAE(d, F, architecture, k)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return sae


@pytest.mark.parametrize("architecture, k", [("relu", None), ("topk", 5)])
def test_saved_sae_acts_on_raw_inputs_with_numpy_alone(tmp_path, architecture, k):
    """Weights trained on scale * x are folded so that numpy on raw x gives the same code and x_hat / scale."""
    sae, scale = random_sae(architecture=architecture, k=k), 3.7
    x_raw = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    with torch.no_grad():
        x_hat_scaled, f_scaled = sae(torch.from_numpy(x_raw) * scale)
    save_sae(sae, tmp_path, {"d_in": 8, "d_sae": 32, "architecture": architecture, "k": k}, scale=scale)
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert {n: v.shape for n, v in w.items()} == {"W_enc": (8, 32), "b_enc": (32,), "W_dec": (32, 8), "b_dec": (8,)}
    f = encode_numpy(w, x_raw, architecture, k)
    np.testing.assert_allclose(f, f_scaled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f @ w["W_dec"] + w["b_dec"], x_hat_scaled.numpy() / scale, rtol=1e-4, atol=1e-4)
    loaded, cfg = load_sae(tmp_path)
    assert cfg["architecture"] == architecture
    with torch.no_grad():
        np.testing.assert_allclose(loaded.encode(torch.from_numpy(x_raw)).numpy(), f, rtol=1e-4, atol=1e-4)


def test_topk_keeps_exactly_the_k_largest():
    sae = random_sae(architecture="topk", k=3)
    x = torch.randn(10, 8)
    with torch.no_grad():
        pre, f = sae.pre_acts(x), sae.encode(x)
    assert ((f > 0).sum(1) <= 3).all()
    top = pre.topk(3, dim=1)
    torch.testing.assert_close(f.gather(1, top.indices), top.values.clamp_min(0))


def test_decoder_rows_renormalise_and_parallel_gradient_is_removed():
    sae = random_sae()
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_parallel_grad()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(32), atol=1e-5, rtol=0)


def test_bad_architecture_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="architecture 'gated'"):
        SAE(4, 8, "gated")
    with pytest.raises(ConfigError, match="topk needs"):
        SAE(4, 8, "topk", None)
    with pytest.raises(ConfigError, match="not an SAE directory"):
        load_sae(tmp_path)
