"""Evaluation of caches no open_clip model made, rows of zeros, and the two label entropies (issue 13.7, 13.8).

Every number is checked against a direct numpy computation written here, or a known answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from saesuite.evaluate.alignment import random_unit_directions
from saesuite.cache.format import write_array_cache
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import SAE, save_sae
from saesuite.schema import validate

D, F = 6, 8
CLASSES = ["a", "b", "c"]


def synthetic_x(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows 0-2 all zeros, rows 3-4 too small for any latent to fire, then random rows; labels cycle over 3 classes."""
    x = rng.normal(size=(60, D))
    x[:3] = 0
    x[3:5] *= 1e-4
    return x.astype(np.float32), np.arange(60) % 3


def thresholded_sae(seed: int = 0) -> SAE:
    """Random weights, ``b_enc = -0.3`` (small inputs fire nothing), ``b_dec = 0`` (so x_hat = 0 where nothing fires)."""
    g = torch.Generator().manual_seed(seed)
    sae = SAE(D, F)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D, F, generator=g))
        sae.W_dec.copy_(torch.randn(F, D, generator=g) / D**0.5)
        sae.b_enc.fill_(-0.3)
        sae.b_dec.zero_()
    return sae


def numpy_code(sae_dir, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f, x_hat)`` from the saved file, by the contract's formula."""
    w = {k: v.astype(np.float64) for k, v in load_file(str(sae_dir / "sae_weights.safetensors")).items()}
    f = np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)
    return f, f @ w["W_dec"] + w["b_dec"]


def entropy(mass: np.ndarray) -> float:
    p = mass[mass > 0] / mass.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def user_cache(tmp_path_factory):
    """A user's own model: a cache whose model and hook open_clip does not have, evaluated with and without a dataset."""
    base = tmp_path_factory.mktemp("anycache")
    x, labels = synthetic_x(np.random.default_rng(0))
    meta = {"model": "my-model", "pretrained": None, "hook": "layer3.out", "dataset": "cifar10", "split": "test",
            "classes": CLASSES}
    write_array_cache(base / "cache", x, meta, labels=labels, n_shards=2)
    save_sae(thresholded_sae(), base / "sae", {"d_in": D, "d_sae": F, "architecture": "relu", "model": "my-model",
                                               "hook": "layer3.out"})
    return base, x.astype(np.float64), labels


def test_a_cache_no_open_clip_model_made_is_evaluated_with_reasons_for_skips(user_cache, fixture_spec, tmp_path):
    base, x, labels = user_cache
    # with a dataset too: the fidelity test needs the backbone, so it is skipped, not attempted
    m = evaluate_sae(base / "sae", base / "cache", tmp_path, EvalConfig(chunk_rows=7, top_k=3), fixture_spec)
    validate(m, "metrics")
    for metric in ("neuron_alignment", "text_naming", "fidelity"):
        assert "'my-model' is not an open_clip model" in m["skipped"][metric]
    assert m["fidelity"] is None and m["text_naming"] is None
    assert m["alignment"]["neurons"] is None and m["alignment"]["chance"]["neuron_mean"] is None
    table = pd.read_csv(tmp_path / "latents.csv")
    assert "encoder_neuron_alignment" not in table and "text_names" not in table
    f, x_hat = numpy_code(base / "sae", x)
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert m["explained_variance"] == pytest.approx(ev, rel=1e-5)
    assert m["l0"] == pytest.approx((f > 0).sum(1).mean())


def test_an_unknown_hook_on_an_open_clip_model_skips_the_backbone_too(user_cache, tmp_path):
    base, x, labels = user_cache
    meta = {"model": "tiny-ViT", "pretrained": None, "hook": "my_site", "dataset": "cifar10", "split": "test",
            "classes": CLASSES}
    write_array_cache(tmp_path / "cache", x.astype(np.float32), meta, labels=labels)
    save_sae(thresholded_sae(), tmp_path / "sae", {"d_in": D, "d_sae": F, "architecture": "relu", "model": "tiny-ViT",
                                                   "hook": "my_site"})
    m = evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval")
    assert "hook 'my_site' is not an open_clip hook site" in m["skipped"]["neuron_alignment"]


def test_rows_of_zeros_and_rows_where_nothing_fires_are_left_out_of_undefined_scores_and_counted(user_cache, tmp_path):
    base, x, _ = user_cache
    m = evaluate_sae(base / "sae", base / "cache", tmp_path, EvalConfig(chunk_rows=7))
    f, x_hat = numpy_code(base / "sae", x)
    nx, nh = np.linalg.norm(x, axis=1), np.linalg.norm(x_hat, axis=1)
    silent = (f > 0).sum(1) == 0
    assert silent[:5].all() and m["rows_without_active_latent"] == silent.sum() >= 5  # the zero rows and the tiny ones
    assert m["zero_input_rows"] == 3
    cos_ok, ratio_ok = (nx > 0) & (nh > 0), nx > 0
    assert m["undefined_rows"] == {"cosine_similarity": int((~cos_ok).sum()), "l2_ratio": 3}
    assert (~cos_ok).sum() >= 5  # x_hat = b_dec = 0 wherever nothing fires
    cos = (x * x_hat).sum(1)[cos_ok] / (nx * nh)[cos_ok]
    assert m["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-6)
    assert m["l2_ratio"] == pytest.approx((nh[ratio_ok] / nx[ratio_ok]).mean(), rel=1e-6)
    assert m["l2_norm_in"] == pytest.approx(nx.mean(), rel=1e-6)  # defined on every row: all rows count
    assert m["n"] == len(x)


def test_a_cache_of_zeros_gives_null_scores_not_a_crash(tmp_path):
    meta = {"model": "synthetic", "pretrained": None, "hook": "none", "dataset": "none", "split": "test", "classes": []}
    write_array_cache(tmp_path / "cache", np.zeros((9, D), np.float32), meta)
    save_sae(thresholded_sae(), tmp_path / "sae", {"d_in": D, "d_sae": F, "architecture": "relu", "model": "synthetic",
                                                   "hook": "none"})
    m = evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval")
    validate(m, "metrics")
    assert m["cosine_similarity"] is None and m["l2_ratio"] is None
    assert m["explained_variance"] is None and m["normalized_mse"] is None  # inputs that do not vary
    assert m["undefined_rows"] == {"cosine_similarity": 9, "l2_ratio": 9} and m["zero_input_rows"] == 9
    assert m["l0"] == 0 and m["rows_without_active_latent"] == 9 and m["mse"] == 0
    assert m["label_entropy"]["mean"] is None and m["label_entropy_firing"]["mean"] is None


def test_label_entropies_known_answer(tmp_path):
    """Latent 0 = relu(x_0) fires once on class 0 at 3 and three times on class 1 at 1:
    activation-weighted shares (1/2, 1/2) -> ln 2; firing shares (1/4, 3/4)."""
    x = np.array([[3, 0], [1, 0], [1, 0], [1, 0], [0, 2], [0, 5]], np.float32)
    labels = np.array([0, 1, 1, 1, 2, 2])
    meta = {"model": "toy", "pretrained": None, "hook": "toy", "dataset": "toy", "split": "test", "classes": CLASSES}
    write_array_cache(tmp_path / "cache", x, meta, labels=labels)
    sae = SAE(2, 4)  # f = [relu(x), relu(-x)]
    eye = torch.eye(2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    save_sae(sae, tmp_path / "sae", {"d_in": 2, "d_sae": 4, "architecture": "relu", "model": "toy", "hook": "toy"})
    m = evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval")
    table = pd.read_csv(tmp_path / "eval" / "latents.csv")
    firing = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    assert table["label_entropy"][0] == pytest.approx(np.log(2))
    assert table["label_entropy_firing"][0] == pytest.approx(firing)
    assert table["label_entropy"][1] == 0 == table["label_entropy_firing"][1]  # only class 2
    assert table["label_entropy"][2:].isna().all() and table["label_entropy_firing"][2:].isna().all()  # never fire
    assert m["label_entropy"]["weighting"] == "activation" and m["label_entropy_firing"]["weighting"] == "firing count"
    assert m["label_entropy"]["mean"] == pytest.approx(np.log(2) / 2)
    assert m["label_entropy_firing"]["mean"] == pytest.approx(firing / 2)
    npz = np.load(tmp_path / "eval" / "latents.npz")
    np.testing.assert_allclose(npz["label_entropy_firing"], table["label_entropy_firing"], equal_nan=True)


def test_label_entropies_match_numpy_on_random_data(user_cache, tmp_path):
    base, x, labels = user_cache
    m = evaluate_sae(base / "sae", base / "cache", tmp_path, EvalConfig(chunk_rows=11))
    table = pd.read_csv(tmp_path / "latents.csv")
    exact = np.load(tmp_path / "latents.npz")["label_entropy_firing"]  # the CSV keeps 8 digits
    f, _ = numpy_code(base / "sae", x)
    weighted, firing = [], []
    for i in range(F):
        if (f[:, i] > 0).any():
            weighted.append(entropy(np.bincount(labels, weights=f[:, i], minlength=3)))
            firing.append(entropy(np.bincount(labels, weights=(f[:, i] > 0).astype(float), minlength=3)))
            assert table["label_entropy"][i] == pytest.approx(weighted[-1], abs=1e-6)
            assert exact[i] == pytest.approx(firing[-1], abs=1e-12)
        else:
            assert np.isnan(exact[i]) and np.isnan(table["label_entropy_firing"][i])
    assert m["label_entropy"]["median"] == pytest.approx(np.median(weighted), abs=1e-6)
    assert m["label_entropy_firing"]["median"] == pytest.approx(np.median(firing), abs=1e-12)


def test_basis_chance_of_a_cache_without_backbone_matches_numpy(user_cache, tmp_path):
    base, _, _ = user_cache
    m = evaluate_sae(base / "sae", base / "cache", tmp_path, EvalConfig(chance_directions=500, chance_seed=3))
    u = random_unit_directions(500, D, 3).double().numpy()
    best = np.abs(u / np.linalg.norm(u, axis=1, keepdims=True)).max(1)
    chance = m["alignment"]["chance"]
    assert chance["directions"] == 500 and chance["seed"] == 3
    assert chance["basis_mean"] == pytest.approx(best.mean(), rel=1e-6)
    assert chance["basis_fraction_above"] == pytest.approx((best > 0.5).mean())


def test_device_auto_is_resolved_before_any_accumulator_is_made(user_cache, tmp_path):
    """device: auto (config/cifar10.yaml's) evaluates on the device it resolves to, with that device's metrics
    (torch itself has no device "auto")."""
    from saesuite.device import resolve_device

    base = user_cache[0]
    auto = evaluate_sae(base / "sae", base / "cache", tmp_path / "auto", EvalConfig(chunk_rows=7, device="auto"))
    resolved = EvalConfig(chunk_rows=7, device=str(resolve_device("auto")))
    assert auto == evaluate_sae(base / "sae", base / "cache", tmp_path / "resolved", resolved)
