"""The training step's fast paths compute what the plain formulas compute.

* the sparse encoder backward (TopK's k entries a row, AuxK's dead latents) equals the dense
  gradient of the same loss, computed here by autograd in float64 from the formulas;
* the decoder-gradient projection in chunks of rows is ``g - (g . w) w``, float for float;
* the chunked initial statistics equal the vectorised float64 formulas, in a fraction of the memory;
* a step reads nothing on the host (the GPU never waits), the dead-latent bookkeeping skips the
  dead-latent term only while no latent can be dead, and a NaN at step s still stops training
  within ``CHECK_EVERY_STEPS`` steps, keeping only good weights;
* ``saesuite train`` does not import torchvision (164 MiB, 3 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import saesuite.sae.train as train_module
from saesuite.cache.planted import write_array_cache
from saesuite.cache.reader import ActivationCache
from saesuite.errors import TrainingError
from saesuite.sae.config import TrainConfig
from saesuite.sae.dead import DeadLatents
from saesuite.sae.encoder import Encoding, sparse_backward_pays
from saesuite.sae.model import SAE
from saesuite.sae.trainer import Trainer
from saesuite.sae.variants import TopK, decode_sparse

SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=512, dead_window_samples=2048,
             device="cpu", b_dec_init="mean")


def random_sae(d, F, k, seed=0):
    sae = SAE(d, F, TopK(k))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return sae


@pytest.mark.parametrize("sparse", [True, False])
def test_the_sparse_encoder_gradient_equals_the_dense_one(sparse):
    """TopK's code and an AuxK-like second set of entries, differentiated at their entries alone, against
    float64 autograd through the whole pre-activation matrix."""
    d, F, k, B = 12, 80, 5, 9
    sae = random_sae(d, F, k)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, d, generator=g).requires_grad_()
    target = torch.randn(B, d, generator=g)
    aux = torch.randint(0, F, (B, 7), generator=g)

    def loss_of(values, aux_values, W_dec, b_dec, indices):
        x_hat = decode_sparse(torch.relu(values), indices, W_dec) + b_dec
        return (x_hat - target.to(x_hat.dtype)).pow(2).mean() + (aux_values ** 2).sum()

    enc = Encoding(x, sae.b_dec, sae.W_enc, sae.b_enc, sparse=sparse)
    indices = enc.pre.topk(k, dim=-1).indices
    loss_of(enc.at(indices), enc.at(aux), sae.W_dec, sae.b_dec, indices).backward()
    ours = {"x": x.grad, **{n: p.grad for n, p in sae.named_parameters()}}
    assert sae.W_enc.grad.stride() == sae.W_enc.stride()  # handed back in the parameter's own layout

    p64 = {n: p.detach().double().requires_grad_() for n, p in sae.named_parameters()}
    x64 = x.detach().double().requires_grad_()
    pre = (x64 - p64["b_dec"]) @ p64["W_enc"] + p64["b_enc"]
    loss_of(pre.gather(1, indices), pre.gather(1, aux), p64["W_dec"], p64["b_dec"], indices).backward()
    want = {"x": x64.grad, **{n: p.grad for n, p in p64.items()}}
    for name, grad in ours.items():
        torch.testing.assert_close(grad.double(), want[name], rtol=1e-5, atol=1e-5, msg=name)


def test_the_sparse_backward_is_used_where_it_pays():
    assert sparse_backward_pays(1024, 16384, 64) and sparse_backward_pays(1024, 16384, 512)  # TopK, AuxK
    assert not sparse_backward_pays(64, 1024, 64) and not sparse_backward_pays(1024, 16384, None)
    assert SAE(1024, 16384, TopK(64)).encoding(torch.zeros(2, 1024)).sparse


def test_the_decoder_gradient_projection_is_g_minus_its_component_along_each_row():
    sae = random_sae(6, 40, 3)
    sae.normalize_decoder()
    grad = torch.randn(40, 6)
    sae.W_dec.grad = grad.clone()
    sae.remove_parallel_grad(rows=7)  # in chunks of 7 rows, the last one short
    rows = sae.W_dec.detach()
    assert torch.equal(sae.W_dec.grad, grad - (grad * rows).sum(1, keepdim=True) * rows)  # the same floats


def test_chunked_initial_statistics_equal_the_formulas_in_a_fraction_of_the_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.standard_t(3, size=(6000, 256)) + 1).astype(np.float32)
    cache = ActivationCache.open(write_array_cache(tmp_path / "c", x, n_shards=3))
    monkeypatch.setattr(train_module, "STATS_CHUNK_ROWS", 700)  # several chunks, the last one short
    cfg = TrainConfig(b_dec_init_samples=5000)
    tracemalloc.start()
    scale, b_dec = train_module.init_stats(cache, cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the float32 sample and a few float64 chunks; the vectorised float64 form held three float64 copies (6x the sample)
    assert peak < 5000 * 256 * 4 + 4 * 700 * 256 * 8

    idx = np.sort(np.random.default_rng([cfg.seed, 1]).choice(6000, size=5000, replace=False))
    sample = x[idx].astype(np.float64)
    assert scale == pytest.approx(np.sqrt(256) / np.linalg.norm(sample, axis=1).mean(), rel=1e-12)
    sample *= scale
    median = sample.mean(0)  # Weiszfeld, vectorised, as the formula reads
    for _ in range(100):
        dist = np.maximum(np.linalg.norm(sample - median, axis=1), 1e-12)
        new = (sample / dist[:, None]).sum(0) / (1 / dist).sum()
        done = np.linalg.norm(new - median) <= 1e-7 * max(1.0, np.linalg.norm(median))
        median = new
        if done:
            break
    np.testing.assert_allclose(b_dec, median, rtol=1e-9, atol=1e-9)
    mean = train_module.init_stats(cache, TrainConfig(b_dec_init_samples=5000, b_dec_init="mean"))[1]
    np.testing.assert_allclose(mean, sample.mean(0), rtol=1e-12, atol=1e-12)


class HostRead(AssertionError):
    pass


@pytest.fixture
def no_host_reads(monkeypatch):
    """Every Python-level read of a tensor on the host (``.item()``, ``bool()``, ``int()``, ``.tolist()``,
    boolean-mask indexing, ``nonzero``) raises while ``active`` is set: each is a sync on a GPU."""
    active = {"on": False}

    def guard(name, original):
        def method(self, *args, **kwargs):
            if active["on"]:
                raise HostRead(f"Tensor.{name} read the device on the host")
            return original(self, *args, **kwargs)
        return method

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, guard(name, getattr(torch.Tensor, name)))
    getitem = torch.Tensor.__getitem__

    def checked_getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if active["on"] and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise HostRead("boolean-mask indexing reads the device on the host")
        return getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", checked_getitem)
    return active


@pytest.mark.parametrize("arch, method", [("topk", "auxk"), ("relu", "resample"), ("relu", "none")])
def test_a_step_reads_nothing_on_the_host(arch, method, no_host_reads):
    """Through its warm-ups, logged steps and the dead-latent term (latents die after 2 steps here);
    only :meth:`Trainer.check` reads the device."""
    d = 16
    cfg = TrainConfig(architecture=arch, k=4 if arch == "topk" else None, expansion=8, batch_size=32, samples=32 * 40,
                      log_every=3, dead_latent_method=method, **{**SMALL, "dead_window_samples": 64})
    trainer = Trainer(cfg, __import__("pathlib").Path("unused"), d, np.zeros(d), torch.device("cpu"))
    x = torch.randn(32, d, generator=torch.Generator().manual_seed(0)) * 4
    for step in range(12):
        no_host_reads["on"] = True
        trainer.step(x, step)
        no_host_reads["on"] = False
        if step % 4 == 3:
            trainer.check()
    no_host_reads["on"] = False
    assert [r["step"] for r in trainer.records] == [0, 3, 6, 9]
    if method == "auxk":
        assert trainer.dead.samples_before_any_dead <= 0 and any(r["dead"] > 0 and r["auxk"] > 0 for r in trainer.records)


def test_the_dead_latent_term_is_skipped_only_while_no_latent_can_be_dead():
    """Random firing, clocks read on the host now and then: whenever a latent is dead, the host's bound
    allows the term; and AuxK is zero whenever none is."""
    F, B = 30, 8
    cfg = TrainConfig(architecture="topk", k=2, batch_size=B, dead_window_samples=5 * B, auxk_k=4)
    dead = DeadLatents(cfg, F, torch.device("cpu"))
    sae = random_sae(4, F, 2)
    rng = np.random.default_rng(0)
    x = torch.randn(B, 4)
    seen = {"dead": 0, "skipped": 0}
    for step in range(300):
        p = 0.05 + 0.9 * (step // 50 % 2)  # quiet phases (latents die) and busy ones (they revive)
        dead.after_step(step, B, torch.from_numpy(rng.random(F) < p), sae, None)
        if rng.random() < 0.2:
            dead.look()
        any_dead = bool(dead.mask().any())
        terms = dead.terms(sae, sae.encoding(x), x, torch.zeros(B, 4), torch.zeros(B, 4))
        assert terms or not any_dead  # never skipped while a latent is dead
        if terms and not any_dead:
            assert terms[0].loss.item() == 0.0
        seen["dead"] += any_dead
        seen["skipped"] += not terms
    assert seen["dead"] > 20 and seen["skipped"] > 20


def test_a_nan_at_step_s_stops_training_within_the_check_interval_keeping_good_weights(tmp_path, monkeypatch):
    import saesuite.sae.trainer as trainer_module

    x = np.random.default_rng(1).normal(size=(256, 8)).astype(np.float32)
    cache = write_array_cache(tmp_path / "c", x, n_shards=1)
    monkeypatch.setattr(train_module, "CHECK_EVERY_STEPS", 8)
    normal_lr = trainer_module.lr_at
    monkeypatch.setattr(trainer_module, "lr_at", lambda step, cfg: 1e30 if step >= 20 else normal_lr(step, cfg))
    steps = []
    step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, x, s: (steps.append(s), step(self, x, s))[1])
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 100, grad_clip_norm=1e30, checkpoint_every_steps=16,
                      log_every=1, **SMALL)
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step 21 .*last good checkpoint \(step 16\)"):
        train_module.train_sae(cache, tmp_path / "sae", cfg)
    assert max(steps) < 21 + 8  # caught at the next check
    assert not (tmp_path / "sae" / "sae_weights.safetensors").exists()
    state = torch.load(tmp_path / "sae" / train_module.CHECKPOINT, weights_only=False)
    assert state["step"] == 16 and all(torch.isfinite(v).all() for v in state["trainers"][0]["sae"].values())
    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(21))  # the failed step and those after it are not logged


def test_saesuite_train_does_not_import_torchvision(tmp_path):
    x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    cache = write_array_cache(tmp_path / "c", x, n_shards=1)
    script = ("import sys\nfrom saesuite.cli import main\n"
              f"main(['train', {str(cache)!r}, {str(tmp_path / 'sae')!r}, '--samples', '256', '--batch-size', '64', "
              "'--expansion', '2', '--device', 'cpu'])\n"
              "print(sorted(m for m in ('torchvision', 'open_clip', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert (tmp_path / "sae" / "sae_weights.safetensors").exists()
    assert out.strip().splitlines()[-1] == "[]"
