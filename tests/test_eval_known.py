"""A hand-built SAE on a hand-made cache, where every metric has a known answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from saesuite.files import sha256_file
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import SAE, save_sae

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
D, N = 64, 40


def write_cache(path, x: np.ndarray, labels: np.ndarray, *, model="tiny-ViT", hook="resid_cls:2", bad_rows=()) -> None:
    """A cache directory in the contract's layout holding ``x [n, d]`` (two shards)."""
    path.mkdir(parents=True, exist_ok=True)
    half = len(x) // 2
    shards = []
    for i, part in enumerate((x[:half], x[half:])):
        name = f"shard-{i:05d}.npy"
        np.save(path / name, part.astype(np.float32))
        shards.append({"file": name, "rows": len(part), "sha256": sha256_file(path / name)})
    np.save(path / "labels.npy", labels.astype(np.int64))
    manifest = {
        "n": len(x), "d": x.shape[1], "dtype": "float32", "model": model, "pretrained": None, "init_seed": 0,
        "hook": hook, "dataset": "cifar10", "split": "test", "classes": CLASSES, "shards": shards,
        "n_bad": len(bad_rows), "bad_rows": [{"row": int(r), "path": f"img{r}", "error": "unreadable"} for r in bad_rows],
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def split_sae(d: int, model="tiny-ViT", hook="resid_cls:2") -> tuple[SAE, dict]:
    """``W_enc = [I, -I]``, ``W_dec = [I; -I]``, zero biases: ``f = [relu(x), relu(-x)]``, a perfect reconstruction."""
    sae = SAE(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae, {"d_in": d, "d_sae": 2 * d, "architecture": "relu", "model": model, "hook": hook}


def known_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row i is ``a_i e_{c_i}`` with ``c_i = i % 4`` and ``a_i = 1 + i / 10`` (growing with i)."""
    labels = np.arange(N) % 4
    a = 1 + np.arange(N) / 10
    x = np.zeros((N, D))
    x[np.arange(N), labels] = a
    return x, labels, a


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    base = tmp_path_factory.mktemp("known")
    x, labels, a = known_inputs()
    write_cache(base / "cache", x, labels)
    sae, cfg = split_sae(D)
    save_sae(sae, base / "sae", cfg)
    metrics = evaluate_sae(base / "sae", base / "cache", base / "eval", EvalConfig(chunk_rows=7, top_k=3, top_images=5))
    return base, metrics, pd.read_csv(base / "eval" / "latents.csv"), np.load(base / "eval" / "inputs.npz"), a


def test_reconstruction_of_a_perfect_sae(known):
    _, m, _, _, a = known
    assert m["mse"] == 0 and m["normalized_mse"] == 0 and m["explained_variance"] == 1
    assert m["cosine_similarity"] == pytest.approx(1) and m["l2_ratio"] == pytest.approx(1)
    assert m["relative_reconstruction_bias"] == pytest.approx(1)
    assert m["l2_norm_in"] == pytest.approx(a.mean()) == m["l2_norm_out"]


def test_sparsity_known_answers(known):
    _, m, table, inputs, a = known
    F = 2 * D
    assert m["l0"] == 1 and m["l1"] == pytest.approx(a.mean())
    assert m["population_sparsity"] == pytest.approx(1 / F) == m["mean_lifetime_sparsity"]
    np.testing.assert_allclose(table["lifetime_sparsity"], [0.25] * 4 + [0] * (F - 4))
    assert m["dead_fraction"] == pytest.approx((F - 4) / F)
    assert m["dense_fraction"] == m["fraction_firing_above_10pct"] == m["fraction_firing_above_1pct"] == pytest.approx(4 / F)
    assert m["fraction_near_zero"] == pytest.approx((F - 1) / F)
    means = np.zeros(F)
    means[:4] = [a[np.arange(N) % 4 == c].sum() / N for c in range(4)]
    np.testing.assert_allclose(table["mean_activation"], means)
    q = np.quantile(means, [0, 0.1, 0.5, 0.9, 1])
    avg = m["average_activation"]
    np.testing.assert_allclose([avg["min"], avg["p10"], avg["median"], avg["p90"], avg["max"]], q)
    hist = m["feature_density_histogram"]
    assert hist["never_fire"] == F - 4 and sum(hist["counts"]) == 4
    edges = np.asarray(hist["log10_edges"])
    assert hist["counts"][int(np.searchsorted(edges, np.log10(0.25), side="right")) - 1] == 4
    # encoder columns e_j and -e_j: cosine -1 with their twin, 0 with everyone else
    assert m["mean_max_cosine_encoder"] == pytest.approx(0) and m["mean_max_cosine_decoder"] == pytest.approx(0)
    np.testing.assert_array_equal(inputs["l0"], np.ones(N))


def test_label_entropy_and_topk_known(known):
    base, m, table, inputs, a = known
    assert table["label_entropy"][:4].tolist() == [0, 0, 0, 0] and table["label_entropy"][4:].isna().all()
    assert table["top_class"][:4].tolist() == [0, 1, 2, 3]
    assert m["label_entropy"]["mean"] == 0 and m["label_entropy"]["max_possible"] == pytest.approx(np.log(10))
    # the 3 largest activations of latent c are the last 3 rows of class c, largest first
    topk = np.load(base / "eval" / "latents.npz")["topk_indices"]
    for c in range(4):
        expect = sorted(np.flatnonzero(np.arange(N) % 4 == c), reverse=True)[:3]
        assert topk[c].tolist() == expect
        assert table["topk_rows"][c] == ";".join(map(str, expect))
    assert (topk[4:] == -1).all()
    assert inputs["top_rows"].tolist() == [39, 38, 37, 36, 35]
    assert inputs["top_latents"][:, 0].tolist() == [39 % 4, 38 % 4, 37 % 4, 36 % 4, 35 % 4]
    np.testing.assert_allclose(inputs["top_scores"], a[[39, 38, 37, 36, 35]])
    heat = inputs["heatmap"]
    assert heat.shape == (N, 2 * D)
    np.testing.assert_allclose(heat[np.arange(N), np.arange(N) % 4], a)


def test_alignment_known(known):
    _, m, table, _, _ = known
    # every encoder and decoder vector is +-e_j: a standard basis vector
    assert m["alignment"]["basis_encoder_mean"] == pytest.approx(1) and m["alignment"]["basis_decoder_fraction_above"] == 1
    np.testing.assert_allclose(table["encoder_basis_alignment"], 1)


def test_dead_threshold_and_bad_rows(tmp_path):
    x, labels, a = known_inputs()
    write_cache(tmp_path / "cache", x, labels)
    sae, cfg = split_sae(D)
    save_sae(sae, tmp_path / "sae", cfg)
    # latent 0 (class 0) carries the least total activation; a threshold just above it kills it
    total0 = a[labels == 0].sum()
    m = evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "e1", EvalConfig(dead_threshold=total0 + 1e-9))
    assert m["dead_fraction"] == pytest.approx((2 * D - 3) / (2 * D))
    # rows of unreadable images (zeros in the cache, listed in the manifest) are left out of everything
    x_bad = x.copy()
    x_bad[[5, 39]] = 0
    write_cache(tmp_path / "bad", x_bad, labels, bad_rows=(5, 39))
    m = evaluate_sae(tmp_path / "sae", tmp_path / "bad", tmp_path / "e2", EvalConfig(top_k=3))
    keep = np.ones(N, bool)
    keep[[5, 39]] = False
    assert m["n"] == N - 2 and m["n_excluded"] == 2 and m["l0"] == 1
    assert m["l2_norm_in"] == pytest.approx(a[keep].mean())
    topk = np.load(tmp_path / "e2" / "latents.npz")["topk_indices"]
    assert 39 not in topk and 5 not in topk and topk[3].tolist() == [35, 31, 27]
    table = pd.read_csv(tmp_path / "e2" / "latents.csv")
    assert table["lifetime_sparsity"][3] == pytest.approx(9 / (N - 2))
