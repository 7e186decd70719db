"""The paper's generated text: claims chosen from the results (two result sets pointing opposite ways
give opposite sentences), the config-driven notice, the tables, and the reproducibility appendix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from saesuite.report.latex import fmt
from saesuite.report.paper_claims import (
    chance_claim,
    chance_verdict,
    comparison_claims,
    model_claims,
    plan_recipe_claim,
    planted_claims,
    recipe_claims,
    replication_claims,
    run_notice,
    sweep_claims,
)
from saesuite.report.paper_tables import table_comparison, table_hyperparameters
from saesuite.report.paper_sources import pattern_regex, provenance_lines, rule_of, timings, write_timings


def score(value, low, high, chance, p_at_floor=True):
    return {"value": value, "chance": chance, "p_value": 0.05, "p_at_floor": p_at_floor, "permutations": 19,
            "interval": {"low": low, "high": high, "level": 0.95, "rate": "n^0"},
            "spread": {"seeds": {"min": value, "max": value, "count": 1}}}


SCORES = ("topk_overlap", "topk_overlap_b_to_a", "overlap_pairing", "correlation_pairing", "debiased_cka",
          "debiased_cka_codes", "mutual_knn", "mutual_knn_codes")


def comparison(above: bool) -> dict:
    """Every score's interval 0.2-0.3; its chance 0.1 (above chance) or 0.25 (chance inside)."""
    return {"n_images": 1000, "sae_seeds": 1,
            **{key: score(0.25, 0.2, 0.3, 0.1 if above else 0.25) for key in SCORES}}


def test_the_chance_verdict_follows_the_interval():
    assert chance_verdict(score(0.25, 0.2, 0.3, 0.1)) == "above"
    assert chance_verdict(score(0.25, 0.2, 0.3, 0.25)) == "chance"
    assert chance_verdict(score(0.05, 0.01, 0.09, 0.1)) == "below"
    assert chance_verdict({"value": 0.3, "chance": 0.1}) is None  # no interval: nothing is claimed


def test_opposite_results_give_opposite_claims():
    """The issue's example: 'A's features overlap with B's more than chance' only when the interval excludes chance."""
    yes, no = comparison_claims(comparison(True)), comparison_claims(comparison(False))
    assert yes["OverlapAboveChance"].startswith(r"\ModelA{} features overlap with \ModelB{} features more than chance")
    assert no["OverlapAboveChance"].startswith(r"\ModelA{} features do not overlap with \ModelB{} features more than chance")
    assert "lies above its chance level 0.1" in yes["OverlapAboveChance"]
    assert "contains its chance level 0.25" in no["OverlapAboveChance"]
    for key in yes:
        if key != "ComparisonAboveCount":
            assert yes[key] != no[key], key
    assert yes["ComparisonSummary"].startswith("every one of the 8 comparison scores lies above chance")
    assert no["ComparisonSummary"].startswith("none of the 8 comparison scores lies above chance")
    negative = " ".join(v for k, v in no.items() if k.startswith(("Overlap", "Correlation", "Debiased", "Mutual")))
    assert "agree more than chance" not in negative and "features overlap with" not in negative  # only "do not overlap"
    assert "cannot be told apart from chance" in no["DebiasedCkaAboveChance"]
    # a mixed result names what lies above and what does not
    mixed = comparison(True)
    mixed["debiased_cka"] = score(0.25, 0.2, 0.3, 0.4)
    text = comparison_claims(mixed)
    assert "7 of 8 comparison scores lie above chance" in text["ComparisonSummary"]
    assert "debiased linear CKA of the activations does not" in text["ComparisonSummary"]
    assert text["DebiasedCkaAboveChance"].startswith("the two models agree less than chance")


def test_a_claim_quotes_the_numbers_as_the_macros_print_them():
    record = score(0.29629629629629634, 0.24993838266752327, 0.3426542099250694, 0.1382716049382716)
    text = chance_claim(record, "more", "less", "same", "missing")
    for number in (record["interval"]["low"], record["interval"]["high"], record["chance"]):
        assert fmt(number) in text
    assert r"$p \le 1/20$" in text
    assert chance_claim({"value": 1.0, "chance": 0.5}, "more", "less", "same", "missing") == "missing"


def metrics(**fid) -> dict:
    base = {"model": "m", "l0": 16.0, "explained_variance": 0.9, "dead_fraction": 0.0,
            "alignment": {"threshold": 0.5, "neuron_decoder_fraction_above": 0.4,
                          "chance": {"neuron_fraction_above": 0.01, "directions": 4096}},
            "fidelity": {"accuracy_clean": 0.7, "accuracy_spliced": 0.65, "accuracy_ablated": 0.1,
                         "fraction_recovered": 0.92, "chance_accuracy": 0.001, **fid},
            "skipped": {}}
    return base


def test_model_claims_follow_alignment_and_fidelity():
    good = model_claims("A", metrics())
    assert "more than the 0.01 of 4{,}096 random unit directions" in good["AlignmentA"]
    assert good["FidelityA"].startswith(r"splicing the SAE's reconstruction into \ModelA{} lowers")
    at_chance = model_claims("A", metrics(accuracy_clean=0.001))
    assert "classifies at chance" in at_chance["FidelityA"] and "cannot show" in at_chance["FidelityA"]
    unaligned = metrics()
    unaligned["alignment"]["neuron_decoder_fraction_above"] = 0.005
    assert "no more than the 0.01" in model_claims("A", unaligned)["AlignmentA"]
    skipped = metrics()
    skipped["fidelity"], skipped["skipped"] = None, {"fidelity": "not an open_clip model"}
    assert r"not an open\_clip model" in model_claims("A", skipped)["FidelityA"]


def test_replication_claims_set_it_against_the_published_figures():
    published = {"dead_fraction": 0.0, "unaligned_fraction": 0.5}
    ok = replication_claims(metrics(), published)
    assert ok["ReplicationDead"].startswith("as in the baseline")
    dead = metrics()
    dead["dead_fraction"] = 0.3
    assert replication_claims(dead, published)["ReplicationDead"].startswith("unlike the baseline")
    assert "close to" in ok["ReplicationAlignment"]  # 1 - 0.4 = 0.6, within 0.1 of a half
    far = metrics()
    far["alignment"]["neuron_decoder_fraction_above"] = 0.01
    assert "far from" in replication_claims(far, published)["ReplicationAlignment"]


def sweep_row(name, l0_a, l0_b, overlap):
    return {"name": name, "architecture": "topk", "l0_a": str(l0_a), "l0_b": str(l0_b),
            "l0_ratio": str(l0_b / l0_a), "topk_overlap": str(overlap), "topk_overlap_b_to_a": "0.1",
            "debiased_cka_codes": "0.5"}


def test_sweep_claims_follow_the_match_and_the_trend():
    a, b = metrics(), metrics()
    rising = [sweep_row("k8", 8, 8, 0.1), sweep_row("k16", 16, 16, 0.2), sweep_row("k32", 32, 32, 0.3)]
    falling = [sweep_row("k8", 8, 8, 0.3), sweep_row("k16", 16, 16, 0.2), sweep_row("k32", 32, 32, 0.1)]
    assert "rises with $L_0$" in sweep_claims(rising, a, b)["SweepTrend"]
    assert "falls with $L_0$" in sweep_claims(falling, a, b)["SweepTrend"]
    assert "too few" in sweep_claims(rising[:2], a, b)["SweepTrend"]
    assert sweep_claims(rising, a, b)["MatchedLzero"].startswith("the two main SAEs are compared at matched sparsity")
    b["l0"] = 40.0
    assert sweep_claims(rising, a, b)["MatchedLzero"].startswith("the two main SAEs are not matched")
    b["explained_variance"] = 0.95
    assert "explains less" in sweep_claims(rising, a, b)["FidelityOrder"]


def test_recipe_and_planted_claims():
    topk = {"architecture": "topk", "k": 16, "d_sae": 1024, "training": {"architecture": "topk", "recipe": "modern"}}
    relu = {"architecture": "standard", "k": None, "d_sae": 4096,
            "training": {"architecture": "relu", "recipe": "fry2024", "l1_coefficient": 8e-5}}
    same = recipe_claims({"A": topk, "B": topk, "R": relu})
    assert same["SameK"].startswith("both main SAEs are TopK SAEs with the same $k = 16$")
    assert r"recipe \texttt{fry2024}, ReLU with $\lambda$ = 8e-05" in same["Recipes"]
    assert recipe_claims({"A": topk, "B": {**topk, "k": 32}})["SameK"].startswith("the two main SAEs do not share")
    frontier = {"m": [{"name": "relu-l1-8e-5", "architecture": "relu", "l1_coefficient": "8e-05"}]}
    assert r"sweep entry \texttt{relu-l1-8e-5}" in plan_recipe_claim(frontier)["PlanRecipe"]
    assert "not among" in plan_recipe_claim({"m": [{"name": "x", "architecture": "topk", "l1_coefficient": ""}]})["PlanRecipe"]
    perfect = {"correlation_pairing": {"precision": 1.0, "recall": 1.0, "true": 48, "correct": 48, "found": 48}}
    partial = {"correlation_pairing": {"precision": 0.5, "recall": 0.25, "true": 48, "correct": 12, "found": 24}}
    recovery = {"main": {"architecture": "topk", "k": 4, "n_true": 256, "threshold": 0.9, "fraction_above_0.9": 1.0,
                         "mean_best_cosine": 0.99}}
    assert "finds every one of the 48" in planted_claims(recovery, perfect)["PlantedPairing"]
    assert "finds 12 of the 48 shared features (recall 0.25) with precision 0.5" in planted_claims(recovery, partial)["PlantedPairing"]
    assert "recovers every one of the 256" in planted_claims(recovery, perfect)["PlantedRecovery"]


def test_the_notice_is_driven_by_the_config():
    import yaml

    from tests.smoke import REPO

    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    notice = run_notice(smoke, {})
    assert "random weights" in notice and "synthetic" in notice and "support no conclusion" in notice
    assert run_notice(paper, {}) == ""
    real_data = copy.deepcopy(smoke)
    real_data["dataset"]["fixture"] = False
    real_data.pop("fixture")
    assert "random weights" in run_notice(real_data, {}) and "synthetic" not in run_notice(real_data, {})


def test_tables_come_from_the_results():
    text = table_comparison(comparison(True))
    assert r"\label{tab:comparison}" in text and text.count("above") >= 8 and "paper\\_numbers" in text
    cfg = {"architecture": "topk", "k": 16, "d_sae": 1024, "steps": 256, "dead_latent_method_used": "auxk",
           "training": {"recipe": "modern", "architecture": "topk", "lr": 4e-4, "l1_coefficient": 8e-5,
                        "batch_size": 256, "samples": 65536, "auxk_coefficient": 0.03125}}
    table = table_hyperparameters({"A": cfg}, {"A": "model A"})
    assert r"\texttt{modern}" in table and "0.0004" in table and "65{,}536" in table
    row = next(line for line in table.splitlines() if line.startswith("L1 coefficient"))
    assert row.endswith(r"-- \\")  # a TopK SAE has no L1 term


def test_timings_attribute_each_benchmark_to_its_rule(tmp_path, monkeypatch):
    patterns = {"cache_shard": r"run/benchmarks/cache_shard/{model}_{split}_{index,\d{5}}.tsv",
                "figure_frontier": "run/benchmarks/figures/frontier.tsv",
                "figure_training_curve": "run/benchmarks/figures/training_curve_{model}.tsv",
                "provenance": "run/benchmarks/provenance.tsv"}
    assert pattern_regex(patterns["cache_shard"]).match("run/benchmarks/cache_shard/tiny-RN_test_00001.tsv")
    assert rule_of("run/benchmarks/figures/frontier.tsv", patterns) == "figure_frontier"
    assert rule_of("run/benchmarks/other.tsv", patterns) is None
    files = []
    for i, (rel, seconds) in enumerate((("cache_shard/a_train_00000.tsv", 10.0), ("cache_shard/a_train_00001.tsv", 5.0),
                                        ("figures/frontier.tsv", 2.0), ("provenance.tsv", 1.0))):
        path = tmp_path / "run" / "benchmarks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" f"{seconds}\t0:00:10\t{100 + i}\t{seconds / 2}\n")
        files.append(f"run/benchmarks/{rel}")
    monkeypatch.chdir(tmp_path)
    rows = timings(files, patterns)
    assert [r["rule"] for r in rows] == ["cache_shard", "figure_frontier", "provenance"]  # provenance last
    assert rows[0] == {"rule": "cache_shard", "jobs": 2, "wall_s": 15.0, "longest_s": 10.0, "max_rss_mb": 101.0,
                       "cpu_s": 7.5}
    text = write_timings(files, patterns, tmp_path / "t.tex", "run")
    assert r"\label{tab:timings}" in text and "all & 4 & 18.0" in text


def test_the_reproducibility_record_comes_from_provenance():
    record = {"run": "smoke", "config_sha256": "abc", "git": {"commit": "0123abc", "dirty": True},
              "device": {"platform": "Linux", "machine": "x86_64", "python": "3.11.7", "torch": "2.14.1",
                         "torch_cuda": None, "cuda_devices": [], "configured": {"train": "cpu"}},
              "packages": {"torch": "2.14.1", "numpy": "2.4.6", "saesuite": "0.1.0"}, "outputs": {"a": "h"}}
    text = "\n".join(provenance_lines(record))
    assert r"\newcommand{\ReproCommit}{\nolinkurl{0123abc}}" in text
    assert "yes: uncommitted changes" in text and r"\nolinkurl{abc}" in text and "none (CPU only)" in text
    assert "numpy & \\nolinkurl{2.4.6}" in text and json.dumps(record)  # every package listed


def test_the_plans_preliminary_figures_are_set_beside_a_real_cifar10_run_only():
    import yaml

    from saesuite.report.paper_claims import preliminary_claim

    plan = yaml.safe_load((Path(__file__).parents[1] / "paper" / "preliminary.yaml").read_text())
    metrics = {"A": {"model": "RN50", "population_sparsity": 0.0312}, "B": {"model": "ViT-L-14", "population_sparsity": 0.25}}
    real = {"dataset": {"kind": "cifar10", "fixture": False, "download": True}}
    text = preliminary_claim(real, metrics, plan)["Preliminary"]
    assert "0.724" in text and "0.0312 for RN50" in text and "0.25 for ViT-L-14" in text
    assert preliminary_claim({"dataset": {"kind": "cifar10", "fixture": True}}, metrics, plan) == {}
    assert preliminary_claim({"dataset": {"kind": "imagenet"}}, metrics, plan) == {}
