import json

import numpy as np
import pytest
from numpy_sae import encode_numpy
from safetensors.numpy import load_file

from saesuite.cache.reader import ActivationCache
from saesuite.errors import ConfigError
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.evaluate.results import read_metrics
from saesuite.schema import validate
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_sae

SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=256, dead_window_samples=2048, device="cpu")


@pytest.fixture(scope="module")
def trained(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae")
    cfg = TrainConfig(expansion=4, batch_size=64, samples=64 * 60, lr=1e-3, l1_coefficient=1e-2, **SMALL)
    train_sae(caches[("tiny-ViT", "train")], out, cfg)
    return out


def test_metrics_match_an_independent_numpy_computation(trained, caches, tmp_path):
    cache_dir = caches[("tiny-ViT", "test")]
    threshold = 1e-3
    metrics = evaluate_sae(trained, cache_dir, tmp_path, EvalConfig(near_zero_threshold=threshold, chunk_rows=37))
    assert read_metrics(tmp_path / "metrics.json") == metrics  # the one reader, schema-checked

    w = load_file(str(trained / "sae_weights.safetensors"))
    x = ActivationCache.open(cache_dir).read_all().astype(np.float64)
    f = encode_numpy({k: v.astype(np.float64) for k, v in w.items()}, x)
    x_hat = f @ w["W_dec"] + w["b_dec"]
    n, F = f.shape
    assert metrics["n"] == n == 120
    assert metrics["mse"] == pytest.approx(((x - x_hat) ** 2).mean(), rel=1e-4)
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert metrics["explained_variance"] == pytest.approx(ev, rel=1e-4, abs=1e-5)
    assert metrics["l0"] == pytest.approx((f > 0).sum(1).mean(), rel=1e-3)
    assert metrics["population_sparsity"] == pytest.approx((f > 0).mean(1).mean(), rel=1e-3)
    assert metrics["mean_lifetime_sparsity"] == pytest.approx((f > 0).mean(0).mean(), rel=1e-3)
    # the plan's sanity check: mean lifetime sparsity equals population sparsity
    assert metrics["mean_lifetime_sparsity"] == pytest.approx(metrics["population_sparsity"], rel=1e-9)
    assert metrics["dead_fraction"] == pytest.approx((f.sum(0) <= 0).mean())
    assert metrics["fraction_near_zero"] == pytest.approx((np.abs(f) < threshold).mean(), rel=1e-3)
    latents = np.load(tmp_path / "latents.npz")
    np.testing.assert_allclose(latents["lifetime_sparsity"], (f > 0).mean(0), atol=1e-6)
    assert 0 < metrics["l0"] < F


def test_sae_and_cache_must_match(trained, caches, tmp_path):
    with pytest.raises(ConfigError, match="trained on tiny-ViT"):
        evaluate_sae(trained, caches[("tiny-RN", "test")], tmp_path)


def test_new_metrics_match_numpy(trained, caches, tmp_path):
    """Reconstruction, label entropy, near-duplicates, alignment and top-k against numpy formulas."""
    import pandas as pd

    from saesuite.models.backbones import load_backbone

    cache_dir = caches[("tiny-ViT", "test")]
    m = evaluate_sae(trained, cache_dir, tmp_path, EvalConfig(chunk_rows=50, top_k=5))
    w = {k: v.astype(np.float64) for k, v in load_file(str(trained / "sae_weights.safetensors")).items()}
    cache = ActivationCache.open(cache_dir)
    x, y = cache.read_all().astype(np.float64), cache.labels()
    f = encode_numpy(w, x)
    x_hat = f @ w["W_dec"] + w["b_dec"]
    nx, nh = np.linalg.norm(x, axis=1), np.linalg.norm(x_hat, axis=1)
    assert m["normalized_mse"] == pytest.approx(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(), rel=1e-4)
    assert m["cosine_similarity"] == pytest.approx(((x * x_hat).sum(1) / (nx * nh)).mean(), rel=1e-5)
    assert m["l2_ratio"] == pytest.approx((nh / nx).mean(), rel=1e-5)
    assert m["relative_reconstruction_bias"] == pytest.approx((nh**2).mean() / (x * x_hat).sum(1).mean(), rel=1e-5)
    assert m["l1"] == pytest.approx(f.sum(1).mean(), rel=1e-4)
    table = pd.read_csv(tmp_path / "latents.csv")
    density = (f > 0).mean(0)
    np.testing.assert_allclose(table["lifetime_sparsity"], density, atol=1e-9)
    assert m["fraction_firing_above_1pct"] == pytest.approx((density > 0.01).mean())
    assert m["dense_fraction"] == pytest.approx((density > 0.1).mean())
    # label entropy: activation-weighted class distribution per latent
    for i in np.flatnonzero(f.sum(0) > 0)[:40]:
        mass = np.bincount(y, weights=f[:, i], minlength=10)
        p = mass[mass > 0] / mass.sum()
        assert table["label_entropy"][i] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-4)
    # near-duplicates: largest cosine with another latent
    for name, vecs in (("encoder", w["W_enc"].T), ("decoder", w["W_dec"])):
        u = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        cos = u @ u.T
        np.fill_diagonal(cos, -np.inf)
        np.testing.assert_allclose(table[f"max_cos_other_{name}"], cos.max(1), atol=1e-5)
        assert m[f"mean_max_cosine_{name}"] == pytest.approx(cos.max(1).mean(), abs=1e-6)
        # alignment with the MLP neurons (c_proj columns of the hooked block) and the standard basis
        backbone = load_backbone("tiny-ViT", None, "resid_cls:-2")
        neurons = backbone.visual.transformer.resblocks[2].mlp.c_proj.weight.detach().double().numpy().T  # [4d, d]
        nu = neurons / np.linalg.norm(neurons, axis=1, keepdims=True)
        align = np.abs(u @ nu.T).max(1)
        np.testing.assert_allclose(table[f"{name}_neuron_alignment"], align, atol=1e-5)
        assert m["alignment"][f"neuron_{name}_fraction_above"] == pytest.approx((align > 0.5).mean())
        np.testing.assert_allclose(table[f"{name}_basis_alignment"], np.abs(u).max(1), atol=1e-6)
    assert m["alignment"]["neurons"] == "visual.transformer.resblocks[2].mlp.c_proj"
    # top-k rows: the 5 largest activations per latent, ties to the lower row
    topk = np.load(tmp_path / "latents.npz")["topk_indices"]
    for i in np.flatnonzero((f > 0).sum(0) >= 5)[:40]:
        order = np.lexsort((np.arange(len(f)), -f[:, i]))[:5]
        assert set(topk[i]) == set(order)
    assert m["text_naming"] is None  # a ViT residual stream is not CLIP's joint space


def test_rn_latents_are_named_by_nearest_class_text(caches, tmp_path):
    import open_clip
    import pandas as pd
    import torch

    from saesuite.models.backbones import load_backbone
    from saesuite.sae.model import SAE, save_sae

    torch.manual_seed(0)
    sae = SAE(64, 32)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.normal_()
    save_sae(sae, tmp_path / "sae", {"d_in": 64, "d_sae": 32, "architecture": "relu", "model": "tiny-RN", "hook": "attnpool"})
    m = evaluate_sae(tmp_path / "sae", caches[("tiny-RN", "test")], tmp_path / "eval", EvalConfig(text_names=3))
    classes = m["classes"]
    backbone = load_backbone("tiny-RN", None, "attnpool")
    with torch.no_grad():
        text = backbone.model.encode_text(open_clip.get_tokenizer("tiny-RN")([f"a photo of a {c}." for c in classes])).numpy()
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    d = sae.W_dec.detach().numpy()
    cos = (d / np.linalg.norm(d, axis=1, keepdims=True)) @ t.T
    table = pd.read_csv(tmp_path / "eval" / "latents.csv")
    for i in range(32):
        best = np.argsort(-cos[i])[:3]
        assert table["text_names"][i] == "|".join(classes[j] for j in best)
    assert m["text_naming"]["mean_best_cosine"] == pytest.approx(cos.max(1).mean(), abs=1e-5)


def test_schema_rejects_malformed_metrics(trained, caches, tmp_path):
    good = evaluate_sae(trained, caches[("tiny-ViT", "test")], tmp_path)
    validate(good, "metrics")
    with pytest.raises(ValueError, match="dead_fraction"):
        validate({**good, "dead_fraction": 1.5}, "metrics")
    with pytest.raises(ValueError, match="extra"):
        validate({**good, "extra": 1}, "metrics")
    with pytest.raises(ValueError, match="l2_ratio"):
        validate({k: v for k, v in good.items() if k != "l2_ratio"}, "metrics")
    with pytest.raises(ValueError, match="label_entropy"):
        validate({**good, "label_entropy": {**good["label_entropy"], "units": "bits"}}, "metrics")
    bad_fidelity = {"n_images": 1, "prompt": "{}", "accuracy_clean": 2.0}
    with pytest.raises(ValueError, match="fidelity"):
        validate({**good, "fidelity": bad_fidelity}, "metrics")


def test_read_metrics_refuses_a_file_that_is_not_an_evaluation_s(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"model": "my-model", "l0": 3.0}))
    with pytest.raises(ValueError, match=rf"{path}: metrics JSON fails its schema"):
        read_metrics(path)
