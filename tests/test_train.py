import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from saesuite.cache import write_json_atomic, sha256_file
from saesuite.errors import CacheError, ConfigError, TrainingError
from saesuite.sae import encode_numpy
from saesuite.train import TrainConfig, batches, lr_at, train_sae


def write_cache(path, x: np.ndarray, n_shards=2, model="planted", hook="attnpool"):
    """An activation cache in the on-disk format, from an array (for planted data)."""
    path.mkdir(parents=True)
    shards = []
    for i, part in enumerate(np.array_split(x, n_shards)):
        np.save(path / f"shard-{i:05d}.npy", part)
        shards.append({"file": f"shard-{i:05d}.npy", "rows": len(part), "sha256": sha256_file(path / f"shard-{i:05d}.npy")})
    np.save(path / "labels.npy", np.zeros(len(x), np.int64))
    write_json_atomic(path / "manifest.json", {
        "n": len(x), "d": x.shape[1], "dtype": str(x.dtype), "model": model, "pretrained": None, "hook": hook,
        "dataset": "planted", "split": "train", "shards": shards,
    })
    return path


SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=512, dead_window_samples=2048, device="cpu")


def test_overfits_one_small_batch(tmp_path):
    """The plan's sanity check: an SAE reconstructs a small batch almost perfectly."""
    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32) + 2.0
    cache = write_cache(tmp_path / "c", x, n_shards=1)
    cfg = TrainConfig(expansion=4, batch_size=64, samples=64 * 600, lr=3e-3, l1_coefficient=1e-5, **SMALL)
    train_sae(cache, tmp_path / "sae", cfg)
    w = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    x_hat = encode_numpy(w, x) @ w["W_dec"] + w["b_dec"]
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev > 0.98
    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] / 10
    assert set(log[0]) >= {"loss", "mse", "l1", "l0", "explained_variance", "dead", "lr"}


def test_recovers_a_planted_dictionary(tmp_path):
    """Sparse combinations of 24 known unit directions in 16 dims: learned decoder rows find them."""
    rng = np.random.default_rng(0)
    d, n_true, n = 16, 24, 8192
    true = rng.normal(size=(n_true, d))
    true /= np.linalg.norm(true, axis=1, keepdims=True)
    active = rng.random((n, n_true)) < 0.08
    coef = active * rng.uniform(1, 3, size=(n, n_true))
    x = (coef @ true).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    cfg = TrainConfig(expansion=4, batch_size=256, samples=256 * 1200, lr=3e-3, l1_coefficient=3e-2, **SMALL)
    train_sae(cache, tmp_path / "sae", cfg)
    w_dec = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))["W_dec"]
    w_dec = w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True)
    best = (true @ w_dec.T).max(axis=1)
    assert np.mean(best > 0.9) >= 0.8, best


def test_same_seed_same_weights_and_sample_count_independent_of_cache(tmp_path):
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 20, **SMALL)
    a = train_sae(cache, tmp_path / "a", cfg)
    train_sae(cache, tmp_path / "b", cfg)
    assert (tmp_path / "a/sae_weights.safetensors").read_bytes() == (tmp_path / "b/sae_weights.safetensors").read_bytes()
    assert (tmp_path / "a/cfg.json").read_bytes() == (tmp_path / "b/cfg.json").read_bytes()
    assert a["steps"] == 20 and a["cache_rows"] == 300  # 1280 samples from a 300-row cache


def test_batches_cover_every_row_once_per_pass():
    idx = np.concatenate(list(batches(10, 4, 5, np.random.default_rng(0))))
    assert len(idx) == 20
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:20]) == list(range(10))


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(batch_size=100, samples=10_000, lr=1.0, lr_warmup_samples=1000, lr_decay_fraction=0.2)
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[50] == 1.0
    assert lrs[-1] == pytest.approx(0.05) and lrs[80] == pytest.approx(1.0)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    x = np.random.default_rng(1).normal(size=(128, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 10, lr=1e30, grad_clip_norm=1e30, **SMALL)
    with pytest.raises(TrainingError, match="loss became .* at step"):
        train_sae(cache, tmp_path / "sae", cfg)
    assert not (tmp_path / "sae" / "sae_weights.safetensors").exists()


def test_damaged_cache_is_refused_before_training(tmp_path):
    x = np.random.default_rng(1).normal(size=(128, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    shard = cache / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(CacheError, match="shard-00000.npy"):
        train_sae(cache, tmp_path / "sae", TrainConfig(batch_size=64, samples=128, **SMALL))
    assert not (tmp_path / "sae").exists()


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['l1_coef'\]"):
        TrainConfig.from_dict({"l1_coef": 1.0})
