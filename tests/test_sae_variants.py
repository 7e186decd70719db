"""SAE variants as types (saesuite.sae.variants): a third variant needs its class, one ``case`` and
the schema's enum, and nothing else.

:class:`JumpReLU` below is a variant this suite does not have, written as a library variant would be
(a frozen :class:`~saesuite.sae.variants.Variant` subclass). In the library, a new variant's one
``case`` goes in :func:`saesuite.sae.variants.variant_of`, the match that turns a config's
``architecture`` into a variant; a test cannot add a case to that match, so the fixture
``with_jumprelu`` puts a function with that one case in front of it (the same function every
caller reaches: TrainConfig, and cfg.json's reader). The JumpReLU SAE then trains, saves and loads
through the very API the real variants use, with no other change: the trainer takes its sparse
forward pass, its L1 term and its dead-latent method from the class, ``cfg.json`` its name.
The last test holds the three places together for the real variants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from saesuite.cache.planted import write_array_cache
from saesuite.cli import build_parser
from saesuite.errors import ConfigError
from saesuite.sae import variants
from saesuite.sae.config import TrainConfig
from saesuite.sae.encoder import Encoding
from saesuite.sae.model import load_sae
from saesuite.sae.train import train_sae
from saesuite.sae.variants import ARCHITECTURES, Code, Variant, variant_of

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.3


@dataclass(frozen=True)
class JumpReLU(Variant):
    """``f = pre * (pre > threshold)``: a latent fires only above its threshold (here one, fixed)."""

    threshold: float = THRESHOLD
    name: ClassVar[str] = "jumprelu"
    saelens_name: ClassVar[str] = "jumprelu"
    l1_penalty: ClassVar[bool] = True
    default_dead_method: ClassVar[str] = "resample"

    def activation(self, pre: Tensor) -> Tensor:
        return pre * (pre > self.threshold)

    def training_code(self, enc: Encoding, W_dec: Tensor, b_dec: Tensor) -> Code:
        f = self.activation(enc.dense())
        return Code(torch.addmm(b_dec, f, W_dec), f, f.amax(0) > 0)

    def encoder_scale(self, d: int, d_sae: int) -> float:
        return 2 * d / d_sae


@pytest.fixture
def with_jumprelu(monkeypatch):
    """The library's match with JumpReLU's one case added in front."""
    library_match = variants.variant_of

    def variant_of_with_jumprelu(architecture: str, k: int | None = None) -> Variant:
        match architecture:
            case JumpReLU.name:
                return JumpReLU()
            case _:
                return library_match(architecture, k)

    monkeypatch.setattr(variants, "variant_of", variant_of_with_jumprelu)


def test_without_its_case_a_variant_is_unknown():
    with pytest.raises(ConfigError, match="architecture 'jumprelu' is not known; choose one of relu, topk"):
        TrainConfig(architecture="jumprelu")


def test_a_variant_with_its_one_case_trains_saves_and_loads(with_jumprelu, tmp_path):
    x = np.random.default_rng(0).normal(size=(512, 8)).astype(np.float32) + 1.0
    cache = write_array_cache(tmp_path / "c", x, n_shards=2)
    cfg = TrainConfig(architecture="jumprelu", expansion=4, batch_size=64, samples=64 * 30, lr=1e-3, log_every=1,
                      l1_coefficient=1e-2, lr_warmup_samples=128, l1_warmup_samples=256, b_dec_init_samples=256,
                      b_dec_init="mean", device="cpu")
    assert cfg.variant == JumpReLU() and cfg.dead_method == "resample"  # the class's default
    sae_cfg = train_sae(cache, tmp_path / "sae", cfg)
    assert sae_cfg["architecture"] == "jumprelu" and sae_cfg["dead_latent_method_used"] == "resample"

    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    for r in log:  # the loss has the L1 term (l1_penalty) and no dead-latent term
        assert r["loss"] == pytest.approx(r["mse"] + r["l1_coefficient"] * r["l1"], rel=1e-5)
        assert r["auxk"] == r["ghost"] == 0.0

    sae, _ = load_sae(tmp_path / "sae")  # cfg.json's reader knows it by its name
    assert sae.variant == JumpReLU()
    w = {name: p.detach().numpy().astype(np.float64) for name, p in sae.named_parameters()}
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]  # the saved weights act on raw inputs
    expected = np.where(pre > THRESHOLD, pre, 0.0)
    with torch.no_grad():
        f = sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(f, expected, rtol=1e-4, atol=1e-4)
    assert (f > 0).any() and not ((f > 0) & (f <= THRESHOLD - 1e-4)).any()  # no code below the threshold


def test_every_variant_has_its_case_its_schema_entry_and_its_cli_choice():
    for name in ARCHITECTURES:
        assert variant_of(name, k=1).name == name
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    assert schema["$defs"]["trainOptions"]["properties"]["architecture"]["enum"] == list(ARCHITECTURES)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert tuple(train._option_string_actions["--architecture"].choices) == ARCHITECTURES
