"""Naming every latent in words, for any hook: the class prompts nearest its top images' CLIP embedding.

Method (``top_images``, every hook and model). For latent ``i`` with top-k images ``R_i`` (the
evaluation pass's top-k rows with a positive activation), take each image's final CLIP image
embedding ``e_r`` (the vision tower's output, the cache's ``embed-NNNNN.npy``), normalised to unit
length; their mean ``m_i = mean_{r in R_i} e_r / |e_r|``; and the text embedding ``t_c`` of
``prompt.format(class_c)`` for each class (CLIP's text tower). The names of latent ``i`` are the
classes with the largest cosine ``cos(m_i, t_c)``, best first, with those cosines as scores. It is
CLIP zero-shot classification of the latent's top images taken together, so it works for a hook
that is not in CLIP's joint space (ViT-L/14's residual stream) as for one that is (RN50's attnpool).

Method (``decoder``, attnpool hooks only): the classes whose text embedding is nearest the latent's
decoder direction (the hooked space is CLIP's joint image-text space there).

Scores of the whole naming (``score``): ``mean_best_cosine``, the mean over named latents of the
best name's cosine; ``label_agreement``, the fraction of named latents whose best name is the most
frequent dataset label among its top-k images (ties to the lower class index), with
``label_agreement_chance`` its value for names drawn at random, ``1/C``;
and ``image_zero_shot_accuracy``, the same text matching applied to single images of the split
against their labels (how far CLIP's zero-shot naming can be trusted on these images at all).

File ``eval/{sae}/names.json`` (schema ``saesuite/schemas/names.schema.json``; read it with
:func:`read_names`)::

    {"model", "hook", "prompt", "classes": [C names], "latents": F,
     "primary": "top_images",
     "methods": {
        "top_images": {"description": str, "skipped": null | str, "top_k": k, "names_per_latent": m,
                       "score": {"named_latents", "mean_best_cosine", "label_agreement",
                                 "label_agreement_chance", "image_zero_shot_accuracy"},
                       "names":   [[class index, ... m] per latent; [] for a latent with no top image],
                       "cosines": [[cosine, ... m] per latent]},   (top_images: over latents with >= 1 image)
        "decoder":    {the same keys; "skipped" says why for a hook outside CLIP's joint space}}}

A skipped method (no backbone, a cache without image embeddings) has ``skipped`` set, ``score``
null and empty ``names`` / ``cosines``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from saesuite.cache.reader import ActivationCache
from saesuite.evaluate.fidelity import class_text_embeddings, name_latents
from saesuite.files import write_json_atomic
from saesuite.schema import validate

if TYPE_CHECKING:
    from saesuite.models.backbones import Backbone
    from saesuite.sae.model import SAE

NAMES_JSON = "names.json"
PRIMARY = "top_images"
METHODS = {
    "top_images": (
        "CLIP zero-shot naming of each latent's top-k images taken together: the mean of their final CLIP image "
        "embeddings (each scaled to unit length) is compared by cosine with the text embedding of "
        "'{prompt}' for every class; the latent's names are the nearest classes, each with its cosine"),
    "decoder": (
        "the classes whose text embedding of '{prompt}' has the largest cosine with the latent's decoder "
        "direction (only for a hook in CLIP's joint image-text space, the attention pool's output)"),
}
ZERO_SHOT_CHUNK = 8192  # images per block of the single-image zero-shot accuracy


@dataclass(frozen=True)
class Naming:
    """How latents are named: evaluation's ``prompt``, ``text_names`` and ``top_k`` settings (their defaults
    are :class:`~saesuite.evaluate.evaluation.EvalConfig`'s)."""

    prompt: str
    names_per_latent: int
    top_k: int  # images per latent (the evaluation's top-k)


def mean_top_embeddings(cache: ActivationCache, topk_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``topk_rows [F, k]`` (-1: none) -> (``[F, e]`` mean of the unit-length embeddings of each latent's top
    images, zeros for a latent with none; ``[F]`` how many images each mean is over). Each image is read once."""
    used = topk_rows >= 0
    rows, inverse = np.unique(topk_rows[used], return_inverse=True)
    unit = cache.embeddings(rows).astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    counts = used.sum(1)
    member = _by_latent(counts, inverse, len(rows))  # [F, images read]: 1 where the image is in the latent's top-k
    return (member @ unit) / np.maximum(counts, 1)[:, None], counts


def majority_labels(topk_rows: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``[F]``: the most frequent label among each latent's top images (ties to the lower class; -1: no image)."""
    used = topk_rows >= 0
    votes = _by_latent(used.sum(1), labels[topk_rows[used]], n_classes).toarray()
    return np.where(used.any(1), votes.argmax(1), -1)


def _by_latent(counts: np.ndarray, columns: np.ndarray, width: int) -> sp.csr_matrix:
    """``[F, width]`` sums of ones: latent ``i`` (whose entries are the next ``counts[i]`` of ``columns``) gets a
    one in each of its columns (repeated columns add up)."""
    latents = np.repeat(np.arange(len(counts)), counts)
    return sp.csr_matrix((np.ones(len(columns)), (latents, columns)), shape=(len(counts), width))


def image_zero_shot_accuracy(cache: ActivationCache, labels: np.ndarray, text: torch.Tensor) -> float | None:
    """Accuracy of naming single valid images by their nearest class text embedding (the method's ceiling)."""
    rows = cache.valid_indices()
    t = torch.nn.functional.normalize(text.float().cpu(), dim=1)
    hits = 0
    for s in range(0, len(rows), ZERO_SHOT_CHUNK):
        block = rows[s : s + ZERO_SHOT_CHUNK]
        scores = torch.from_numpy(cache.embeddings(block)) @ t.T  # the images' norms do not change the argmax
        hits += int((scores.argmax(1).numpy() == labels[block]).sum())
    return hits / len(rows) if len(rows) else None


def method_record(method: str, prompt: str, top_k: int, indices: np.ndarray, cosines: np.ndarray,
                  named: np.ndarray, score: dict) -> dict:
    """One method's entry of ``names.json``: its words, its score, and each latent's names (empty where unnamed)."""
    return {
        "description": METHODS[method].format(prompt=prompt),
        "skipped": None,
        "top_k": top_k,
        "names_per_latent": int(indices.shape[1]),
        "score": {"named_latents": int(named.sum()), "mean_best_cosine": _mean(cosines[named, 0]), **score},
        "names": [row.tolist() if ok else [] for row, ok in zip(indices, named)],
        "cosines": [[round(float(c), 6) for c in row] if ok else [] for row, ok in zip(cosines, named)],
    }


def skipped_record(method: str, prompt: str, top_k: int, reason: str) -> dict:
    return {"description": METHODS[method].format(prompt=prompt), "skipped": reason, "top_k": top_k,
            "names_per_latent": 0, "score": None, "names": [], "cosines": []}


def top_image_names(cache: ActivationCache, topk_rows: np.ndarray, labels: np.ndarray, text: torch.Tensor,
                    classes: list[str], cfg: Naming) -> dict:
    """The ``top_images`` method's record: names from the mean top-image embedding, label agreement and ceiling."""
    means, counts = mean_top_embeddings(cache, topk_rows)
    indices, cosines = name_latents(torch.from_numpy(means), text, classes, cfg.names_per_latent)
    named = counts > 0
    majority = majority_labels(topk_rows, labels, len(classes))
    score = {
        "label_agreement": _mean(indices[named, 0] == majority[named]),
        "label_agreement_chance": 1 / len(classes),
        "image_zero_shot_accuracy": image_zero_shot_accuracy(cache, labels, text),
    }
    return method_record("top_images", cfg.prompt, cfg.top_k, indices, cosines, named, score)


def name_latents_in_words(table: pd.DataFrame, sae: SAE, cache: ActivationCache, topk_rows: np.ndarray,
                          labels: np.ndarray, classes: list[str], backbone: Backbone | None, skipped: dict,
                          cfg: Naming) -> tuple[dict | None, dict]:
    """Name every latent both ways; return ``(metrics' text_naming summary or None, names.json's content)``.

    The ``decoder`` method also fills the table's ``text_names``, ``text_cosines`` and ``text_best_cosine``
    columns (attnpool hooks). ``skipped``: evaluation's reasons, whose ``text_naming`` applies to it.
    """
    text = class_text_embeddings(backbone, classes, cfg.prompt) if backbone is not None else None
    methods, summary = {}, None
    if text is None:
        methods[PRIMARY] = skipped_record(PRIMARY, cfg.prompt, cfg.top_k, skipped["text_naming"])
    elif cache.embeds is None:
        methods[PRIMARY] = skipped_record(PRIMARY, cfg.prompt, cfg.top_k, "the cache holds no image embeddings")
    else:
        methods[PRIMARY] = top_image_names(cache, topk_rows, labels, text, classes, cfg)
    if skipped["text_naming"] is not None:
        methods["decoder"] = skipped_record("decoder", cfg.prompt, cfg.top_k, skipped["text_naming"])
    else:
        indices, cosines = name_latents(sae.W_dec.detach(), text, classes, cfg.names_per_latent)
        table["text_names"] = ["|".join(classes[i] for i in row) for row in indices]
        table["text_cosines"] = [";".join(f"{c:.4f}" for c in row) for row in cosines]
        table["text_best_cosine"] = cosines[:, 0]
        summary = {"prompt": cfg.prompt, "names_per_latent": int(indices.shape[1]),
                   "mean_best_cosine": float(cosines[:, 0].mean())}
        methods["decoder"] = method_record("decoder", cfg.prompt, cfg.top_k, indices, cosines,
                                           np.ones(len(indices), bool), {})
    names = {"model": cache.manifest["model"], "hook": cache.manifest["hook"], "prompt": cfg.prompt,
             "classes": classes, "latents": int(len(topk_rows)), "primary": PRIMARY, "methods": methods}
    return summary, names


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def write_names(out_dir: str | Path, names: dict) -> Path:
    """Write ``names.json`` after checking it against its schema."""
    validate(names, "names")
    path = Path(out_dir) / NAMES_JSON
    write_json_atomic(path, names)
    return path


def read_names(path: str | Path) -> dict:
    """A ``names.json`` (the file or its evaluation folder), checked against its schema."""
    path = Path(path)
    path = path / NAMES_JSON if path.is_dir() else path
    names = json.loads(path.read_text())
    validate(names, "names")
    return names


def latent_names(names: dict, latent: int, method: str | None = None) -> list[tuple[str, float]]:
    """``[(class name, cosine), ...]`` of ``latent`` by ``method`` (the primary one by default), best first;
    empty for an unnamed latent or a skipped method."""
    record = names["methods"][method or names["primary"]]
    if record["skipped"] is not None or not record["names"][latent]:
        return []
    return [(names["classes"][c], cos) for c, cos in zip(record["names"][latent], record["cosines"][latent])]
