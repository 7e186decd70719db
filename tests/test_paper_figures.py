"""The paper's figures are fit for print: each problem found in review is checked on the drawn figure."""

from __future__ import annotations

import json

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from saesuite import figures
from saesuite.compare import figures as compare_figures
from saesuite.evaluate import figures as eval_figures


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a function saves lands here instead of on disk."""
    out = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: out.append(fig))
    return out


def legend_texts(ax_or_fig) -> list[str]:
    legends = [ax_or_fig.get_legend()] if hasattr(ax_or_fig, "get_legend") else list(ax_or_fig.legends)
    return [t.get_text() for legend in legends if legend for t in legend.get_texts()]


def test_the_heatmap_has_no_grid_lines_over_it(drawn, tmp_path):
    np.savez(tmp_path / "inputs.npz", heatmap=np.abs(np.random.default_rng(0).normal(size=(8, 32))))
    eval_figures.activation_heatmap(tmp_path / "inputs.npz", "unused.png", "t")
    ax = drawn[0].axes[0]
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())


def alignment_inputs():
    table = pd.DataFrame({p: np.linspace(0.1, 0.9, 20) for p in (
        "encoder_neuron_alignment", "decoder_neuron_alignment", "encoder_basis_alignment", "decoder_basis_alignment")})
    chance = {"directions": 4096, "seed": 0, "basis_mean": 0.21, "basis_fraction_above": 0.0, "neuron_mean": 0.37,
              "neuron_fraction_above": 0.01}
    metrics = {"hook": "resid_cls:22", "skipped": {"neuron_alignment": None},
               "alignment": {"threshold": 0.5, "neurons": "visual.transformer.resblocks[22].mlp.c_proj",
                             "chance": chance, "neurons_description": "the 4096 MLP neurons of block 22 (long text)"}}
    return table, metrics


def test_the_alignment_threshold_and_chance_are_in_the_legend(drawn):
    eval_figures.neuron_alignment_histogram(*alignment_inputs(), "unused.png", "t")
    labels = legend_texts(drawn[0].axes[0])
    assert "threshold 0.5" in labels and any(label.startswith("chance") for label in labels)
    assert all(len(line) <= 60 for line in drawn[0].axes[0].get_title().splitlines())


def test_the_zero_shot_bars_draw_chance_in_the_legend_above_the_bars(drawn):
    fid = {"accuracy_clean": 0.1, "accuracy_spliced": 0.1, "accuracy_ablated": 0.1, "fraction_recovered": None,
           "n_images": 100, "chance_accuracy": 0.1}
    eval_figures.fidelity_bars({"fidelity": fid, "classes": list("abcdefghij"), "skipped": {}}, "unused.png", "t")
    ax = drawn[0].axes[0]
    chance = [line for line in ax.lines if tuple(line.get_ydata()) == (0.1, 0.1)]
    assert len(chance) == 1 and chance[0].get_zorder() > max(p.get_zorder() for p in ax.patches)
    assert "chance 1/10" in legend_texts(ax)
    assert ax.get_ylim()[1] > 0.1  # the line is not drawn on the frame


def test_the_sparsity_panel_says_whether_dead_latents_are_in_it(drawn):
    table = pd.DataFrame({"mean_activation": [0.0, 0.1, 0.2], "max_cos_other_encoder": [0.1, 0.2, 0.3],
                          "max_cos_other_decoder": [0.1, 0.2, 0.3]})
    metrics = {"feature_density_histogram": {"log10_edges": [-3, -2, -1, 0], "counts": [0, 1, 1], "never_fire": 1},
               "fraction_firing_above_10pct": 0.5}
    eval_figures.sparsity_panel(table, metrics, "unused.png", "t")
    titles = [ax.get_title() for ax in drawn[0].axes]
    assert "1 never fire" in titles[0] and "not drawn" in titles[0]
    assert "1 with average 0 (not drawn)" in titles[1] and "dead included" in titles[2]


def test_the_training_curve_marks_dead_latents_and_resampling(drawn, tmp_path):
    rows = [{"step": s, "samples": 256 * (s + 1), "loss": 1.0 + (s >= 20), "mse": 1.0, "l0": 16.0,
             "explained_variance": 0.5, "dead": 3 if s >= 20 else 0, "auxk": 0.0, "ghost": 0.0,
             "resampled": 5 if s >= 30 else 0} for s in range(0, 50, 10)]
    log = tmp_path / "train_log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows))
    figures.training_curve(log, "unused.png", "t")
    fig = drawn[0]
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss", "explained variance (batch)",
                                                    "L0 (active latents per input)"]
    marks = {line.get_xdata()[0] for line in fig.axes[1].lines if line.get_linestyle() in ("--", ":")}
    assert marks == {256 * 21.0, 256 * 31.0}
    assert {"total loss", "reconstruction term", "first dead latents", "resampling"} <= set(legend_texts(fig))


def test_the_frontier_draws_no_line_to_a_degenerate_sae(drawn, tmp_path):
    frame = pd.DataFrame({"name": ["main", "relu-a", "relu-b", "relu-dead"], "model": "m",
                          "architecture": ["topk", "relu", "relu", "relu"], "l0": [16.0, 20.0, 40.0, 0.001],
                          "explained_variance": [0.9, 0.92, 0.95, -0.2], "k": [16, None, None, None]})
    frame.to_csv(tmp_path / "f.csv", index=False)
    figures.frontier([tmp_path / "f.csv"], "unused.png")
    fig = drawn[0]
    xs = np.concatenate([line.get_xdata() for line in fig.axes[0].lines])
    assert xs.min() >= 1  # nothing drawn at L0 = 0.001
    assert any("relu-dead" in t.get_text() and "not drawn" in t.get_text() for t in fig.texts)


def test_best_pairs_show_every_top_image_with_class_and_overlap(drawn):
    k = 9
    topk_a = np.arange(2 * k).reshape(2, k)
    topk_b = np.concatenate([np.arange(5), np.arange(100, 104)])[None, :].repeat(2, axis=0)  # 5 shared with a's first
    rows = np.arange(200)
    compare_figures.image_grid([(0, 1)], topk_a, topk_b, rows, lambda i: np.zeros((4, 4, 3)), "unused.png", "t",
                               ("A", "B"), label=lambda i: f"class{i % 3}")
    fig = drawn[0]
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * k
    assert any("overlap 5/9" in ax.get_title(loc="left") for ax in fig.axes)
    assert {ax.get_xlabel() for ax in shown} <= {"class0", "class1", "class2"}
    framed = [ax for ax in shown if next(iter(ax.spines.values())).get_visible()]
    assert len(framed) == 2 * 5  # the shared images, in both blocks


def test_the_similarity_figure_labels_are_short_enough_to_print(drawn, tmp_path):
    record = {"value": 0.5, "chance": 0.01, "p_value": 0.05, "p_at_floor": True, "permutations": 19,
              "interval": {"low": 0.4, "high": 0.6, "level": 0.95, "rate": "sqrt(n)"}, "spread": {}}
    result = {"model_a": "A", "model_b": "B", "n_images": 100, "sae_seeds": 1,
              **{name + suffix: record for name in compare_figures.SIMILARITIES for suffix in ("", "_codes")}}
    (tmp_path / "c.json").write_text(json.dumps(result))
    compare_figures.similarity_bars(tmp_path / "c.json", "unused.png")
    ax = drawn[0].axes[0]
    assert all(len(line) <= 32 for line in ax.get_ylabel().splitlines())
    assert "chance (permutation null mean)" in legend_texts(ax)


def test_figures_are_drawn_at_the_width_they_print(drawn, tmp_path):
    np.savez(tmp_path / "latents.npz", lifetime_sparsity=np.array([0.0, 0.1, 0.01]))
    figures.lifetime_sparsity_histogram(tmp_path / "latents.npz", "unused.png", "model SAE, test split")
    eval_figures.neuron_alignment_histogram(*alignment_inputs(), "unused.png", "t")
    for fig in drawn:
        assert fig.get_figwidth() <= figures.HALF + 1e-9  # printed at half the text width, at this size


def test_top_image_titles_fit_their_column(drawn, tmp_path):
    class Images:
        def __getitem__(self, i):
            from PIL import Image

            return Image.new("RGB", (8, 8)), i % 2

    np.savez(tmp_path / "inputs.npz", top_rows=np.arange(10), top_scores=np.linspace(1, 0.5, 10),
             top_latents=np.tile(np.array([1015, 664, 707, 755, 3]), (10, 1)),
             top_latent_values=np.tile(np.array([0.028, 0.026, 0.024, 0.02, 0.01]), (10, 1)))
    eval_figures.top_images_figure(tmp_path / "inputs.npz", Images(), ["automobile", "cat"], "unused.png", "t")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = drawn[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.images]
    for left, right in zip(boxes, boxes[1:]):
        if abs(left.y0 - right.y0) < 1:  # neighbours in one row do not overlap
            assert left.x1 <= right.x0, (left, right)
