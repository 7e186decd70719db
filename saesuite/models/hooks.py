"""Hook points, by name and against a model's config alone (no torch, no weights).

A hook point is named by a :class:`HookSpec` (see :mod:`saesuite.models.backbones` for what each site
reads). :func:`hook_problem` says why an open_clip model config cannot have a hook, which
:func:`saesuite.models.backbones.load_backbone` and the workflow's preflight check
(:mod:`saesuite.preflight`) both ask before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

from saesuite.errors import ConfigError

SITES = ("resid_cls", "attnpool", "mlp_out", "mlp_hidden")
BLOCK_SITES = ("resid_cls", "mlp_out", "mlp_hidden")


@dataclass(frozen=True)
class HookSpec:
    """Where to read activations from: a site and, for ``resid_cls``, a block index."""

    site: str
    block: int | None = None

    @classmethod
    def parse(cls, text: str | dict) -> "HookSpec":
        """Parse ``"resid_cls:22"``, ``"attnpool"`` or ``{"site": ..., "block": ...}``."""
        if isinstance(text, dict):
            site, block = text.get("site"), text.get("block")
        else:
            site, _, block_text = str(text).partition(":")
            block = None
            if block_text:
                try:
                    block = int(block_text)
                except ValueError:
                    raise ConfigError(f"hook {text!r}: block index {block_text!r} is not an integer") from None
        if site not in SITES:
            raise ConfigError(f"hook {text!r}: unknown site {site!r}; choose one of {', '.join(SITES)}")
        if site in BLOCK_SITES and block is None:
            raise ConfigError(f"hook {text!r}: {site} needs a block index, e.g. '{site}:22'")
        if site == "attnpool" and block is not None:
            raise ConfigError(f"hook {text!r}: attnpool takes no block index")
        return cls(site, block)

    def __str__(self) -> str:
        return self.site if self.block is None else f"{self.site}:{self.block}"


def hook_problem(name: str, hook: HookSpec, model_config: dict | None) -> str | None:
    """Why the open_clip model ``name`` with config ``model_config`` cannot have ``hook``, or None
    (also None for a config open_clip builds differently, timm or hf: checked on the built model)."""
    vision = (model_config or {}).get("vision_cfg")
    if not vision or "layers" not in vision:
        return None
    resnet = isinstance(vision["layers"], (list, tuple))
    if hook.site in BLOCK_SITES and resnet:
        return f"hook {hook}: {name!r} is a ResNet and has no transformer blocks; use 'attnpool'"
    if hook.site == "attnpool" and not resnet:
        return f"hook {hook}: {name!r} is a ViT and has no attention pool; use 'resid_cls:K'"
    if hook.site in BLOCK_SITES:
        n = int(vision["layers"])
        if not -n <= hook.block < n:
            return f"hook {hook}: {name!r} has {n} blocks (indices 0..{n - 1}, or -{n}..-1); block {hook.block} does not exist"
    return None


def unknown_model_message(name: str, known: list[str]) -> str:
    """The message for a model name open_clip does not know, with the closest known names."""
    import difflib

    squash = name.lower().replace("-", "")
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    close += [m for m in known if squash and squash in m.lower().replace("-", "") and m not in close]
    hint = f" Did you mean {', '.join(repr(m) for m in close[:8])}?" if close else ""
    return (f"open_clip does not know a model called {name!r}.{hint} See open_clip.list_models(), or register your "
            "own with open_clip.add_model_config().")
