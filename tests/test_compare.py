import json

import numpy as np
import pytest
import torch

from saesuite.compare import StreamingLinearCKA, compare_saes, linear_cka, topk_overlap
from saesuite.topk import StreamingTopK
from saesuite.errors import ConfigError
from saesuite.schema import validate
from saesuite.train import TrainConfig, train_sae


def cka_by_kernels(x, y):
    """Independent CKA: HSIC of linear Gram matrices with the centring matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def test_linear_cka_matches_the_kernel_form_and_its_invariances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
    assert linear_cka(x, y) == pytest.approx(cka_by_kernels(x, y), rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)  # rotation, scale and shift invariant
    stream = StreamingLinearCKA(6, 4)
    for s in range(0, 50, 13):
        stream.update(x[s : s + 13], y[s : s + 13])
    assert stream.result() == pytest.approx(linear_cka(x, y), rel=1e-9)


def brute_topk(f, k):
    """Per latent, the k rows with the largest positive activation; ties to the lower row."""
    out = []
    for j in range(f.shape[1]):
        rows = sorted((i for i in range(len(f)) if f[i, j] > 0), key=lambda i: (-f[i, j], i))[:k]
        out.append(rows + [-1] * (k - len(rows)))
    return np.array(out)


def test_streaming_topk_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    f = np.round(rng.exponential(size=(60, 7)), 1) * (rng.random((60, 7)) < 0.5)  # many ties and zeros
    f[:, 6] = 0
    f[5, 6] = 1.0  # a latent firing on a single row
    top = StreamingTopK(7, 4)
    for s in range(0, 60, 11):
        top.update(s, torch.from_numpy(f[s : s + 11]).float())
    np.testing.assert_array_equal(top.indices.numpy(), brute_topk(f, 4))
    assert top.alive().tolist() == [True] * 6 + [False]


def test_topk_overlap_matches_set_arithmetic():
    rng = np.random.default_rng(1)
    n, k = 40, 5
    a = np.array([rng.choice(n, k, replace=False) for _ in range(6)])
    b = np.array([rng.choice(n, k, replace=False) for _ in range(9)])
    a[0] = b[3]  # an exact partner
    a[5, 2:] = -1  # not alive: fewer than k images
    best, alive = topk_overlap(a, b, n, k)
    expected = [max(len(set(ra) & set(rb)) / k for rb in b) for ra in a[:5]]
    assert alive.tolist() == [True] * 5 + [False]
    np.testing.assert_allclose(best, expected)
    assert best[0] == 1.0


def test_compare_end_to_end_on_the_tiny_models(caches, tmp_path):
    small = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=256, device="cpu")
    cfg = TrainConfig(expansion=2, batch_size=64, samples=64 * 30, lr=1e-3, l1_coefficient=1e-2, **small)
    for model in ("tiny-RN", "tiny-ViT"):
        train_sae(caches[(model, "train")], tmp_path / model, cfg)
    result = compare_saes(
        caches[("tiny-RN", "test")], tmp_path / "tiny-RN", caches[("tiny-ViT", "test")], tmp_path / "tiny-ViT",
        tmp_path / "cmp", k=9,
    )
    validate(json.loads((tmp_path / "cmp" / "comparison.json").read_text()), "comparison")
    from saesuite.cache import ActivationCache

    xa = ActivationCache.open(caches[("tiny-RN", "test")]).read_all()
    xb = ActivationCache.open(caches[("tiny-ViT", "test")]).read_all()
    assert result["linear_cka"] == pytest.approx(cka_by_kernels(xa.astype(float), xb.astype(float)), rel=1e-6)
    assert result["topk_overlap_chance"] == pytest.approx(9 / 120)
    # an SAE compared with itself: every alive feature finds itself
    same = compare_saes(
        caches[("tiny-ViT", "test")], tmp_path / "tiny-ViT", caches[("tiny-ViT", "test")], tmp_path / "tiny-ViT",
        tmp_path / "self", k=9,
    )
    assert same["topk_overlap_a_to_b"] == 1.0 and same["linear_cka"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="do not hold the same images"):
        compare_saes(
            caches[("tiny-RN", "train")], tmp_path / "tiny-RN", caches[("tiny-ViT", "test")], tmp_path / "tiny-ViT",
            tmp_path / "bad",
        )
