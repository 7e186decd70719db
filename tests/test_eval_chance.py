"""Chance levels of the evaluation (issue 13.5): alignment of random unit directions, what the neurons are, 1/classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saesuite.evaluate.alignment import chance_alignment, random_unit_directions
from saesuite.models.backbones import load_backbone
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import SAE, save_sae
from saesuite.schema import validate


def test_random_directions_are_unit_and_seeded():
    u = random_unit_directions(100, 5, seed=1)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(100))
    torch.testing.assert_close(u, random_unit_directions(100, 5, seed=1), rtol=0, atol=0)
    assert not torch.equal(u, random_unit_directions(100, 5, seed=2))


def test_basis_chance_in_two_dimensions_has_its_closed_form():
    """u = (cos t, sin t), t uniform: E max(|cos t|, |sin t|) = 2 sqrt(2) / pi, and for a threshold
    a > 1/sqrt(2), P(max > a) = 4 arccos(a) / pi."""
    c = chance_alignment(40_000, 2, seed=0, threshold=0.9)
    assert c["basis_mean"] == pytest.approx(2 * np.sqrt(2) / np.pi, abs=0.003)  # sd of the mean: 0.0004
    assert c["basis_fraction_above"] == pytest.approx(4 * np.arccos(0.9) / np.pi, abs=0.01)  # sd: 0.0025
    assert c["neuron_mean"] is None and c["neuron_fraction_above"] is None


def test_neuron_chance_against_the_standard_basis_equals_the_basis_chance():
    c = chance_alignment(300, 7, seed=4, threshold=0.5, neurons=torch.eye(7) * 3.0)  # neuron norms do not matter
    assert c["neuron_mean"] == pytest.approx(c["basis_mean"], rel=1e-6)
    assert c["neuron_fraction_above"] == c["basis_fraction_above"]


@pytest.mark.parametrize(("model", "hook"), [("tiny-ViT", "resid_cls:-2"), ("tiny-RN", "attnpool")])
def test_alignment_chance_and_neurons_in_the_evaluation(model, hook, caches, tmp_path):
    """Beside the SAE's alignment, the same statistic for random directions against the same neurons (numpy here)."""
    backbone = load_backbone(model, None, hook)
    torch.manual_seed(0)
    sae = SAE(backbone.d, 96)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.normal_()
    save_sae(sae, tmp_path / "sae", {"d_in": backbone.d, "d_sae": 96, "architecture": "relu", "model": model,
                                     "hook": str(backbone.hook) if model == "tiny-ViT" else hook})
    m = evaluate_sae(tmp_path / "sae", caches[(model, "test")], tmp_path / "eval", EvalConfig(chance_directions=700))
    validate(m, "metrics")
    a = m["alignment"]
    if model == "tiny-ViT":
        proj = backbone.visual.transformer.resblocks[2].mlp.c_proj
        assert a["neurons"] == "visual.transformer.resblocks[2].mlp.c_proj"
        assert a["neurons_description"].startswith(f"the {proj.in_features} MLP neurons of block 2")
    else:
        proj = backbone.visual.attnpool.c_proj
        assert a["neurons"] == "visual.attnpool.c_proj"
        assert f"the {proj.in_features} inputs of visual.attnpool.c_proj" in a["neurons_description"]
        assert "not MLP neurons" in a["neurons_description"]
    assert a["n_neurons"] == proj.in_features
    neurons = proj.weight.detach().double().numpy().T  # [M, d]: one output direction per unit
    neurons /= np.linalg.norm(neurons, axis=1, keepdims=True)
    u = random_unit_directions(700, backbone.d, 0).double().numpy()
    best = np.abs(u @ neurons.T).max(1)
    assert a["chance"]["neuron_mean"] == pytest.approx(best.mean(), rel=1e-5)
    assert a["chance"]["neuron_fraction_above"] == pytest.approx((best > a["threshold"]).mean())
    assert a["chance"]["basis_mean"] == pytest.approx(np.abs(u).max(1).mean(), rel=1e-5)
    assert m["skipped"]["neuron_alignment"] is None
    assert (m["skipped"]["text_naming"] is None) == (model == "tiny-RN")  # attnpool only: CLIP's joint space


def test_zero_shot_fidelity_reports_chance_as_one_over_classes(caches, fixture_spec, tmp_path):
    cache_dir = caches[("tiny-RN", "test")]
    torch.manual_seed(0)
    sae = SAE(64, 128)
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.1)
        sae.W_dec.normal_(0, 0.1)
    cfg = {"d_in": 64, "d_sae": 128, "architecture": "relu", "model": "tiny-RN", "hook": "attnpool"}
    save_sae(sae, tmp_path / "sae", cfg)
    m = evaluate_sae(tmp_path / "sae", cache_dir, tmp_path / "eval", EvalConfig(fidelity_images=20), fixture_spec)
    assert len(m["classes"]) == 10 and m["fidelity"]["chance_accuracy"] == 0.1
    assert m["skipped"] == {"neuron_alignment": None, "text_naming": None, "fidelity": None}
    no_data = evaluate_sae(tmp_path / "sae", cache_dir, tmp_path / "eval2")
    assert no_data["fidelity"] is None and no_data["skipped"]["fidelity"].startswith("no dataset given")
