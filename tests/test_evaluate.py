import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from saesuite.cache import ActivationCache
from saesuite.errors import ConfigError
from saesuite.evaluate import EvalConfig, evaluate_sae
from saesuite.schema import validate
from saesuite.sae import encode_numpy
from saesuite.train import TrainConfig, train_sae

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
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    validate(metrics, "metrics")

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


def test_schema_rejects_out_of_range_and_unknown_keys():
    good = {
        "n": 1, "mse": 0.1, "explained_variance": 0.5, "l0": 2.0, "population_sparsity": 0.1,
        "mean_lifetime_sparsity": 0.1, "dead_fraction": 0.0, "fraction_near_zero": 0.9, "d_in": 4, "d_sae": 8,
        "architecture": "relu", "model": "m", "hook": "attnpool", "dataset": "d", "split": "s",
        "near_zero_threshold": 1e-6, "dead_threshold": 0.0,
    }
    validate(good, "metrics")
    with pytest.raises(ValueError, match="dead_fraction"):
        validate({**good, "dead_fraction": 1.5}, "metrics")
    with pytest.raises(ValueError, match="extra"):
        validate({**good, "extra": 1}, "metrics")
