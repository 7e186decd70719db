import open_clip
import pytest
import torch

from saesuite.backbones import HookSpec, load_backbone
from saesuite.errors import ConfigError


def test_tiny_models_are_the_real_classes_and_d_is_read_off_the_model():
    vit = load_backbone("tiny-ViT", None, "resid_cls:-2")
    rn = load_backbone("tiny-RN", None, "attnpool")
    assert type(vit.visual).__name__ == "VisionTransformer"
    assert type(rn.visual).__name__ == "ModifiedResNet"
    assert vit.hook == HookSpec("resid_cls", 2)  # -2 of 4 blocks resolves to 2
    assert vit.d == vit.visual.transformer.width == 64
    assert rn.d == rn.visual.output_dim == 64


def test_vit_hook_is_cls_token_after_block_k_and_forward_stops_there():
    bb = load_backbone("tiny-ViT", None, "resid_cls:1")
    images = torch.randn(3, 3, 64, 64)
    # independent path: run the whole tower with plain forward hooks
    seen = {}
    handles = [
        bb.visual.transformer.resblocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block", o)),
        bb.visual.transformer.resblocks[2].register_forward_hook(lambda m, i, o: seen.__setitem__("later", True)),
    ]
    with torch.no_grad():
        bb.visual(images)
    expected = seen["block"][:, 0]  # batch-first [B, L, D]; CLS token is position 0
    seen.clear()
    got = bb.activations(images)
    for h in handles:
        h.remove()
    assert got.shape == (3, 64)
    torch.testing.assert_close(got, expected)
    assert "later" not in seen, "blocks after the hook must not run"


def test_resnet_hook_is_the_image_embedding():
    bb = load_backbone("tiny-RN", None, "attnpool")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        embedding = bb.model.encode_image(images)
    torch.testing.assert_close(bb.activations(images), embedding)


def test_random_weights_are_seeded():
    a = load_backbone("tiny-ViT", None, "resid_cls:2", init_seed=5)
    b = load_backbone("tiny-ViT", None, "resid_cls:2", init_seed=5)
    c = load_backbone("tiny-ViT", None, "resid_cls:2", init_seed=6)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(a.activations(x), b.activations(x))
    assert not torch.allclose(a.activations(x), c.activations(x))


def test_preprocessing_is_the_models_own():
    bb = load_backbone("tiny-ViT", None, "resid_cls:2")
    _, _, reference = open_clip.create_model_and_transforms("tiny-ViT", pretrained=None)
    assert repr(bb.preprocess) == repr(reference)


@pytest.mark.parametrize(
    "name, hook, message",
    [
        ("no-such-model", "attnpool", "open_clip does not know a model called 'no-such-model'"),
        ("tiny-RN", "resid_cls:2", "ResNet and has no transformer blocks; use 'attnpool'"),
        ("tiny-ViT", "attnpool", "ViT and has no attention pool"),
        ("tiny-ViT", "resid_cls:4", "has 4 blocks .* block 4 does not exist"),
        ("ViT-L-14", "resid_cls:24", "has 24 blocks .* block 24 does not exist"),
        ("tiny-ViT", "resid_mean:2", "unknown site 'resid_mean'"),
        ("tiny-ViT", "resid_cls", "needs a block index"),
    ],
)
def test_bad_models_and_hooks_fail_before_loading_weights(name, hook, message):
    with pytest.raises(ConfigError, match=message):
        # pretrained="openai" would need the network: the check must come first
        load_backbone(name, "openai", hook)


def test_paper_models_have_the_stated_shapes():
    """ViT-L-14: 24 blocks of width 1024, embedding 768; RN50: embedding 1024 (from open_clip's configs)."""
    vit = open_clip.get_model_config("ViT-L-14")
    rn = open_clip.get_model_config("RN50")
    assert (vit["vision_cfg"]["layers"], vit["vision_cfg"]["width"], vit["embed_dim"]) == (24, 1024, 768)
    assert rn["embed_dim"] == 1024 and list(rn["vision_cfg"]["layers"]) == [3, 4, 6, 3]


def test_paper_models_built_with_random_weights_give_d_1024():
    """The real towers (random weights: no network here) and the hooks of DESIGN.md."""
    vit = load_backbone("ViT-L-14", None, "resid_cls:22")
    assert vit.d == 1024 and len(vit.visual.transformer.resblocks) == 24
    rn = load_backbone("RN50", None, "attnpool")
    assert rn.d == 1024
    out = rn.activations(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1024)
