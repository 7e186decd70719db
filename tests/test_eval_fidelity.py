"""Zero-shot fidelity: splicing checked against forward passes computed another way."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch

from saesuite.models.backbones import load_backbone
from saesuite.cache.reader import ActivationCache
from saesuite.data.datasets import load_dataset
from saesuite.errors import CacheError
from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.evaluate.fidelity import recovered, spliced_image_features, zero_shot_fidelity
from saesuite.sae.model import SAE, save_sae

PROMPT = "a photo of a {}."
HOOKS = {"tiny-ViT": "resid_cls:-2", "tiny-RN": "attnpool"}


def random_sae(d: int, seed: int = 0) -> SAE:
    torch.manual_seed(seed)
    sae = SAE(d, 4 * d)
    with torch.no_grad():
        sae.W_enc.normal_(0, d**-0.5)
        sae.W_dec.normal_(0, d**-0.5)
    return sae


def identity_sae(d: int) -> SAE:
    sae = SAE(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


def text_unit(backbone, classes):
    with torch.no_grad():
        t = backbone.model.encode_text(open_clip.get_tokenizer(backbone.name)([PROMPT.format(c) for c in classes]))
    return torch.nn.functional.normalize(t.float(), dim=1)


def images_of(fixture_spec, backbone, n=40):
    data = load_dataset(fixture_spec, "test", transform=backbone.preprocess)
    images, labels = zip(*(data[i] for i in range(n)))
    return data, torch.stack(images), torch.tensor(labels)


def vit_finish(backbone, images, cls_replacement):
    """The ViT's forward from the hooked block on, written out block by block (an independent path)."""
    visual, k = backbone.visual, backbone.hook.block
    captured = []
    handle = visual.transformer.resblocks[k].register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    with torch.no_grad():
        visual(images)
    handle.remove()
    tokens = captured[0]
    tokens[:, 0] = cls_replacement
    with torch.no_grad():
        for block in visual.transformer.resblocks[k + 1 :]:
            tokens = block(tokens)
        pooled, _ = visual._pool(tokens)
        return pooled @ visual.proj


@pytest.mark.parametrize("model", ["tiny-ViT", "tiny-RN"])
def test_spliced_features_match_an_independent_forward(model, fixture_spec):
    backbone = load_backbone(model, None, HOOKS[model])
    _, images, _ = images_of(fixture_spec, backbone, 16)
    sae = random_sae(backbone.d)
    mean = torch.randn(backbone.d)
    feats = spliced_image_features(backbone, sae, mean, images)
    with torch.no_grad():
        clean = backbone.model.encode_image(images)
        h = backbone.activations(images)
        h_hat = sae.decode(sae.encode(h))
    torch.testing.assert_close(feats[0], clean, rtol=1e-4, atol=1e-5)
    if model == "tiny-RN":  # the hook is the image embedding itself
        torch.testing.assert_close(feats[1], h_hat, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(feats[2], mean.expand_as(h), rtol=0, atol=0)
    else:
        torch.testing.assert_close(feats[1], vit_finish(backbone, images, h_hat), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(feats[2], vit_finish(backbone, images, mean), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["tiny-ViT", "tiny-RN"])
def test_zero_shot_accuracies_match_numpy(model, fixture_spec, caches):
    backbone = load_backbone(model, None, HOOKS[model])
    data, images, labels = images_of(fixture_spec, backbone, 40)
    classes = ActivationCache.open(caches[(model, "test")]).manifest["classes"]
    sae, mean = random_sae(backbone.d, 1), torch.randn(backbone.d)
    out = zero_shot_fidelity(backbone, sae, data, classes, mean, prompt=PROMPT, limit=40, batch_size=16)
    t = text_unit(backbone, classes)
    feats = spliced_image_features(backbone, sae, mean, images)
    scale = float(backbone.model.logit_scale.detach().exp())
    for i, variant in enumerate(("clean", "spliced", "ablated")):
        logits = scale * torch.nn.functional.normalize(feats[i], dim=1) @ t.T
        assert out[f"accuracy_{variant}"] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
        ce = torch.nn.functional.cross_entropy(logits, labels).item()
        assert out[f"ce_loss_{variant}"] == pytest.approx(ce, rel=1e-5)
    acc = [out[f"accuracy_{v}"] for v in ("clean", "spliced", "ablated")]
    assert out["fraction_recovered"] == recovered(*acc)
    assert out["n_images"] == 40
    assert out["chance_accuracy"] == 1 / len(classes) == 0.1  # a uniform guess among CIFAR-10's classes


def test_recovered_formula():
    assert recovered(0.8, 0.6, 0.2) == pytest.approx(4 / 6)
    assert recovered(0.5, 0.7, 0.5) is None  # clean equals ablated: undefined, not a number


def test_a_perfect_sae_recovers_everything_and_a_constant_one_nothing(fixture_spec, caches, tmp_path):
    cache_dir = caches[("tiny-ViT", "test")]
    cfg = {"d_in": 64, "architecture": "relu", "model": "tiny-ViT", "hook": "resid_cls:2"}
    save_sae(identity_sae(64), tmp_path / "id", {**cfg, "d_sae": 128})
    m = evaluate_sae(tmp_path / "id", cache_dir, tmp_path / "e_id", EvalConfig(fidelity_images=60), fixture_spec)["fidelity"]
    assert m["n_images"] == 60
    assert m["accuracy_spliced"] == m["accuracy_clean"] and m["ce_loss_spliced"] == pytest.approx(m["ce_loss_clean"], rel=1e-6)
    assert m["prediction_agreement"] == 1 and m["embedding_cosine"] == pytest.approx(1)
    assert m["ce_loss_recovered"] == pytest.approx(1, abs=1e-4)
    # decoder zero, b_dec the split mean: the reconstruction is the mean ablation
    mean = ActivationCache.open(cache_dir).read_all().astype(np.float64).mean(0)
    const = SAE(64, 8)
    with torch.no_grad():
        const.b_dec.copy_(torch.from_numpy(mean).float())
        const.b_enc.fill_(-1e6)
    save_sae(const, tmp_path / "const", {**cfg, "d_sae": 8})
    m = evaluate_sae(tmp_path / "const", cache_dir, tmp_path / "e_c", EvalConfig(fidelity_images=60), fixture_spec)["fidelity"]
    assert m["accuracy_spliced"] == m["accuracy_ablated"]
    assert m["ce_loss_spliced"] == pytest.approx(m["ce_loss_ablated"], rel=1e-5)
    assert m["ce_loss_recovered"] == pytest.approx(0, abs=1e-3)


def test_a_model_that_does_not_match_the_cache_is_refused(fixture_spec, caches, tmp_path):
    import shutil

    cache_dir = tmp_path / "cache"
    shutil.copytree(caches[("tiny-RN", "test")], cache_dir)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    (cache_dir / "manifest.json").write_text(json.dumps({**manifest, "init_seed": 7}))  # not the weights it was made with
    save_sae(random_sae(64), tmp_path / "sae", {"d_in": 64, "d_sae": 256, "architecture": "relu", "model": "tiny-RN", "hook": "attnpool"})
    with pytest.raises(CacheError, match="does not reproduce the cached activations"):
        evaluate_sae(tmp_path / "sae", cache_dir, tmp_path / "eval", EvalConfig(), fixture_spec)
