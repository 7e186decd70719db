"""Downstream fidelity of an SAE inside CLIP, and naming latents with class-name text embeddings.

Zero-shot classification: class ``c`` is scored by the cosine between the image
embedding and the text embedding of ``prompt.format(name_c)``; the prediction is the
best-scoring class. Each batch of images runs once up to the hooked module; a
forward hook there returns three variants stacked along the batch, so the rest of
the tower runs on ``[3B, ...]``:

* clean -- the hooked activation unchanged,
* spliced -- the SAE's reconstruction ``decode(encode(h))`` in its place,
* ablated -- the mean activation over the evaluation split in its place.

For ``resid_cls:K`` only the CLS position of block K's output ``[B, L, D]`` is
replaced; for ``attnpool`` the hooked activation is the image embedding itself.
``fraction_recovered = (acc_spliced - acc_ablated) / (acc_clean - acc_ablated)``
(null when clean and ablated accuracies are equal); the same ratio on the
cross-entropy of the zero-shot logits (``logit_scale * cos``) is ``ce_loss_recovered``.
``chance_accuracy`` is ``1 / classes``, the accuracy of a uniform guess.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from saesuite.cache.reader import ActivationCache
from saesuite.models.backbones import Backbone
from saesuite.errors import CacheError, ConfigError
from saesuite.sae.model import SAE

VARIANTS = ("clean", "spliced", "ablated")


@torch.inference_mode()
def class_text_embeddings(backbone: Backbone, classes: list[str], prompt: str) -> Tensor:
    """``[C, e]`` text-tower embeddings (not normalised) of ``prompt.format(name)`` per class."""
    import open_clip

    if not classes:
        raise ConfigError(f"the cache of {backbone.name} names no classes, so there are no prompts to embed")
    tokenizer = open_clip.get_tokenizer(backbone.name)
    device = next(backbone.model.parameters()).device
    tokens = tokenizer([prompt.format(name) for name in classes]).to(device)
    return backbone.model.encode_text(tokens).float()


def name_latents(w_dec: Tensor, text: Tensor, classes: list[str], n_names: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest class names of each decoder direction: ``w_dec [F, e]``, ``text [C, e]``.

    Returns ``(indices [F, m], cosines [F, m])``, ``m = min(n_names, C)``, best first.
    """
    if w_dec.shape[1] != text.shape[1]:
        raise ConfigError(
            f"decoder directions have width {w_dec.shape[1]} but text embeddings {text.shape[1]}: "
            "naming by text needs a hook in CLIP's joint space (attnpool)"
        )
    u = w_dec.float() / w_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    t = text.to(u.device).float()
    t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    m = min(n_names, len(classes))
    values, indices = torch.zeros(len(u), m), torch.zeros(len(u), m, dtype=torch.long)
    for s in range(0, len(u), 4096):
        v, i = (u[s : s + 4096] @ t.T).topk(m, dim=1)
        values[s : s + 4096], indices[s : s + 4096] = v.cpu(), i.cpu()
    return indices.numpy(), values.double().numpy()


def _splice_hook(backbone: Backbone, sae: SAE, mean: Tensor):
    """A forward hook on the hooked module returning ``[clean; spliced; ablated]`` along the batch.

    A ``[B, d]`` output (attnpool) is replaced whole; a ``[B, L, D]`` output (a block of
    open_clip's batch-first transformer) only at the CLS position ``[:, 0]``.
    """
    transformer = getattr(backbone.visual, "transformer", None)
    if transformer is not None and not getattr(transformer, "batch_first", True):
        raise ConfigError("splicing needs open_clip's batch-first transformer ([B, L, D]); upgrade open_clip")

    def hook(_module, _inputs, output):
        h = output if output.dim() == 2 else output[:, 0]
        h_hat = sae.decode(sae.encode(h.float())).to(h.dtype)
        variants = torch.cat([h, h_hat, mean.to(h.dtype).expand_as(h)])
        if output.dim() == 2:
            return variants
        out = output.repeat(3, *([1] * (output.dim() - 1)))
        out[:, 0] = variants
        return out

    return hook


@torch.inference_mode()
def spliced_image_features(backbone: Backbone, sae: SAE, mean: Tensor, images: Tensor) -> Tensor:
    """``images [B, 3, H, W]`` -> ``[3, B, e]`` image embeddings: clean, spliced, ablated."""
    handle = backbone.hook_module.register_forward_hook(_splice_hook(backbone, sae, mean))
    try:
        out = backbone.visual(images)
    finally:
        handle.remove()
    if isinstance(out, tuple):
        out = out[0]
    return out.float().reshape(3, len(images), -1)


def zero_shot_fidelity(
    backbone: Backbone,
    sae: SAE,
    dataset: Dataset,
    classes: list[str],
    mean: Tensor,
    *,
    prompt: str,
    limit: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict:
    """Zero-shot accuracy and cross-entropy of the clean, spliced and mean-ablated model.

    ``dataset`` yields ``(preprocessed image [3, H, W], label)``; its first ``limit``
    images (all when None) are used. ``mean [d]`` is the mean hooked activation.
    """
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise ConfigError("zero-shot fidelity needs at least one image")
    backbone.model.to(device)
    sae = sae.to(device)
    text = class_text_embeddings(backbone, classes, prompt)
    text = text / text.norm(dim=1, keepdim=True)
    scale = float(backbone.model.logit_scale.detach().exp()) if hasattr(backbone.model, "logit_scale") else 100.0
    correct = torch.zeros(3, dtype=torch.float64)
    ce = torch.zeros(3, dtype=torch.float64)
    agree, cos_sum = 0.0, 0.0
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    with tqdm(total=n, unit="img", desc=f"{backbone.name} zero-shot fidelity") as bar:
        for images, labels in loader:
            labels = labels.to(device)
            feats = spliced_image_features(backbone, sae, mean.to(device), images.to(device))  # [3, B, e]
            unit = feats / feats.norm(dim=2, keepdim=True).clamp_min(1e-12)
            logits = scale * unit @ text.T  # [3, B, C]
            pred = logits.argmax(dim=2)
            correct += (pred == labels).sum(dim=1).double().cpu()
            ce += torch.stack([torch.nn.functional.cross_entropy(lg, labels, reduction="sum") for lg in logits]).double().cpu()
            agree += float((pred[1] == pred[0]).sum())
            cos_sum += float((unit[0] * unit[1]).sum())
            bar.update(len(labels))
    acc = (correct / n).tolist()
    loss = (ce / n).tolist()
    return {
        "n_images": n,
        "prompt": prompt,
        **{f"accuracy_{v}": a for v, a in zip(VARIANTS, acc)},
        **{f"ce_loss_{v}": c for v, c in zip(VARIANTS, loss)},
        "chance_accuracy": 1.0 / len(classes),  # guessing uniformly among the classes
        "fraction_recovered": recovered(acc[0], acc[1], acc[2]),
        "ce_loss_recovered": recovered(loss[0], loss[1], loss[2]),
        "prediction_agreement": agree / n,
        "embedding_cosine": cos_sum / n,
    }


def recovered(clean: float, spliced: float, ablated: float) -> float | None:
    """``(spliced - ablated) / (clean - ablated)``; None when clean equals ablated (undefined)."""
    if clean == ablated:
        return None
    return (spliced - ablated) / (clean - ablated)


def check_backbone_matches_cache(backbone: Backbone, dataset, cache: ActivationCache, rows: np.ndarray, device: str) -> None:
    """The model and images of the fidelity test must be those the cache was made from (checked on ``rows``)."""
    images = torch.stack([dataset[int(i)][0] for i in rows]).to(device)
    got = backbone.activations(images).float().cpu().numpy()
    want = cache.gather(rows)
    scale = float(np.abs(want).max()) or 1.0
    if not np.allclose(got, want, rtol=1e-2, atol=1e-2 * scale):
        raise CacheError(
            f"{cache.path}: the model {backbone.name} ({backbone.pretrained or 'random, seed ' + str(backbone.init_seed)}) "
            "does not reproduce the cached activations of the first images; the dataset or the weights differ from "
            "those the cache was built with. Rebuild the cache or point the evaluation at the right dataset."
        )


def split_fidelity(backbone: Backbone, sae: SAE, cache: ActivationCache, images: Dataset, valid: np.ndarray,
                   mean: np.ndarray, classes: list[str], *, n_images: int | None, prompt: str, batch_size: int,
                   device: str) -> dict:
    """:func:`zero_shot_fidelity` on the first ``n_images`` valid images of the cache's split (all if None),
    ablating to the split's ``mean`` activation, once the backbone is shown to reproduce the cache."""
    check_backbone_matches_cache(backbone, images, cache, np.flatnonzero(valid)[:4], device)
    rows = np.flatnonzero(valid)[:n_images]
    return zero_shot_fidelity(
        backbone, sae, Subset(images, rows.tolist()), classes, torch.from_numpy(mean).float(),
        prompt=prompt, batch_size=batch_size, device=device,
    )
