import open_clip
import pytest
import torch

from saesuite.models.backbones import HookSpec, load_backbone
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
    """The real towers (random weights: no network here) and the paper's hooks (docs/architecture.md,
    "Facts that are easy to get wrong": ViT-L/14's CLS token after block 22, RN50's attention pool)."""
    vit = load_backbone("ViT-L-14", None, "resid_cls:22")
    assert vit.d == 1024 and len(vit.visual.transformer.resblocks) == 24
    rn = load_backbone("RN50", None, "attnpool")
    assert rn.d == 1024
    out = rn.activations(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1024)


# --- Building each model as its weights tag requires (issue 13.1), without downloading weights ---

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's published normalisation (openai/CLIP clip.py)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def paper_pairs() -> list[tuple[str, str, str]]:
    """``(model, pretrained, hook)`` of every model of config/config.yaml that names a weights tag."""
    import yaml

    from conftest import REPO

    models = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]
    return [(name, m["pretrained"], m["hook"]) for name, m in models.items() if m.get("pretrained")]


@pytest.fixture
def no_download(monkeypatch):
    """open_clip's weight download and loading replaced by recorders: the real builder runs, no weights move."""
    import open_clip.factory

    calls = {"download": [], "load": []}

    def download(cfg, **_kwargs):
        calls["download"].append(cfg)
        return "/nonexistent/weights.pt"

    monkeypatch.setattr(open_clip.factory, "download_pretrained", download)
    monkeypatch.setattr(open_clip.factory, "load_checkpoint", lambda model, path, **_kw: calls["load"].append(path))
    return calls


def activation_classes(module: torch.nn.Module) -> dict[str, int]:
    """How many QuickGELU and nn.GELU modules ``module`` holds."""
    from open_clip.transformer import QuickGELU

    mods = list(module.modules())
    return {"quick": sum(isinstance(m, QuickGELU) for m in mods), "gelu": sum(type(m) is torch.nn.GELU for m in mods)}


def preprocessing_of(preprocess) -> dict:
    """Resize size and interpolation, crop size, mean and std of an eval transform (read off its steps)."""
    from torchvision import transforms as T

    steps = {type(t).__name__: t for t in preprocess.transforms}
    resize, crop, norm = steps["Resize"], steps["CenterCrop"], steps["Normalize"]
    return {"size": resize.size, "interpolation": resize.interpolation, "crop": tuple(crop.size),
            "mean": tuple(norm.mean), "std": tuple(norm.std), "bicubic": T.InterpolationMode.BICUBIC}


def test_the_paper_config_names_rn50_and_vit_l14_with_openai_weights():
    assert {(m, p) for m, p, _ in paper_pairs()} == {("RN50", "openai"), ("ViT-L-14", "openai")}


@pytest.mark.parametrize(("name", "pretrained", "hook"), paper_pairs())
def test_each_paper_model_is_built_as_its_tag_requires(name, pretrained, hook, no_download):
    """Both towers use QuickGELU, as OpenAI trained them, and the preprocessing is the tag's (on the built model)."""
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    assert tag["quick_gelu"] is True  # OpenAI's CLIP weights were trained with QuickGELU
    with torch.device("meta"):  # the real architecture, no memory and no weights
        bb = load_backbone(name, pretrained, hook, device="meta")
    assert no_download["download"] == [tag] and no_download["load"] == ["/nonexistent/weights.pt"]
    text = activation_classes(bb.model.transformer)
    assert text == {"quick": len(bb.model.transformer.resblocks), "gelu": 0}  # the text tower of zero-shot and naming
    visual = activation_classes(bb.visual)
    if hasattr(bb.visual, "transformer"):
        assert visual == {"quick": len(bb.visual.transformer.resblocks), "gelu": 0} and visual["quick"] == 24
    else:
        assert visual == {"quick": 0, "gelu": 0}  # ModifiedResNet: ReLU convolutions and an attention pool
    pre = preprocessing_of(bb.preprocess)
    size = bb.visual.image_size[0] if isinstance(bb.visual.image_size, tuple) else bb.visual.image_size
    assert pre["size"] == size == 224 and pre["crop"] == (224, 224)  # resize_mode "shortest": resize then crop
    assert tag["interpolation"] == "bicubic" and pre["interpolation"] == pre["bicubic"]
    assert pre["mean"] == tuple(tag["mean"]) == OPENAI_MEAN and pre["std"] == tuple(tag["std"]) == OPENAI_STD


def test_open_clip_alone_builds_vit_l14_with_the_wrong_gelu_and_only_warns(no_download):
    """The defect the suite guards against (open_clip 3.3): nn.GELU under QuickGELU weights, a warning only."""
    with pytest.warns(UserWarning, match="QuickGELU mismatch"), torch.device("meta"):
        model, _, _ = open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai", device="meta")
    assert activation_classes(model.visual) == {"quick": 0, "gelu": 24}


def test_a_quick_gelu_mismatch_is_an_error(no_download, monkeypatch):
    from saesuite.models import backbones

    # open_clip's warning, raised: settings that do not force QuickGELU for the openai tag
    monkeypatch.setattr(backbones, "tag_settings", lambda name, pretrained: backbones.TagSettings(quick_gelu=False))
    with pytest.raises(ConfigError, match="QuickGELU mismatch"), torch.device("meta"):
        backbones.create_clip("ViT-L-14", "openai", device="meta")


def test_a_gelu_tag_on_a_quickgelu_config_is_refused_before_any_download(no_download, monkeypatch):
    from open_clip import pretrained as registry

    from saesuite.models.backbones import tag_settings

    monkeypatch.setitem(registry._PRETRAINED, "ViT-L-14-quickgelu", {"gelu_tag": {"url": "x", "quick_gelu": False}})
    with pytest.raises(ConfigError, match="trained with nn.GELU .* without '-quickgelu'"):
        tag_settings("ViT-L-14-quickgelu", "gelu_tag")
    assert no_download["download"] == []


def test_tag_settings_are_read_from_open_clip_and_absent_without_a_tag():
    from saesuite.models.backbones import TagSettings, tag_settings

    assert tag_settings("ViT-L-14", "openai") == TagSettings(True, OPENAI_MEAN, OPENAI_STD, "bicubic", "shortest")
    assert tag_settings("ViT-L-14", "openai").create_kwargs() == {
        "force_quick_gelu": True, "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
        "image_interpolation": "bicubic", "image_resize_mode": "shortest"}
    assert tag_settings("tiny-ViT", None) is None  # random weights: the config is built as it is
    assert tag_settings("ViT-L-14", "/some/checkpoint.pt") is None  # a file, not a tag


def test_prefetch_downloads_through_the_same_builder(no_download, monkeypatch):
    from saesuite.models import backbones
    from saesuite.cli import main

    built = []
    real = backbones.create_clip
    monkeypatch.setattr(backbones, "create_clip", lambda *a, **kw: built.append(real(*a, **kw)) or built[-1])
    assert backbones.prefetch(["RN50:openai"]) == ["RN50:openai"]
    assert no_download["download"] == [open_clip.get_pretrained_cfg("RN50", "openai")]
    assert activation_classes(built[0][0].transformer)["quick"] == 12  # built as the run builds it
    with pytest.raises(ConfigError, match="MODEL:TAG"):
        backbones.prefetch(["RN50"])
    asked = []
    monkeypatch.setattr(backbones, "prefetch", lambda specs: asked.extend(specs) or list(specs))
    assert main(["prefetch-weights", "RN50:openai", "ViT-L-14:openai"]) == 0
    assert asked == ["RN50:openai", "ViT-L-14:openai"]
