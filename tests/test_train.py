import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from numpy_sae import encode_numpy
from safetensors.numpy import load_file

from saesuite.errors import CacheError, ConfigError, TrainingError
from saesuite.cache.planted import PlantedSpec, planted_activations, planted_dictionary, recovery, write_array_cache
from saesuite.sae.config import TrainConfig, lr_at
from saesuite.sae.dead import DeadLatents
from saesuite.sae.model import SAE
from saesuite.sae.sampling import SampleOrder
from saesuite.sae.train import CHECKPOINT, geometric_median, train_sae, train_saes
from saesuite.sae.variants import TopK

SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=512, dead_window_samples=2048,
             device="cpu", b_dec_init="mean")


def write_cache(path, x, n_shards=2):
    return write_array_cache(path, x, n_shards=n_shards)


def weights(path):
    return load_file(str(path / "sae_weights.safetensors"))


def test_overfits_one_small_batch(tmp_path):
    """The plan's sanity check: an SAE reconstructs a small batch almost perfectly."""
    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32) + 2.0
    cache = write_cache(tmp_path / "c", x, n_shards=1)
    cfg = TrainConfig(expansion=4, batch_size=64, samples=64 * 600, lr=3e-3, l1_coefficient=1e-5, **SMALL)
    train_sae(cache, tmp_path / "sae", cfg)
    w = weights(tmp_path / "sae")
    x_hat = encode_numpy(w, x) @ w["W_dec"] + w["b_dec"]
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev > 0.98
    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] / 10
    assert set(log[0]) >= {"loss", "mse", "l1", "l0", "explained_variance", "dead", "lr"}
    assert not (tmp_path / "sae" / CHECKPOINT).exists()  # removed once the weights are saved


PLANTED = PlantedSpec(d=32, n_true=64, k=3, alpha=0.3, seed=0)


@pytest.fixture(scope="module")
def planted_cache(tmp_path_factory):
    x, _ = planted_activations(PLANTED, 16384)
    return write_cache(tmp_path_factory.mktemp("planted") / "c", x)


def test_topk_at_the_true_k_recovers_the_planted_dictionary(planted_cache, tmp_path):
    cfg = TrainConfig(architecture="topk", k=PLANTED.k, expansion=4, batch_size=256, samples=256 * 800, lr=2e-3,
                      **{**SMALL, "dead_window_samples": 8192})
    train_sae(planted_cache, tmp_path / "sae", cfg)
    result = recovery(planted_dictionary(PLANTED), weights(tmp_path / "sae")["W_dec"])
    assert result["fraction_above_0.9"] >= 0.9, result["mean_best_cosine"]


def test_relu_recovers_most_of_the_planted_dictionary(planted_cache, tmp_path):
    cfg = TrainConfig(expansion=4, batch_size=256, samples=256 * 800, lr=2e-3, l1_coefficient=3e-2,
                      **{**SMALL, "dead_window_samples": 8192, "resample_every_samples": 256 * 100})
    train_sae(planted_cache, tmp_path / "sae", cfg)
    result = recovery(planted_dictionary(PLANTED), weights(tmp_path / "sae")["W_dec"])
    assert result["fraction_above_0.9"] >= 0.7, result["mean_best_cosine"]


def test_a_sweep_in_one_pass_equals_separate_runs(tmp_path):
    x = np.random.default_rng(1).normal(size=(500, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    base = dict(expansion=2, batch_size=64, samples=64 * 30, **SMALL)
    configs = [TrainConfig(l1_coefficient=1e-3, **base), TrainConfig(architecture="topk", k=3, **base)]
    train_saes(cache, [(tmp_path / "sweep" / str(i), c) for i, c in enumerate(configs)])
    for i, c in enumerate(configs):
        train_sae(cache, tmp_path / "alone" / str(i), c)
        assert (tmp_path / "sweep" / str(i) / "sae_weights.safetensors").read_bytes() == \
            (tmp_path / "alone" / str(i) / "sae_weights.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="must share batch_size"):
        train_saes(cache, [(tmp_path / "a", configs[0]), (tmp_path / "b", TrainConfig(**{**base, "batch_size": 32}))])


def test_same_seed_same_weights_and_sample_count_independent_of_cache(tmp_path):
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 20, **SMALL)
    a = train_sae(cache, tmp_path / "a", cfg)
    train_sae(cache, tmp_path / "b", cfg)
    assert (tmp_path / "a/sae_weights.safetensors").read_bytes() == (tmp_path / "b/sae_weights.safetensors").read_bytes()
    assert (tmp_path / "a/cfg.json").read_bytes() == (tmp_path / "b/cfg.json").read_bytes()
    assert a["steps"] == 20 and a["cache_rows"] == 300  # 1280 samples from a 300-row cache


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_every_row_once_per_pass_and_order_is_a_pure_function(shuffle):
    order = SampleOrder(1000, seed=3, shuffle=shuffle, block_rows=64, window_blocks=4)
    first, second = order.rows(0, 1000), order.rows(1000, 2000)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert not np.array_equal(first, second)
    fresh = SampleOrder(1000, seed=3, shuffle=shuffle, block_rows=64, window_blocks=4)
    np.testing.assert_array_equal(fresh.rows(937, 1411), np.concatenate([first, second])[937:1411])
    if shuffle == "blocks":  # a window is 4 blocks (>= 3*64 + 40 rows): its first 200 rows span <= 4 blocks
        assert len(np.unique(first[:200] // 64)) <= 4


def test_lr_schedule_warms_up_and_decays():
    cfg = TrainConfig(batch_size=100, samples=10_000, lr=1.0, lr_warmup_samples=1000, lr_decay_fraction=0.2)
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[50] == 1.0
    assert lrs[-1] == pytest.approx(0.05) and lrs[80] == pytest.approx(1.0)


def test_geometric_median_minimises_the_sum_of_distances():
    from scipy.optimize import minimize

    x = np.random.default_rng(0).standard_t(df=1.5, size=(200, 3))  # heavy tails: median != mean
    ours = geometric_median(x)
    reference = minimize(lambda m: np.linalg.norm(x - m, axis=1).sum(), x.mean(0), method="Nelder-Mead",
                         options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000}).x
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_encoder_backward_matches_autograd():
    sae = SAE(5, 7).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(4, 5, dtype=torch.float64, generator=g)
    weights_out = torch.randn(4, 7, dtype=torch.float64, generator=g)
    (sae.pre_acts(x) * weights_out).sum().backward()
    ours = [p.grad.clone() for p in (sae.W_enc, sae.b_enc, sae.b_dec)]
    sae.zero_grad()
    (((x - sae.b_dec) @ sae.W_enc + sae.b_enc) * weights_out).sum().backward()
    for a, p in zip(ours, (sae.W_enc, sae.b_enc, sae.b_dec)):
        torch.testing.assert_close(a, p.grad)
    assert torch.autograd.gradcheck(lambda v: sae.pre_acts(v), (x.clone().requires_grad_(),))


def test_sparse_topk_decode_equals_dense_decode():
    sae = SAE(6, 20, TopK(4))
    with torch.no_grad():
        sae.W_dec.normal_()
        sae.W_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(9, 6)
    with torch.no_grad():
        x_hat, values, fired = sae.variant.training_code(sae.encoding(x), sae.W_dec, sae.b_dec)
        dense = sae.encode(x)
        torch.testing.assert_close(x_hat, sae.decode(dense))
        assert values.shape == (9, 4) and torch.equal(fired, dense.amax(0) > 0)


def test_auxk_loss_against_a_direct_computation():
    cfg = TrainConfig(architecture="topk", k=2, auxk_k=2, auxk_coefficient=0.5, dead_window_samples=100)
    sae = SAE(4, 10, TopK(2))
    with torch.no_grad():
        sae.W_dec.normal_()
    x = torch.randn(3, 4)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_enc.normal_()
        pre = sae.pre_acts(x)
    residual = torch.randn(3, 4)
    dead = torch.tensor([True, False] * 5)
    latents = DeadLatents(cfg, 10, torch.device("cpu"))
    assert latents.terms(sae, sae.encoding(x), residual, torch.zeros(3, 4), torch.zeros(3, 4)) == []  # none dead yet
    latents.since_fired[dead] = 100
    latents.look()
    (term,) = latents.terms(sae, sae.encoding(x), residual, torch.zeros(3, 4), torch.zeros(3, 4))  # x - x_hat = residual
    got = term.loss / 0.5
    assert term.metrics() == {"auxk": term.loss}
    expected = []
    for b in range(3):
        dead_idx = [i for i in range(10) if dead[i]]
        top = sorted(dead_idx, key=lambda i: -pre[b, i])[:2]
        expected.append(sum(max(pre[b, i].item(), 0) * sae.W_dec[i].detach().numpy() for i in top))
    # Gao et al.'s normalisation: the residual's centred variance (openai sparse_autoencoder normalized_mse)
    r = residual.numpy()
    err = ((np.array(expected) - r) ** 2).mean() / ((r - r.mean(0)) ** 2).mean()
    assert got.item() == pytest.approx(err, rel=1e-5)


def test_resampling_revives_dead_latents(tmp_path):
    x = np.abs(np.random.default_rng(0).normal(size=(2048, 8))).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    # a large L1 silences almost every latent by step 58; resampling at step 59 brings latents back
    common = dict(expansion=8, batch_size=128, samples=128 * 70, lr=3e-3, l1_coefficient=1.0, log_every=1,
                  resample_until_fraction=0.9, **{**SMALL, "dead_window_samples": 128 * 10,
                                                  "resample_every_samples": 128 * 60})
    no = train_sae(cache, tmp_path / "none", TrainConfig(dead_latent_method="none", **common))
    yes = train_sae(cache, tmp_path / "resample", TrainConfig(dead_latent_method="resample", **common))

    def at(name, step):
        log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        return next(r for r in log if r["step"] == step)

    assert no["resampled_latents"] == 0 and yes["resampled_latents"] >= 32
    assert at("resample", 58)["dead"] >= 32 and at("resample", 60)["dead"] < at("resample", 58)["dead"]
    assert at("resample", 60)["l0"] > 3 * at("resample", 58)["l0"] + 0.5  # the resampled latents fire again
    assert at("none", 60)["l0"] <= at("none", 58)["l0"] + 0.1


def test_topk_trains_dead_latents_with_auxk(tmp_path, planted_cache):
    cfg = TrainConfig(architecture="topk", k=2, expansion=8, batch_size=256, samples=256 * 60, log_every=1,
                      **{**SMALL, "dead_window_samples": 256 * 5})
    train_sae(planted_cache, tmp_path / "sae", cfg)
    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    assert any(r["dead"] > 0 and r["auxk"] > 0 for r in log)


KILL_SCRIPT = """
import sys
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_sae
cfg = TrainConfig(expansion=8, batch_size=128, samples=128 * 1500, checkpoint_every_steps=25, lr=1e-3,
                  lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=512, dead_window_samples=2048,
                  resample_every_samples=128 * 300, device="cpu")
train_sae(sys.argv[1], sys.argv[2], cfg)
"""


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    x = np.random.default_rng(2).normal(size=(4096, 16)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    run = [sys.executable, "-c", KILL_SCRIPT, str(cache)]
    proc = subprocess.Popen(run + [str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "sae_weights.safetensors").exists()
    step = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < step < 1500
    subprocess.run(run + [str(tmp_path / "killed")], check=True, capture_output=True)  # resumes
    subprocess.run(run + [str(tmp_path / "whole")], check=True, capture_output=True)
    assert (tmp_path / "killed" / "sae_weights.safetensors").read_bytes() == \
        (tmp_path / "whole" / "sae_weights.safetensors").read_bytes()
    logs = [(tmp_path / d / "train_log.jsonl").read_text() for d in ("killed", "whole")]
    assert logs[0] == logs[1]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import saesuite.sae.trainer as train_module

    x = np.random.default_rng(1).normal(size=(128, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    # the run diverges at step 6 (lr jumps to 1e30), after checkpoints at steps 2, 4 and 6
    normal_lr = train_module.lr_at
    monkeypatch.setattr(train_module, "lr_at", lambda step, cfg: 1e30 if step >= 5 else normal_lr(step, cfg))
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 40, grad_clip_norm=1e30, checkpoint_every_steps=2, **SMALL)
    with pytest.raises(TrainingError, match="loss became .* at step .* last good checkpoint"):
        train_sae(cache, tmp_path / "sae", cfg)
    assert not (tmp_path / "sae" / "sae_weights.safetensors").exists()
    state = torch.load(tmp_path / "sae" / CHECKPOINT, weights_only=False)
    assert state["step"] in (4, 6)
    assert all(torch.isfinite(v).all() for v in state["trainers"][0]["sae"].values())


def test_damaged_cache_is_refused_before_training(tmp_path):
    x = np.random.default_rng(1).normal(size=(128, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "c", x)
    shard = cache / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(CacheError, match="shard-00000.npy"):
        train_sae(cache, tmp_path / "sae", TrainConfig(batch_size=64, samples=128, **SMALL))
    assert not (tmp_path / "sae").exists()


def test_unknown_option_and_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['l1_coef'\]"):
        TrainConfig.from_dict({"l1_coef": 1.0})
    with pytest.raises(ConfigError, match="topk needs k"):
        TrainConfig(architecture="topk")
    with pytest.raises(ConfigError, match="dead_latent_method 'ghost'"):
        TrainConfig(dead_latent_method="ghost")


def test_cfg_json_opens_in_saelens(tmp_path):
    sae_lens = pytest.importorskip("sae_lens", reason="the optional sae-lens extra is not installed")
    x = np.random.default_rng(1).normal(size=(256, 8)).astype(np.float32) * 5 + 1
    cache = write_cache(tmp_path / "c", x)
    for arch, k in (("relu", None), ("topk", 3)):
        train_sae(cache, tmp_path / arch, TrainConfig(architecture=arch, k=k, expansion=2, batch_size=64,
                                                      samples=64 * 10, **SMALL))
        theirs = sae_lens.SAE.load_from_disk(str(tmp_path / arch))
        w = weights(tmp_path / arch)
        with torch.no_grad():
            f = theirs.encode(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(f, encode_numpy(w, x, arch, k), rtol=1e-4, atol=1e-4)


def test_rows_of_unreadable_images_are_never_trained_on(tmp_path, monkeypatch):
    from saesuite.cache.reader import ActivationCache

    x = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
    bad = [3, 77, 150]
    x[bad] = 0.0  # how caching stores an unreadable image
    cache = write_array_cache(tmp_path / "c", x, n_shards=2,
                              bad_rows=[{"row": r, "path": f"img{r}.jpg", "error": "truncated"} for r in bad])
    seen = []
    original = ActivationCache.gather
    monkeypatch.setattr(ActivationCache, "gather", lambda self, idx: seen.append(np.asarray(idx)) or original(self, idx))
    train_sae(cache, tmp_path / "sae", TrainConfig(expansion=2, batch_size=50, samples=50 * 12, **SMALL))
    rows = np.concatenate(seen)
    assert len(rows) >= 600 and not np.isin(rows, bad).any()
    assert set(range(200)) - set(bad) <= set(rows.tolist())  # every usable row is read
