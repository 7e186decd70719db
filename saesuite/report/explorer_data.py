"""What the feature explorer shows, computed from the evaluation's and the comparison's files only.

One definition of a latent's state is used by every page and by ``site.json``, the evaluation's own:

* **dead** -- ``latents.csv``'s ``dead`` column (total activation over the eval split at most the
  evaluation's ``dead_threshold``; at the default 0, it never fired). ``metrics.json``'s
  ``dead_fraction`` is the share of these, so *alive* = ``d_sae * (1 - dead_fraction)``.
* **rare** -- alive, but firing on fewer than ``k`` images: its page shows "its N images", and the
  comparison (which needs a full top-k, :func:`saesuite.compare.overlap.alive_features`) cannot pair it.
* **pairable** -- a full top-k: the features the comparison pairs (its ``alive_a``/``alive_b``).

A feature counts as *paired* when its one-to-one overlap match (``pairs.csv``) reaches the comparison's
``settings.overlap_threshold``, and as *without partner* when no feature of the other model reaches that
threshold with it at all (its best overlap is below it), so the unpaired list never shows a feature
whose best overlap is above the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from saesuite.compare.feature_map import FEATURE_MAP_CSV, read_feature_map
from saesuite.compare.overlap import overlap_counts
from saesuite.evaluate.distributions import LATENT_STATS_NPZ, read_latent_stats
from saesuite.evaluate.naming import NAMES_JSON, read_names
from saesuite.evaluate.results import INPUTS_NPZ, LATENTS_CSV, LATENTS_NPZ, METRICS, read_metrics


def rounded(x, digits: int = 4) -> list:
    """Floats to ``digits`` significant digits (NaN/inf to None) for compact JSON."""
    return [float(f"{v:.{digits}g}") if np.isfinite(v) else None for v in np.asarray(x, np.float64).ravel()]


def label_distribution(class_activation: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``m`` classes ``[F, m]`` of each latent by activation mass and their shares ``[F, m]`` (0 if silent)."""
    mass = class_activation.T  # [F, C]
    total = mass.sum(1, keepdims=True)
    share = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    m = min(m, share.shape[1])
    order = np.argsort(-share, axis=1, kind="stable")[:, :m]
    return order, np.take_along_axis(share, order, 1)


def best_partners(topk_a: np.ndarray, topk_b: np.ndarray, alive_a: np.ndarray, alive_b: np.ndarray, n: int, k: int):
    """Each pairable feature's best partner by top-k overlap, both ways (ties to the lower index).

    ``topk_* [F, k]`` rows, ``alive_* [F]`` bool (a full top-k). Returns ``(partner_a [F_A], overlap_a [F_A],
    partner_b [F_B], overlap_b [F_B])``; ``-1`` / NaN for features that cannot be paired, ``-1`` / 0 for
    pairable ones sharing no image with any pairable feature of the other model.
    """
    fa, fb = np.flatnonzero(alive_a), np.flatnonzero(alive_b)
    counts = sp.coo_matrix(overlap_counts(topk_a[fa], topk_b[fb], n))

    def argmax(rows, cols, vals, ids_rows, ids_cols, total):
        partner, overlap = np.full(total, -1, np.int64), np.full(total, np.nan)
        overlap[ids_rows] = 0.0
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
        partner[ids_rows[rows[first]]] = ids_cols[cols[first]]
        overlap[ids_rows[rows[first]]] = vals[first] / k
        return partner, overlap

    pa, oa = argmax(counts.row, counts.col, counts.data.astype(float), fa, fb, len(alive_a))
    pb, ob = argmax(counts.col, counts.row, counts.data.astype(float), fb, fa, len(alive_b))
    return pa, oa, pb, ob


@dataclass
class Comparison:
    """What the site shows of the comparison: settings, best partners both ways, and the matched pairs."""

    record: dict  # comparison.json
    k: int
    n_images: int
    kept_rows: np.ndarray  # compare's row i is cache row kept_rows[i]
    pairable: tuple[np.ndarray, np.ndarray]  # [F] per side: a full top-k (the comparison's "alive")
    partners: tuple[np.ndarray, np.ndarray]  # best partner by top-k overlap, and its overlap
    partner_overlap: tuple[np.ndarray, np.ndarray]
    match: tuple[np.ndarray, np.ndarray]  # the one-to-one overlap matching (pairs.csv), -1 if none
    match_overlap: tuple[np.ndarray, np.ndarray]
    threshold: float  # comparison.json's settings.overlap_threshold: a pair at or above it is shared

    def paired(self, side: int) -> np.ndarray:
        """``[F]``: matched one-to-one at an overlap at or above the threshold."""
        return np.nan_to_num(self.match_overlap[side]) >= self.threshold


def read_comparison(compare_dir: Path, names: list[str]) -> Comparison:
    """The comparison of models ``names`` (in its order) from ``comparison.json``, ``topk_overlap.npz`` and ``pairs.csv``."""
    record = json.loads((compare_dir / "comparison.json").read_text())
    if (record["model_a"], record["model_b"]) != tuple(names):
        raise ValueError(f"{compare_dir} compares {record['model_a']} with {record['model_b']}, not {names[0]} with {names[1]}")
    overlap = np.load(compare_dir / "topk_overlap.npz")
    k, n_compare = int(record["k"]), int(record["n_images"])
    topk = (overlap["topk_a"], overlap["topk_b"])
    pairable = tuple((t >= 0).all(1) for t in topk)
    pa, oa, pb, ob = best_partners(topk[0], topk[1], pairable[0], pairable[1], n_compare, k)
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    matched = pairs[pairs["method"] == "overlap"]
    match = (np.full(len(pairable[0]), -1, np.int64), np.full(len(pairable[1]), -1, np.int64))
    match_overlap = (np.full(len(pairable[0]), np.nan), np.full(len(pairable[1]), np.nan))
    fa, fb = matched["feature_a"].to_numpy(int), matched["feature_b"].to_numpy(int)
    match[0][fa], match[1][fb] = fb, fa
    match_overlap[0][fa] = match_overlap[1][fb] = matched["topk_overlap"].to_numpy(float)
    return Comparison(record, k, n_compare, overlap["rows"], pairable, (pa, pb), (oa, ob), match, match_overlap,
                      float(record["settings"]["overlap_threshold"]))


@dataclass
class Evaluation:
    """One model's evaluation files, as the site uses them."""

    metrics: dict
    table: pd.DataFrame  # latents.csv
    top_rows: np.ndarray  # [F, k] top-k rows (-1: none)
    top_values: np.ndarray  # [F, k]
    stats: dict  # latent_stats.npz
    labels: np.ndarray  # [n] class of each row of the split (inputs.npz)
    naming: dict  # method -> {description, score, names [F][m] class indices, cosines [F][m]}; primary first
    naming_skipped: dict  # method -> why it did not run

    @classmethod
    def read(cls, eval_dir: Path) -> "Evaluation":
        npz = np.load(eval_dir / LATENTS_NPZ)
        metrics, table = read_metrics(eval_dir / METRICS), pd.read_csv(eval_dir / LATENTS_CSV)
        return cls(metrics, table, npz["topk_indices"], npz["topk_values"], read_latent_stats(eval_dir / LATENT_STATS_NPZ),
                   np.load(eval_dir / INPUTS_NPZ)["labels"], *naming_methods(eval_dir, metrics, table))

    @property
    def alive(self) -> np.ndarray:
        """``[F]`` not dead, by the evaluation's own ``dead`` column (see the module docstring)."""
        return ~self.table["dead"].to_numpy(bool)

    @property
    def names(self) -> list[str] | None:
        """Each latent's names by the primary naming method, best first, ``|``-separated ("" where unnamed), or None."""
        if not self.naming:
            return None
        classes = self.metrics["classes"]
        return ["|".join(classes[c] for c in row) for row in next(iter(self.naming.values()))["names"]]


def naming_methods(eval_dir: Path, metrics: dict, table: pd.DataFrame) -> tuple[dict, dict]:
    """The latents' names in words by each method that ran, the primary one first, and why the others did
    not run: from ``names.json`` (:mod:`saesuite.evaluate.naming`: every hook), or for an evaluation
    without it the decoder-direction names of ``latents.csv`` (attnpool hooks)."""
    if (eval_dir / NAMES_JSON).is_file():
        record = read_names(eval_dir)
        order = [record["primary"]] + [m for m in record["methods"] if m != record["primary"]]
        methods = {m: record["methods"][m] for m in order}
        return ({m: r for m, r in methods.items() if r["skipped"] is None},
                {m: r["skipped"] for m, r in methods.items() if r["skipped"] is not None})
    if "text_names" not in table or metrics.get("text_naming") is None:
        return {}, {"decoder": (metrics.get("skipped") or {}).get("text_naming") or "not run"}
    index = {c: i for i, c in enumerate(metrics["classes"])}
    prompt = metrics["text_naming"]["prompt"]
    return {"decoder": {
        "description": f"the classes whose text embedding of '{prompt}' has the largest cosine with the latent's decoder direction",
        "score": {"mean_best_cosine": metrics["text_naming"]["mean_best_cosine"]},
        "names": [[index[c] for c in str(row).split("|")] for row in table["text_names"]],
        "cosines": [[float(c) for c in str(row).split(";")] for row in table["text_cosines"]]}}, {}


def state_counts(ev: Evaluation, k: int) -> dict:
    """Latents, alive, rare (alive with fewer than ``k`` images) and dead: the one count used on every page."""
    alive = ev.alive
    rare = alive & (ev.table["fire_count"].to_numpy() < k)
    return {"latents": len(alive), "alive": int(alive.sum()), "rare": int(rare.sum()), "dead": int((~alive).sum())}


def index_columns(ev: Evaluation, comp: Comparison, side: int) -> dict:
    """``data/{model}/index.js``'s per-latent table, column-wise."""
    table = ev.table
    columns = {
        "latent": table["latent"].astype(int).tolist(),
        "alive": ev.alive.astype(int).tolist(),
        "fires": table["fire_count"].astype(int).tolist(),
        "density": rounded(table["lifetime_sparsity"]),
        "mean_activation": rounded(table["mean_activation"]),
        "max_activation": rounded(ev.stats["max_activation"]),
        "label_entropy": rounded(table["label_entropy"]),
        "top_class": table["top_class"].astype(int).tolist(),
        "top_class_share": rounded(table["top_class_share"]),
        "neuron_alignment": rounded(table["encoder_neuron_alignment"] if "encoder_neuron_alignment" in table
                                    else np.full(len(table), np.nan)),
        "partner": comp.partners[side].tolist(),
        "partner_overlap": rounded(comp.partner_overlap[side]),
        "match": comp.match[side].tolist(),
        "match_overlap": rounded(comp.match_overlap[side]),
    }
    if ev.names is not None:
        columns["names"] = ev.names
    return columns


def feature_records(ev: Evaluation, labels: tuple[np.ndarray, np.ndarray], start: int, stop: int) -> list[dict]:
    """Latents ``start..stop-1``: top-k, activation histogram (its edges are ``max * j / bins``), label
    distribution (``labels``: :func:`label_distribution` of every latent), and the activation-band samples
    with the bands' edges and counts."""
    label_idx, label_share = labels
    s = ev.stats
    out = []
    for i in range(start, stop):
        valid, shown = ev.top_rows[i] >= 0, label_share[i] > 0
        by_value = np.argsort(-s["band_values"][i], axis=1, kind="stable")  # each band's samples, largest first
        band_rows, band_values = (np.take_along_axis(s[a][i], by_value, 1) for a in ("band_rows", "band_values"))
        band_ok = band_rows >= 0
        out.append({
            "rows": ev.top_rows[i][valid].tolist(),
            "acts": rounded(ev.top_values[i][valid]),
            "max": rounded(s["max_activation"][i : i + 1])[0],
            "hist": s["histogram"][i].tolist(),
            "labels": label_idx[i][shown].tolist(),
            "shares": rounded(label_share[i][shown], 3),
            "band_edges": rounded(s["band_edges"][i]),
            "band_counts": s["band_counts"][i].tolist(),
            "band_rows": [r[ok].tolist() for r, ok in zip(band_rows, band_ok)],
            "band_acts": [rounded(v[ok]) for v, ok in zip(band_values, band_ok)],
            "names": {m: [record["names"][i], rounded(record["cosines"][i], 3)] for m, record in ev.naming.items()},
        })
    return out


def pair_page(ev: Evaluation, comp: Comparison, side: int, rows: int) -> dict:
    """A pairs page: the best one-to-one pairs from this side, and the densest pairable features that no
    feature of the other model reaches the threshold with (best overlap below it)."""
    pairable, match, match_overlap = comp.pairable[side], comp.match[side], comp.match_overlap[side]
    density = ev.table["lifetime_sparsity"].to_numpy()
    lone = np.flatnonzero(pairable & (np.nan_to_num(comp.partner_overlap[side]) < comp.threshold))
    lone = lone[np.argsort(-density[lone], kind="stable")][:rows]
    feats = np.flatnonzero(pairable & (match >= 0))
    feats = feats[np.lexsort((feats, -match_overlap[feats]))][:rows]
    return {"best": feats.tolist(), "unpaired": lone.tolist(), "unpaired_total": int(
        (pairable & (np.nan_to_num(comp.partner_overlap[side]) < comp.threshold)).sum()),
        "paired_total": int(comp.paired(side).sum()), "pairable": int(pairable.sum())}


def first_names(ev: Evaluation) -> np.ndarray | None:
    """``[F]`` each latent's first (best) name, or None when the evaluation named none."""
    names = ev.names
    return None if names is None else np.array([n.split("|")[0] for n in names], dtype=object)


def concept(evals: list[Evaluation], comp: Comparison, c: int, classes: list[str], limit: int, strip: int) -> dict:
    """Class ``c``'s page: per model, its alive features about ``c`` -- by label distribution (top class
    ``c``; largest share first, rare features after the others, as a share over a handful of images says
    little) and by name (first name ``c``) -- each with its top images and its one-to-one partner in the
    other model, and how many of them pair across the models."""
    out = {"class": c, "models": []}
    for side, ev in enumerate(evals):
        table, other = ev.table, evals[1 - side].table
        share = np.nan_to_num(table["top_class_share"].to_numpy())
        about = np.flatnonzero(ev.alive & (table["top_class"].to_numpy() == c))
        rare = table["fire_count"].to_numpy() < comp.k
        about = about[np.lexsort((about, -share[about], rare[about]))]
        names = first_names(ev)
        named = np.flatnonzero(ev.alive & (names == classes[c])) if names is not None else np.zeros(0, int)
        paired = comp.paired(side)
        match = comp.match[side]
        partner_class = np.where(match >= 0, other["top_class"].to_numpy()[np.maximum(match, 0)], -1)

        def rows(ids):
            return [{"latent": int(i), "share": rounded([share[i]], 3)[0], "density": rounded([table["lifetime_sparsity"][i]])[0],
                     "name": "" if names is None else ev.names[i].replace("|", ", "),
                     "top": ev.top_rows[i][ev.top_rows[i] >= 0][:strip].tolist(), "match": int(match[i]),
                     "match_overlap": rounded([comp.match_overlap[side][i]], 3)[0], "paired": bool(paired[i]),
                     "match_class": int(partner_class[i])} for i in ids[:limit]]

        out["models"].append({
            "by_label": rows(about), "n_by_label": len(about), "by_name": rows(named), "n_by_name": len(named),
            "named": names is not None, "paired": int(paired[about].sum()),
            "paired_same_class": int((paired[about] & (partner_class[about] == c)).sum()),
        })
    return out


def map_points(compare_dir: Path, names: list[str]) -> dict | None:
    """``data/map.js``: the comparison's feature map (:mod:`saesuite.compare.feature_map`), per model the placed
    features' latent, x, y and top class, with the map's method and quality; None for a comparison without one."""
    if not (compare_dir / FEATURE_MAP_CSV).is_file():
        return None
    table, record = read_feature_map(compare_dir)
    placed = table[table["alive"] & table["x"].notna()]
    models = []
    for name in names:
        rows = placed[placed["model"] == name]
        models.append({"latent": rows["latent"].astype(int).tolist(), "x": rounded(rows["x"]), "y": rounded(rows["y"]),
                       "top_class": rows["top_class"].astype(int).tolist()})
    return {"models": models, "method": record.get("method"), "quality": record.get("quality")}
