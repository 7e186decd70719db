import numpy as np
import pytest
import torch
from numpy_sae import encode_numpy
from safetensors.numpy import load_file

from saesuite.errors import ConfigError
from saesuite.sae.model import SAE, load_sae, read_cfg, save_sae
from saesuite.sae.variants import ReLU, TopK, variant_of


def random_sae(d=8, F=32, architecture="relu", k=None, seed=0):
    """An SAE of the variant a config names (``architecture``, ``k``) with N(0, 0.25) parameters."""
    g = torch.Generator().manual_seed(seed)
    sae = SAE(d, F, variant_of(architecture, k))
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
    with pytest.raises(ConfigError, match="architecture 'gated' is not known; choose one of relu, topk"):
        variant_of("gated")
    with pytest.raises(ConfigError, match="topk needs k"):
        variant_of("topk", None)
    with pytest.raises(ConfigError, match="topk needs 0 < k <= d_sae=8, got k=9"):
        SAE(4, 8, TopK(9))
    with pytest.raises(ConfigError, match="not an SAE directory"):
        load_sae(tmp_path)
    save_sae(SAE(4, 8), tmp_path, {"d_in": 4, "architecture": "standard"})
    with pytest.raises(ConfigError, match="lacks d_sae"):
        read_cfg(tmp_path)
    save_sae(SAE(4, 8), tmp_path, {"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 9})
    with pytest.raises(ConfigError, match="k <= d_sae=8"):
        load_sae(tmp_path)


@pytest.mark.parametrize("name, variant", [("standard", ReLU()), ("relu", ReLU()), ("topk", TopK(3))])
def test_cfg_json_names_its_variant_in_saelens_or_this_suites_words(tmp_path, name, variant):
    """cfg.json's architecture is SAELens's name as training writes it, or this suite's own (a hand-written one)."""
    save_sae(SAE(4, 8, variant), tmp_path, {"d_in": 4, "d_sae": 8, "architecture": name, "k": 3})
    assert read_cfg(tmp_path)[1] == variant and load_sae(tmp_path)[0].variant == variant
