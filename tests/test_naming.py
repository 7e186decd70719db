"""Naming latents in words from their top images' CLIP embeddings (saesuite.evaluate.naming)."""

import json

import numpy as np
import pytest
import torch

from saesuite.cache.format import write_array_cache
from saesuite.cache.reader import ActivationCache
from saesuite.data.datasets import load_dataset
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.evaluate.naming import (
    Naming, latent_names, majority_labels, mean_top_embeddings, read_names, top_image_names,
)
from saesuite.models.backbones import load_backbone
from saesuite.sae.config import TrainConfig
from saesuite.sae.train import train_sae

SMALL = dict(lr_warmup_samples=256, l1_warmup_samples=512, b_dec_init_samples=256, dead_window_samples=2048, device="cpu")


def planted_concepts(noise: float, seed: int = 0, n: int = 3000, latents: int = 60, classes: int = 20, e: int = 32):
    """Images made of sparse concepts with a known class each: an image's embedding is the activation-weighted
    sum of its concepts' class text embeddings plus isotropic noise of ``noise`` times the signal's scale; its
    label is the class of its strongest concept. Returns the cache, the top-k rows, text, labels and the truth."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(classes, e))
    truth = rng.integers(0, classes, latents)  # latent j is about class truth[j]
    z = (rng.random((n, latents)) < 0.03) * rng.uniform(0.5, 3, (n, latents))
    signal = z @ text[truth]
    scale = np.linalg.norm(signal, axis=1, keepdims=True).mean()
    embed = signal + noise * scale / np.sqrt(e) * rng.normal(size=(n, e))
    labels = np.where(z.max(1) > 0, truth[z.argmax(1)], 0)
    return z, embed, torch.from_numpy(text).float(), labels, truth


def topk_rows(z: np.ndarray, k: int) -> np.ndarray:
    """``[F, k]`` rows of each latent's k largest positive values (-1 past its positives): the evaluation's top-k."""
    order = np.argsort(-z, axis=0, kind="stable")[:k].T
    return np.where(np.take_along_axis(z.T, order, axis=1) > 0, order, -1)


@pytest.mark.parametrize("noise, floor", [(1.0, 0.95), (4.0, 0.95), (8.0, 0.6)])
def test_names_recover_the_planted_class_of_each_concept(tmp_path, noise, floor):
    """Known answer: each concept's top images carry its class; the method names that class."""
    z, embed, text, labels, truth = planted_concepts(noise)
    cache = ActivationCache.open(write_array_cache(tmp_path / "c", z.astype(np.float32), {"model": "m", "hook": "h"},
                                                   labels=labels, n_shards=3, embed=embed), embeddings=True)
    classes = [f"class{c}" for c in range(len(text))]
    record = top_image_names(cache, topk_rows(z, 9), labels, text, classes, Naming("a photo of a {}.", 3, 9))
    best = np.array([names[0] for names in record["names"]])
    accuracy = (best == truth).mean()
    print(f"naming accuracy at noise {noise}: {accuracy:.3f}")
    assert accuracy >= floor
    assert record["score"]["named_latents"] == len(truth)
    assert record["score"]["image_zero_shot_accuracy"] < accuracy  # k images together beat one image
    assert record["score"]["label_agreement"] >= floor - 0.05 and record["score"]["label_agreement_chance"] == 1 / 20
    # the cosines are those of the mean unit embedding with each class's unit text embedding, best first
    unit = embed / np.linalg.norm(embed, axis=1, keepdims=True)
    mean = unit[topk_rows(z, 9)[0]].mean(0)
    t = text.numpy() / np.linalg.norm(text.numpy(), axis=1, keepdims=True)
    cos = t @ mean / np.linalg.norm(mean)
    assert record["names"][0] == np.argsort(-cos)[:3].tolist()
    np.testing.assert_allclose(record["cosines"][0], np.sort(cos)[::-1][:3], atol=1e-5)


def test_means_and_majorities_match_a_direct_loop(tmp_path):
    rng = np.random.default_rng(1)
    embed = rng.normal(size=(50, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    cache = ActivationCache.open(write_array_cache(tmp_path / "c", np.zeros((50, 2), np.float32), {"model": "m", "hook": "h"},
                                                   labels=labels, n_shards=2, embed=embed), embeddings=True)
    rows = np.array([[3, 49, 7], [10, -1, -1], [-1, -1, -1], [25, 24, 26]])
    means, counts = mean_top_embeddings(cache, rows)
    assert counts.tolist() == [3, 1, 0, 3]
    for latent, row in enumerate(rows):
        used = row[row >= 0]
        expect = (embed[used] / np.linalg.norm(embed[used], axis=1, keepdims=True)).mean(0) if len(used) else np.zeros(6)
        np.testing.assert_allclose(means[latent], expect, atol=1e-6)
        if len(used):
            votes = np.bincount(labels[used], minlength=4)
            assert majority_labels(rows, labels, 4)[latent] == np.argmax(votes)
    assert majority_labels(rows, labels, 4)[2] == -1


@pytest.fixture(scope="module")
def evaluated(caches, tmp_path_factory):
    """A tiny ViT SAE (residual stream: outside CLIP's joint space) evaluated on the test split."""
    sae = tmp_path_factory.mktemp("sae")
    train_sae(caches[("tiny-ViT", "train")], sae, TrainConfig(expansion=2, batch_size=64, samples=64 * 30, lr=1e-3,
                                                               l1_coefficient=1e-2, **SMALL))
    out = tmp_path_factory.mktemp("eval")
    evaluate_sae(sae, caches[("tiny-ViT", "test")], out, EvalConfig(top_k=4, text_names=3))
    return out


def test_evaluation_names_residual_stream_latents_as_clip_would_name_their_top_images(evaluated, caches, fixture_spec):
    """Independent computation: encode_image of each latent's top images, encode_text of the prompts."""
    names = read_names(evaluated)
    record = names["methods"]["top_images"]
    assert record["skipped"] is None and "zero-shot" in record["description"]
    assert "joint image-text space" in names["methods"]["decoder"]["skipped"]  # decoder naming: attnpool only
    backbone = load_backbone("tiny-ViT", None, "resid_cls:-2")
    dataset = load_dataset(fixture_spec, "test", transform=backbone.preprocess)
    import open_clip

    with torch.no_grad():
        text = backbone.model.encode_text(open_clip.get_tokenizer("tiny-ViT")(
            [names["prompt"].format(c) for c in names["classes"]]))
        text = torch.nn.functional.normalize(text, dim=1)
        rows = np.load(evaluated / "latents.npz")["topk_indices"]
        checked = 0
        for latent in range(0, len(rows), 7):
            used = rows[latent][rows[latent] >= 0]
            if not len(used):
                assert record["names"][latent] == []
                continue
            image = torch.nn.functional.normalize(backbone.model.encode_image(torch.stack([dataset[int(i)][0] for i in used])), dim=1)
            cos = text @ torch.nn.functional.normalize(image.mean(0), dim=0)
            assert record["names"][latent] == cos.argsort(descending=True)[:3].tolist()
            np.testing.assert_allclose(record["cosines"][latent], cos.sort(descending=True).values[:3], atol=1e-4)
            assert latent_names(names, latent)[0] == (names["classes"][record["names"][latent][0]], record["cosines"][latent][0])
            checked += 1
    assert checked >= 3
    # the single-image ceiling over the whole split, by the same matching
    emb = torch.from_numpy(ActivationCache.open(caches[("tiny-ViT", "test")], embeddings=True).embeddings(np.arange(120)))
    accuracy = ((emb @ text.T).argmax(1).numpy() == ActivationCache.open(caches[("tiny-ViT", "test")]).labels()).mean()
    assert record["score"]["image_zero_shot_accuracy"] == pytest.approx(accuracy)


def test_a_cache_without_embeddings_gets_a_reason_not_names(tmp_path):
    """A cache no backbone made: both methods are skipped with the reason, and the file still validates."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    write_array_cache(tmp_path / "cache", x, {"model": "my-model", "pretrained": None, "hook": "layer3", "dataset": "mine", "split": "test",
                                             "classes": ["a", "b"]},
                      labels=rng.integers(0, 2, 40))
    sae = tmp_path / "sae"
    train_sae(tmp_path / "cache", sae, TrainConfig(expansion=2, batch_size=8, samples=8 * 20, lr=1e-3, **SMALL))
    evaluate_sae(sae, tmp_path / "cache", tmp_path / "eval", EvalConfig(top_k=3))
    names = json.loads((tmp_path / "eval" / "names.json").read_text())
    assert "open_clip" in names["methods"]["top_images"]["skipped"] and names["methods"]["top_images"]["names"] == []
    assert latent_names(names, 0) == []
