"""Loading CLIP vision backbones through open_clip and capturing a hooked activation.

A hook point is named by a :class:`HookSpec`:

* ``resid_cls:K`` -- the CLS token of a ViT's residual stream at the output of
  block ``K`` (0-based; negative counts from the end, so ``-2`` is the
  second-to-last block). ``d`` is the transformer width.
* ``attnpool`` -- the output of a ModifiedResNet's attention pool, i.e. the image
  embedding. ``d`` is the embedding width.
* ``mlp_out:K`` -- the CLS token of the MLP output of block ``K`` (what the MLP
  writes into the residual stream). ``d`` is the transformer width.
* ``mlp_hidden:K`` -- the CLS token of block ``K``'s MLP neurons (the GELU output,
  the inputs of ``mlp.c_proj``). ``d`` is the MLP width (4 x width).

Every model is built as its pretrained tag was trained (:func:`tag_settings`,
:func:`create_clip`): open_clip 3.3 builds ``ViT-L-14`` with ``nn.GELU`` while the
``openai`` weights were trained with QuickGELU, and only warns about the mismatch.
The suite reads the tag's settings from open_clip's pretrained config (``quick_gelu``,
mean/std, interpolation, resize mode, and image size where a tag gives one), passes them
to ``create_model_and_transforms`` and turns the mismatch warning into an error.

``d`` is always read off the model, never hard-coded. :meth:`Backbone.capture`
reads several hook points in one forward pass and stops the pass once the last
of them has run; asked for the image embedding too (the tower's output, ``e =
visual.output_dim``, what ``encode_image`` returns before normalising), it runs the
tower to its end. :meth:`Backbone.prepare` moves the tower to its device with
bf16 autocast and channels-last where they help (CUDA).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from typing import Callable

import torch
from torch import nn

from saesuite.errors import ConfigError
from saesuite.models.hooks import BLOCK_SITES, SITES, HookSpec, hook_problem, unknown_model_message  # noqa: F401 (re-exported)

PRECISIONS = ("auto", "fp32", "bf16")
EMBED = "embed"  # Backbone.capture's key of the image embedding (the vision tower's output)
_TINY_CONFIGS_REGISTERED = False


def register_tiny_configs() -> None:
    """Register the suite's tiny open_clip configs (``tiny-ViT``, ``tiny-RN``).

    They are real ``VisionTransformer`` / ``ModifiedResNet`` towers with small
    widths, used by the smoke config and the tests with ``pretrained: null``.
    """
    global _TINY_CONFIGS_REGISTERED
    if _TINY_CONFIGS_REGISTERED:
        return
    import open_clip

    config_dir = resources.files("saesuite") / "model_configs"
    open_clip.add_model_config(str(config_dir))
    _TINY_CONFIGS_REGISTERED = True


@dataclass(frozen=True)
class TagSettings:
    """What a pretrained tag requires of the model built for it (from open_clip's pretrained config)."""

    quick_gelu: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    resize_mode: str | None = None
    image_size: int | tuple[int, int] | None = None  # no open_clip 3.3 tag gives one: the model config's size holds

    def create_kwargs(self) -> dict:
        """Keyword arguments of ``open_clip.create_model_and_transforms`` that build the model as the tag needs."""
        kwargs = {"force_quick_gelu": self.quick_gelu, "image_mean": self.mean, "image_std": self.std,
                  "image_interpolation": self.interpolation, "image_resize_mode": self.resize_mode,
                  "force_image_size": self.image_size}
        return {key: value for key, value in kwargs.items() if value is not None}


def tag_settings(name: str, pretrained: str | None) -> TagSettings | None:
    """The settings open_clip's pretrained config gives for ``(name, pretrained)``.

    None for random weights (``pretrained=None``) or a checkpoint path (not a tag): there
    is nothing to read, and the model config is built as it is. A tag trained with
    ``nn.GELU`` on a ``-quickgelu`` model config is a ConfigError (no flag undoes it).
    """
    import open_clip

    if pretrained is None:
        return None
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        return None
    quick_gelu = bool(cfg.get("quick_gelu", False))
    if not quick_gelu and (open_clip.get_model_config(name) or {}).get("quick_gelu", False):
        raise ConfigError(
            f"weights {pretrained!r} of {name!r} were trained with nn.GELU but the model config builds QuickGELU; "
            f"use the model name without '-quickgelu'"
        )
    mean, std = cfg.get("mean"), cfg.get("std")
    return TagSettings(quick_gelu, tuple(mean) if mean else None, tuple(std) if std else None,
                       cfg.get("interpolation"), cfg.get("resize_mode"), cfg.get("size"))


def create_clip(name: str, pretrained: str | None, device: str | torch.device = "cpu") -> tuple[nn.Module, Callable]:
    """``(model, eval preprocess)`` of open_clip, built as the tag requires (:func:`tag_settings`).

    Loads (and on first use downloads) the tag's weights. open_clip's "QuickGELU mismatch"
    warning is raised as a ConfigError: weights run with the wrong nonlinearity are never used.
    """
    import open_clip

    settings = tag_settings(name, pretrained)
    kwargs = settings.create_kwargs() if settings else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="QuickGELU mismatch", category=UserWarning)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, **kwargs)
        except UserWarning as err:
            raise ConfigError(f"{name!r} with weights {pretrained!r}: {err}") from err
    return model, preprocess


def prefetch(specs: list[str]) -> list[str]:
    """Download the weights of each ``"MODEL:TAG"`` through :func:`create_clip` (the builder every run uses).

    For container builds: the weights land in open_clip's / huggingface_hub's cache, so a run
    needs no network. Returns the specs fetched; a failed download raises.
    """
    register_tiny_configs()
    done = []
    for spec in specs:
        name, sep, tag = str(spec).rpartition(":")
        if not sep or not name or not tag:
            raise ConfigError(f"prefetch {spec!r}: write MODEL:TAG, e.g. ViT-L-14:openai")
        try:
            create_clip(name, tag)
        except RuntimeError as err:
            raise ConfigError(f"could not fetch weights {tag!r} for {name!r}: {err}") from err
        done.append(f"{name}:{tag}")
    return done


class _StopForward(Exception):
    """Raised from a hook to end the forward pass once the hooked layer has run."""


@dataclass
class Backbone:
    """A CLIP vision tower with its preprocessing and one hook point.

    ``model`` is the full open_clip model (its ``visual`` tower is what runs);
    ``preprocess`` is the model's own eval transform; ``d`` is the hooked width.
    """

    name: str
    pretrained: str | None
    hook: HookSpec
    model: nn.Module
    preprocess: Callable
    d: int
    hook_module: nn.Module
    init_seed: int | None = None  # the seed of random weights (pretrained None), else None
    precision: str = "fp32"  # what prepare() chose: fp32, or bf16 autocast
    channels_last: bool = False

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def embed_dim(self) -> int:
        """Width ``e`` of the image embedding (the tower's output, CLIP's joint space)."""
        return int(self.visual.output_dim)

    def prepare(self, device: torch.device | str, precision: str = "auto") -> "Backbone":
        """Move the tower to ``device`` for inference; return ``self``.

        ``precision``: ``fp32``, ``bf16`` (autocast; on CPU too, for tests) or
        ``auto`` (bf16 on CUDA, fp32 elsewhere). Convolutional towers go
        channels-last on CUDA, where cuDNN's kernels prefer it.
        """
        device = torch.device(device)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not known; choose one of {', '.join(PRECISIONS)}")
        self.precision = ("bf16" if device.type == "cuda" else "fp32") if precision == "auto" else precision
        self.channels_last = device.type == "cuda" and not hasattr(self.visual, "transformer")
        self.model.to(device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        return self

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.inference_mode()
    def activations(self, images: torch.Tensor) -> torch.Tensor:
        """Hooked activation for a batch of preprocessed images: ``[B, 3, H, W] -> [B, d]``.

        The forward pass stops as soon as the hooked module has run, so the
        layers after it cost nothing.
        """
        return self.capture(images, [self.hook])[str(self.hook)]

    @torch.inference_mode()
    def capture(self, images: torch.Tensor, hooks: list[HookSpec | str], *,
                embed: bool = False) -> dict[str, torch.Tensor]:
        """Several hook points in one forward pass: ``{str(hook): [B, d_hook]}`` (keys as resolved),
        with ``embed`` also ``{EMBED: [B, e]}``, the image embedding (not normalised).

        The pass stops once every output asked for is in (the embedding comes last: the whole
        tower runs). Outputs keep the dtype the tower computed in (bf16 under autocast).
        """
        resolved = [resolve_hook(self.model, self.name, HookSpec.parse(h) if not isinstance(h, HookSpec) else h) for h in hooks]
        captured: dict[str, torch.Tensor] = {}

        def keep(key: str, value: torch.Tensor) -> None:
            captured[key] = value
            if len(captured) == len(resolved) + embed:
                raise _StopForward

        handles = [module.register_forward_hook(lambda _m, _i, output, spec=spec: keep(str(spec), _select(self.visual, spec, output)))
                   for spec, module, _ in resolved]
        if embed:
            handles.append(self.visual.register_forward_hook(lambda _module, _inputs, output: keep(EMBED, output)))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        try:
            with self._autocast(images.device):
                self.visual(images)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [key for key in [str(spec) for spec, _, _ in resolved] + [EMBED] * embed if key not in captured]
        if missing:
            raise RuntimeError(f"hooks {missing} on {self.name} never fired")
        return captured


def _select(visual: nn.Module, hook: HookSpec, output: torch.Tensor) -> torch.Tensor:
    """The captured part of a hooked module's output: the CLS token for block sites, all of it for attnpool."""
    if hook.site == "attnpool":
        return output
    # open_clip's transformer is batch-first ([B, L, D]) in current releases; older ones ran sequence-first.
    batch_first = getattr(visual.transformer, "batch_first", True)
    return output[:, 0] if batch_first else output[0]


def resolve_hook(model: nn.Module, name: str, hook: HookSpec) -> tuple[HookSpec, nn.Module, int]:
    """``(hook with its block made non-negative, module to hook, d)`` of an open_clip model; ConfigError if absent."""
    visual = model.visual
    kind = type(visual).__name__
    if hook.site in BLOCK_SITES:
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None:
            raise ConfigError(
                f"hook {hook}: model {name!r} ({kind}) has no transformer blocks; "
                "use 'attnpool' for ResNet models"
            )
        n = len(blocks)
        block = hook.block + n if hook.block < 0 else hook.block
        if not 0 <= block < n:
            raise ConfigError(
                f"hook {hook}: model {name!r} has {n} blocks (indices 0..{n - 1}, or -{n}..-1); "
                f"block {hook.block} does not exist"
            )
        resolved = HookSpec(hook.site, block)
        if hook.site == "resid_cls":
            return resolved, blocks[block], int(visual.transformer.width)
        mlp = blocks[block].mlp
        if hook.site == "mlp_out":
            return resolved, mlp, int(visual.transformer.width)
        return resolved, mlp.gelu, int(mlp.c_fc.out_features)
    # attnpool
    attnpool = getattr(visual, "attnpool", None)
    if attnpool is None:
        raise ConfigError(
            f"hook {hook}: model {name!r} ({kind}) has no attention pool; "
            "use 'resid_cls:K' for ViT models"
        )
    return hook, attnpool, int(visual.output_dim)


def _precheck_hook(name: str, hook: HookSpec) -> None:
    """Refuse a hook the model cannot have from its config alone, before any weights load."""
    import open_clip

    problem = hook_problem(name, hook, open_clip.get_model_config(name))
    if problem:
        raise ConfigError(problem)


def not_an_open_clip_site(name: str, hook: str) -> str | None:
    """Why activations named ``(name, hook)`` cannot have come from an open_clip model, or None if they can.

    A cache of synthetic activations, or of a user's own model, names a model or a hook
    that open_clip does not have; metrics needing the backbone are then skipped with this reason.
    """
    import open_clip

    register_tiny_configs()
    if name not in open_clip.list_models():
        return f"model {name!r} is not an open_clip model, so no backbone is loaded"
    try:
        HookSpec.parse(hook)
    except ConfigError:
        return f"hook {hook!r} is not an open_clip hook site ({', '.join(SITES)}), so no backbone is loaded"
    return None


def load_backbone(
    name: str, pretrained: str | None, hook: HookSpec | str, device: str = "cpu", init_seed: int = 0
) -> Backbone:
    """Create an open_clip model with its own eval preprocessing and resolve the hook.

    The model is built as its weights tag requires (:func:`create_clip`).
    ``pretrained=None`` gives random weights; it must be asked for explicitly in
    the config (the smoke config does, with the tiny models). A missing weight
    file is an error, never a silent fallback. Random weights are drawn from
    ``init_seed``, so every cache of one random model (train and eval splits, in
    separate jobs) sees the same network.
    """
    import open_clip

    register_tiny_configs()
    hook = HookSpec.parse(hook) if not isinstance(hook, HookSpec) else hook
    known = open_clip.list_models()
    if name not in known:
        raise ConfigError(unknown_model_message(name, known))
    _precheck_hook(name, hook)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model, preprocess = create_clip(name, pretrained, device)
    except RuntimeError as err:
        raise ConfigError(
            f"could not load weights {pretrained!r} for {name!r}: {err}. The paper config needs network access "
            "the first time (weights are cached by huggingface_hub / open_clip), or a local checkpoint path "
            "as 'pretrained'."
        ) from err
    model.eval()
    resolved, module, d = resolve_hook(model, name, hook)
    return Backbone(name, pretrained, resolved, model, preprocess, d, module, init_seed if pretrained is None else None)
