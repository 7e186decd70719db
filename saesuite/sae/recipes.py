"""Named training recipes: sets of :class:`saesuite.sae.train.TrainConfig` values that belong together.

A config names one with ``recipe:``; the values it sets explicitly win over the recipe's.

* ``modern`` (the defaults of ``TrainConfig``): plain MSE on inputs scaled to mean norm
  ``sqrt(d)``, ``b_dec`` at the geometric median, ``W_enc = c * W_dec^T``, linear lr warm-up and
  decay over the last 20%, L1 warm-up, gradient clipping, resampling (ReLU) or AuxK (TopK).
* ``fry2024``: the baseline's own objective and schedule, transcribed from Hugo Fry's ViT SAE
  training code (HugoFry/mats_sae_training_for_ViTs: ``sae_training/sparse_autoencoder.py``,
  ``train_sae_on_vision_transformer.py``, ``training_sae_on_ViT.py``): reconstruction
  ``mean (x_hat - x)^2 / ||x||_2``, L1 ``lambda * mean_b sum_j f_j``, unit decoder rows with the
  parallel gradient removed, ``b_dec`` at the mean, Kaiming-uniform encoder, constant lr after 500
  warm-up steps of 1,024 samples (``constantwithwarmup``), no L1 warm-up, no gradient clipping,
  no input scaling, ghost grads on latents silent for 64 steps (``dead_feature_window``), no
  resampling. Its ViT-L/14 run used expansion 64, lr 4e-4, lambda 8e-5, batch 1024 and
  2,621,440 samples: those are run settings, which the paper config gives beside the recipe.
  Two details differ: its scheduler steps before the optimiser, so its warm-up is one step
  shorter, and it counts "silent" in forward passes, this suite in samples (64 x 1024).
"""

from __future__ import annotations

from saesuite.errors import ConfigError

RECIPES: dict[str, dict] = {
    "modern": {},
    "fry2024": {
        "reconstruction": "input_norm_mse",
        "normalize_activations": False,
        "b_dec_init": "mean",
        "encoder_init": "kaiming_uniform",
        "lr_warmup_samples": 500 * 1024,
        "lr_decay_fraction": 0.0,
        "l1_warmup_samples": 0,
        "grad_clip_norm": None,
        "dead_latent_method": "ghost_grads",
        "dead_window_samples": 64 * 1024,
        "adam_betas": (0.9, 0.999),
    },
}


def recipe_values(name: str) -> dict:
    """The TrainConfig values recipe ``name`` sets."""
    if name not in RECIPES:
        raise ConfigError(f"recipe {name!r} is not known; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
