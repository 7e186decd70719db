"""The training objectives against independent transcriptions of their papers' and codes' formulas.

The baseline recipe (``fry2024``) is checked through the trainer's own step on a fixed batch: its
loss and every parameter's gradient must equal a float64 transcription of Hugo Fry's
``SparseAutoencoder.forward`` (HugoFry/mats_sae_training_for_ViTs, sae_training/sparse_autoencoder.py):

    sae_in = x - b_dec;  pre = sae_in @ W_enc + b_enc;  f = relu(pre);  out = f @ W_dec + b_dec
    mse = mean_{b,i} (out - x)^2 / ||x||_2            (each sample's own, uncentred, norm)
    l1  = lambda * mean_b sum_j |f_j|
    ghost (dead latents D): g = exp(pre[:, D]) @ W_dec[D];  r = x - out
         g *= (||r|| / (1e-6 + 2 ||g||)).detach()
         gm = (g - r.detach())^2 / ||r.detach()||_2;  ghost = mean( (mse_el / (gm + 1e-6)).detach() * gm )
    loss = mse + l1 + ghost

and the decoder gradient with its component along each (unit) row removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from saesuite.sae.recipes import RECIPES
from saesuite.sae.config import TrainConfig
from saesuite.sae.trainer import Trainer

D, F, B, LAMBDA = 8, 32, 16, 3e-2


def fry_loss(params: dict[str, torch.Tensor], x: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """Fry's forward, transcribed line by line in float64."""
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    pre = (x - b_dec) @ W_enc + b_enc
    f = torch.relu(pre)
    out = f @ W_dec + b_dec
    mse_el = (out - x) ** 2 / (x**2).sum(dim=-1, keepdim=True).sqrt()
    residual = x - out
    ghost_out = torch.exp(pre[:, dead]) @ W_dec[dead, :]
    factor = residual.norm(dim=-1) / (1e-6 + ghost_out.norm(dim=-1) * 2)
    ghost_out = ghost_out * factor[:, None].detach()
    ghost_el = (ghost_out - residual.detach()) ** 2 / (residual.detach() ** 2).sum(dim=-1, keepdim=True).sqrt()
    ghost = ((mse_el / (ghost_el + 1e-6)).detach() * ghost_el).mean()
    return mse_el.mean() + LAMBDA * f.abs().sum(dim=1).mean() + ghost


def test_the_baseline_recipe_is_fry_2024_s_loss_and_gradients():
    cfg = TrainConfig.from_dict({"recipe": "fry2024", "expansion": F // D, "batch_size": B, "samples": B * 10,
                                 "l1_coefficient": LAMBDA, "lr": 1e-3, "log_every": 1})
    assert (cfg.reconstruction, cfg.dead_method, cfg.normalize_activations, cfg.grad_clip_norm) == (
        "input_norm_mse", "ghost_grads", False, None)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(B, D)) + 1.5).float()
    trainer = Trainer(cfg, Path("unused"), D, x.numpy().mean(0), torch.device("cpu"))
    with torch.no_grad():  # some latents fire, some dead ones have large pre-activations
        trainer.sae.b_enc.copy_(torch.from_numpy(rng.normal(scale=0.5, size=F)))
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::3] = True
    trainer.dead.since_fired[dead] = cfg.dead_window_samples
    trainer.dead.look()  # the clocks were set by hand: the host's bound on the first death follows them
    before = {k: v.detach().double().clone().requires_grad_(True) for k, v in trainer.sae.named_parameters()}

    step = cfg.lr_warmup_samples // B  # past the warm-up; the L1 coefficient is constant in this recipe
    trainer.step(x, step)
    (record,) = trainer.check()
    expected = fry_loss(before, x.double(), dead)
    expected.backward()
    assert record["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert record["ghost"] > 0 and record["l1_coefficient"] == pytest.approx(LAMBDA)
    for name, param in trainer.sae.named_parameters():
        want = before[name].grad
        if name == "W_dec":  # Fry's remove_gradient_parallel_to_decoder_directions
            rows = before[name].detach()
            want = want - (want * rows).sum(1, keepdim=True) * rows
        torch.testing.assert_close(param.grad.double(), want, rtol=2e-4, atol=1e-6, msg=name)


def test_recipe_values_are_defaults_that_explicit_values_override():
    assert TrainConfig.from_dict({}) == TrainConfig()
    fry = TrainConfig.from_dict({"recipe": "fry2024"})
    assert {k: getattr(fry, k) for k in RECIPES["fry2024"]} == {**RECIPES["fry2024"]}
    assert TrainConfig.from_dict({"recipe": "fry2024", "b_dec_init": "zeros"}).b_dec_init == "zeros"
    with pytest.raises(Exception, match="recipe 'fry' is not known"):
        TrainConfig.from_dict({"recipe": "fry"})
