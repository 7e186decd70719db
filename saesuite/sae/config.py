"""Training settings: :class:`TrainConfig`, every knob of a run, and the schedules it defines.

A config section (``train:`` and each sweep entry) becomes a TrainConfig through
:meth:`TrainConfig.from_dict`: the named recipe's values (:mod:`saesuite.sae.recipes`), then the
section's own values over them. ``architecture`` and ``k`` name the SAE's variant
(:mod:`saesuite.sae.variants`), checked when the config is made.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

from saesuite.errors import ConfigError
from saesuite.sae.objectives import RECONSTRUCTIONS
from saesuite.sae.recipes import recipe_values
from saesuite.sae import variants

DEAD_METHODS = ("auto", "none", "resample", "auxk", "ghost_grads")
B_DEC_INITS = ("geometric_median", "mean", "zeros")
ENCODER_INITS = ("scaled_transpose", "kaiming_uniform")
# Options that define the batch stream: every SAE trained in one pass must share them.
SHARED = ("batch_size", "samples", "seed", "device", "dtype", "shuffle", "shuffle_block_rows",
          "shuffle_window_blocks", "normalize_activations", "b_dec_init", "b_dec_init_samples",
          "checkpoint_every_steps", "log_every")
# Run guards, not hyper-parameters: a run they do not stop ends with the same weights whatever
# their values, so they are left out of cfg.json and of the checkpoint's fingerprint.
GUARDS = ("divergence_max_relative_error",)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; defaults are the paper's (the seed's recipe)."""

    recipe: str = "modern"  # a name of saesuite.sae.recipes.RECIPES: the values below it changes
    architecture: str = "relu"
    expansion: int = 16
    k: int | None = None
    l1_coefficient: float = 8e-5
    reconstruction: str = "mse"
    encoder_init: str = "scaled_transpose"
    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 1024
    samples: int = 2_621_440
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    normalize_activations: bool = True
    b_dec_init: str = "geometric_median"
    b_dec_init_samples: int = 65_536
    lr_warmup_samples: int = 65_536
    lr_decay_fraction: float = 0.2
    l1_warmup_samples: int = 131_072
    grad_clip_norm: float | None = 1.0
    dead_window_samples: int = 262_144
    dead_latent_method: str = "auto"
    resample_every_samples: int = 524_288
    resample_until_fraction: float = 0.6
    resample_pool_samples: int = 65_536
    auxk_k: int | None = None
    auxk_coefficient: float = 1 / 32
    shuffle: str = "rows"
    shuffle_block_rows: int = 4096
    shuffle_window_blocks: int = 64
    checkpoint_every_steps: int = 256
    log_every: int = 10
    # stop when, after the warm-ups, sum ||x_hat - x||^2 / sum ||x||^2 over a batch exceeds this
    # (a healthy SAE stays near or below 1; None: never)
    divergence_max_relative_error: float | None = 1000.0

    def __post_init__(self):
        variants.variant_of(self.architecture, self.k)  # ConfigError: an unknown architecture, or TopK without k
        if self.dead_latent_method not in DEAD_METHODS:
            raise ConfigError(f"dead_latent_method {self.dead_latent_method!r}: choose one of {', '.join(DEAD_METHODS)}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(f"reconstruction {self.reconstruction!r}: choose one of {', '.join(RECONSTRUCTIONS)}")
        if self.encoder_init not in ENCODER_INITS:
            raise ConfigError(f"encoder_init {self.encoder_init!r}: choose one of {', '.join(ENCODER_INITS)}")
        if self.b_dec_init not in B_DEC_INITS:
            raise ConfigError(f"b_dec_init {self.b_dec_init!r}: choose one of {', '.join(B_DEC_INITS)}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype {self.dtype!r}: choose float32 or bfloat16 (bf16 autocast, CUDA only)")
        if min(self.batch_size, self.samples, self.expansion) < 1:
            raise ConfigError("batch_size, samples and expansion must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        if self.divergence_max_relative_error is not None and not self.divergence_max_relative_error > 0:
            raise ConfigError(f"divergence_max_relative_error must be positive or null; got {self.divergence_max_relative_error}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The recipe's values (``values["recipe"]``, default ``modern``), then ``values`` over them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        values = {**recipe_values(values.get("recipe", "modern")), **values}
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)

    def sweep(self, options: dict, entries: list[dict]) -> list[tuple[str, "TrainConfig"]]:
        """``(name, config)`` of each sweep entry: the entry's values over ``options`` (the section this
        config was made from), the entry's ``name`` naming its folder."""
        return [(e["name"], self.from_dict({**options, **{k: v for k, v in e.items() if k != "name"}})) for e in entries]

    @property
    def steps(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    @property
    def warmup_steps(self) -> int:
        """Steps of the lr and L1 warm-ups; the divergence check starts after them."""
        return max(self.lr_warmup_samples, self.l1_warmup_samples) // self.batch_size

    def hyperparameters(self) -> dict:
        """Every option but the run guards (:data:`GUARDS`): what ``cfg.json`` records."""
        return {k: v for k, v in asdict(self).items() if k not in GUARDS}

    @property
    def variant(self) -> variants.Variant:
        """The SAE variant that ``architecture`` and ``k`` name."""
        return variants.variant_of(self.architecture, self.k)

    @property
    def dead_method(self) -> str:
        """The dead-latent method used: ``dead_latent_method``, or for ``auto`` the variant's default."""
        if self.dead_latent_method != "auto":
            return self.dead_latent_method
        return self.variant.default_dead_method


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, flat, linear decay to 0 over the last fraction."""
    warm = max(1, cfg.lr_warmup_samples // cfg.batch_size)
    total = cfg.steps
    decay_start = int(total * (1 - cfg.lr_decay_fraction))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if step >= decay_start and total > decay_start:
        return cfg.lr * (total - step) / (total - decay_start)
    return cfg.lr


def l1_at(step: int, cfg: TrainConfig) -> float:
    """L1 coefficient at ``step``: linear warm-up to ``l1_coefficient``."""
    warm = max(1, cfg.l1_warmup_samples // cfg.batch_size)
    return cfg.l1_coefficient * min(1.0, (step + 1) / warm)
