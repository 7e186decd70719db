"""saesuite diff-runs: two fake run folders (provenance, metrics.json, comparison.json) and a reference."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from saesuite.cli import main
from saesuite.report.diff_runs import COMPARISON_SCORES, headline_keys, headline_numbers
from saesuite.report.run_values import flatten, split_key
from saesuite.errors import ConfigError
from saesuite.files import sha256_file
from saesuite.report.provenance import config_hash

PAIR = "compare/tiny-RN__tiny-ViT/comparison.json"
CONFIG = {
    "run": "fake",
    "models": {"tiny-RN": {"pretrained": None, "hook": "attnpool"}, "tiny-ViT": {"pretrained": None, "hook": "resid_cls:-2"}},
    "compare": {"a": "tiny-RN", "b": "tiny-ViT", "k": 9, "permutations": 19},
    "train": {"samples": 65536, "l1_coefficient": 8e-5},
}
PACKAGES = {"saesuite": "0.1.0", "torch": "2.14.1", "numpy": "2.3.1"}


def metrics(ev: float, l0: float, dead: float) -> dict:
    """A metrics.json with some of the schema's fields (flat numbers, a nested object, a list)."""
    return {"n": 1000, "explained_variance": ev, "l0": l0, "dead_fraction": dead, "d_sae": 1024,
            "architecture": "standard", "relative_reconstruction_bias": None,
            "average_activation": {"min": 0.0, "p10": 0.01, "median": 0.02, "mean": 0.03, "p90": 0.05, "max": 0.4},
            "feature_density_histogram": {"log10_edges": [-6.0, -3.0, 0.0], "counts": [10, 900], "never_fire": 114}}


def score(value: float | None) -> dict:
    """A comparison score record with the schema's fields."""
    return {"value": value, "chance": 0.01, "analytic_chance": None, "null_mean": 0.01, "null_sd": 0.002,
            "null_q95": 0.015, "p_value": 0.05, "permutations": 19, "n": 1000, "on": "SAE codes",
            "spread": {"method": "disjoint folds", "folds": 2, "n_per_fold": 500, "mean": value, "sd": 0.0,
                       "min": value, "max": value, "seeds": None}}


def comparison() -> dict:
    out = {"model_a": "tiny-RN", "model_b": "tiny-ViT", "n_images": 1000, "k": 9, "latents_a": 1024, "latents_b": 1024,
           "alive_a": 900, "alive_b": 800, "dead_a": 124, "dead_b": 224, "tie_rule": "lower index",
           "overlap_pairing_b": 0.25, "overlap_pairing_count": 200, "correlation_pairing_b": 0.5,
           "correlation_pairing_count": 400}
    for i, name in enumerate(COMPARISON_SCORES):
        out[name] = score(round(0.1 + 0.05 * i, 4))
    return out


def results() -> dict[str, dict | str]:
    return {
        "eval/tiny-RN/metrics.json": metrics(0.8, 12.5, 0.1),
        "eval/tiny-ViT/metrics.json": metrics(0.7, 20.0, 0.2),
        PAIR: comparison(),
        "sweep/tiny-RN/frontier.csv": "name,l0,explained_variance\nrelu,12.5,0.8\n",
        "logs/train_sae/tiny-RN.log": "took 3.1 s\n",
    }


def write_run(root: Path, files: dict | None = None, config: dict | None = None, packages: dict | None = None,
              provenance: bool = True) -> Path:
    """A run folder: the files, and a provenance.json with their sha256 (as saesuite.report.provenance writes it)."""
    files = results() if files is None else files
    config = CONFIG if config is None else config
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2, sort_keys=True) + "\n")
    if provenance:
        record = {"run": config["run"], "git": {"commit": "abc", "dirty": False}, "config": config,
                  "config_sha256": config_hash(config), "packages": packages or PACKAGES,
                  "device": {"configured": {"train": "cpu"}, "python": "3.12.3"},
                  "outputs": {rel: sha256_file(root / rel) for rel in sorted(files)}}
        (root / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return root


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    code = main(["diff-runs", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def changed(key: str, value) -> dict:
    """results() with the value at ``key`` (``<path>:<dotted.key>``) replaced."""
    files = results()
    path, dotted = split_key(key)
    node = files[path]
    *parents, last = dotted.split(".")
    for name in parents:
        node = node[int(name)] if isinstance(node, list) else node[name]
    node[last] = value
    return files


def test_identical_runs_pass_with_every_file_identical(tmp_path, capsys):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    code, out, err = run_cli([a, b], capsys)
    assert code == 0, out + err
    assert "5 identical, 0 differ, 0 only in A, 0 only in B" in out
    n_leaves = sum(len(flatten(v)) for v in results().values() if isinstance(v, dict))
    assert out.strip().splitlines()[-1] == f"diff-runs: 0 files differ, 0 values out of tolerance (of {n_leaves} checked)"
    assert "config: 0 differ" in out and "packages: 0 differ, 3 equal" in out

    code, out, _ = run_cli([a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["values"] == []
    assert report["files"]["identical"] == sorted(results()) and report["json_files"] == 3
    assert report["checked"] == n_leaves


def test_one_changed_number_fails_without_tolerance_and_passes_within_one(tmp_path, capsys):
    key = "eval/tiny-RN/metrics.json:explained_variance"
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", changed(key, 0.8004))

    code, out, _ = run_cli([a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert report["files"]["differing"] == ["eval/tiny-RN/metrics.json"]
    assert len(report["files"]["identical"]) == 4
    [entry] = report["values"]
    assert (entry["key"], entry["a"], entry["b"], entry["status"]) == (key, 0.8, 0.8004, "out of tolerance")
    assert entry["abs_diff"] == pytest.approx(4e-4)

    code, out, _ = run_cli([a, b], capsys)
    assert code == 1
    assert "  differs    eval/tiny-RN/metrics.json" in out
    assert f"out of tolerance     {key}  A=0.8  B=0.8004" in out
    assert out.strip().splitlines()[-1].startswith("diff-runs: 1 files differ, 1 values out of tolerance (of ")

    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"numbers": {key: {"abs": 1e-3}}}))
    code, out, _ = run_cli([a, b, "--tolerances", loose], capsys)
    assert code == 0, out
    assert f"within tolerance     {key}" in out

    relative = tmp_path / "relative.json"
    relative.write_text(json.dumps({"numbers": {key: {"rel": 1e-3}}}))  # 4e-4 <= 1e-3 * 0.8004
    assert run_cli([a, b, "--tolerances", relative], capsys)[0] == 0

    tight = tmp_path / "tight.json"
    tight.write_text(json.dumps({"numbers": {key: {"abs": 1e-4, "rel": 1e-4}}}))
    code, out, _ = run_cli([a, b, "--tolerances", tight], capsys)
    assert code == 1 and f"out of tolerance     {key}" in out and "(abs 0.0001, rel 0.0001)" in out

    other = tmp_path / "other.json"  # a tolerance for another key: this one differs with none stated
    other.write_text(json.dumps({"numbers": {"eval/tiny-RN/metrics.json:l0": {"abs": 1.0}}}))
    code, out, _ = run_cli([a, b, "--tolerances", other, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["values"][0]["status"] == "no tolerance stated"
    assert report["summary"]["no_tolerance_stated"] == 1 and report["unused_tolerances"] == []


def test_strings_nulls_and_missing_keys_fail_only_without_tolerances_or_when_listed(tmp_path, capsys):
    a = write_run(tmp_path / "a")
    files = changed("eval/tiny-ViT/metrics.json:architecture", "topk")
    files[PAIR]["linear_cka"]["value"] = None  # null against a number
    del files[PAIR]["tie_rule"]  # a key only A has
    b = write_run(tmp_path / "b", files)
    code, out, _ = run_cli([a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    by_key = {e["key"]: e for e in report["values"]}
    assert set(by_key) == {"eval/tiny-ViT/metrics.json:architecture", f"{PAIR}:linear_cka.value", f"{PAIR}:tie_rule"}
    assert {e["status"] for e in by_key.values()} == {"out of tolerance"}
    assert by_key[f"{PAIR}:tie_rule"]["missing"] == ["b"] and by_key[f"{PAIR}:linear_cka.value"]["b"] is None

    tolerances = tmp_path / "tol.json"  # listed, a null cannot be within any tolerance of a number
    tolerances.write_text(json.dumps({"numbers": {f"{PAIR}:linear_cka.value": {"abs": 1.0}}}))
    code, out, _ = run_cli([a, b, "--tolerances", tolerances, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["summary"]["out_of_tolerance"] == 1 and report["summary"]["no_tolerance_stated"] == 2


def test_files_only_in_one_run_and_logs_apart(tmp_path, capsys):
    files_b = results()
    del files_b["sweep/tiny-RN/frontier.csv"]
    files_b["logs/train_sae/tiny-RN.log"] = "took 3.4 s\n"
    files_b["figures/frontier.png"] = "png"
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", files_b)
    code, out, _ = run_cli([a, b, "--json"], capsys)
    files = json.loads(out)["files"]
    assert code == 0  # files alone never fail the audit: the numbers do
    assert files["only_in_a"] == ["sweep/tiny-RN/frontier.csv"] and files["only_in_b"] == ["figures/frontier.png"]
    assert files["volatile_differing"] == ["logs/train_sae/tiny-RN.log"] and files["differing"] == []
    code, out, _ = run_cli([a, b], capsys)
    assert "  only in A  sweep/tiny-RN/frontier.csv" in out and "  only in B  figures/frontier.png" in out
    assert "1 logs/timings differ" in out and "diff-runs: 2 files differ, 0 values out of tolerance" in out


def test_a_pruned_json_identical_by_hash_is_not_read(tmp_path, capsys):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    (b / "eval/tiny-ViT/metrics.json").unlink()  # a pruned folder: the record still lists it
    code, out, _ = run_cli([a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["json_files"] == 2 and report["json_files_absent"] == ["eval/tiny-ViT/metrics.json"]
    assert "1 JSON files absent from a run folder" in run_cli([a, b], capsys)[1]


def test_config_and_package_differences_are_shown_side_by_side(tmp_path, capsys):
    config = copy.deepcopy(CONFIG)
    config["train"]["samples"] = 1000
    config["compare"]["seed"] = 3
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", config=config, packages={**PACKAGES, "torch": "2.14.0"})
    code, out, _ = run_cli([a, b], capsys)
    assert code == 0  # no output number moved
    n_config = len(flatten(CONFIG))
    assert f"config: 2 differ, {n_config - 1} equal" in out
    assert "  train.samples  A=65536  B=1000" in out and "  compare.seed  A=(missing)  B=3" in out
    assert "packages: 1 differ, 2 equal" in out and '  torch  A="2.14.1"  B="2.14.0"' in out
    report = json.loads(run_cli([a, b, "--json"], capsys)[1])
    assert report["config"]["differing"] == {"compare.seed": [None, 3], "train.samples": [65536, 1000]}
    assert report["packages"] == {"differing": {"torch": ["2.14.1", "2.14.0"]}, "equal": 2}


def reference(tmp_path: Path, numbers: dict) -> Path:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"description": "headline numbers of the fake run", "numbers": numbers}))
    return path


def test_a_run_against_a_reference_checks_only_its_numbers(tmp_path, capsys):
    run = write_run(tmp_path / "run", changed("eval/tiny-RN/metrics.json:architecture", "topk"))
    ref = reference(tmp_path, {
        "eval/tiny-RN/metrics.json:explained_variance": {"value": 0.79, "abs": 0.02},
        f"{PAIR}:linear_cka.value": {"value": 0.33, "abs": 0.01},  # the run has 0.3
        f"{PAIR}:alive_a": {"value": 900},  # no tolerance: exact
        "eval/tiny-RN/metrics.json:feature_density_histogram.counts.1": {"value": 900, "rel": 0.0},
        f"{PAIR}:debiased_cka.value": {"value": None, "abs": 1.0},  # the run has 0.35: null is no number
        f"{PAIR}:mutual_knn.value": {"value": 0.5, "abs": 0.1, "measured_spread": 0.02},  # extra fields allowed
    })
    code, out, _ = run_cli([run, ref, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["mode"] == "reference" and report["checked"] == 6 and "files" not in report
    status = {e["key"]: (e["a"], e["b"], e["status"]) for e in report["values"]}
    assert status == {"eval/tiny-RN/metrics.json:explained_variance": (0.8, 0.79, "within tolerance"),
                      f"{PAIR}:linear_cka.value": (0.3, 0.33, "out of tolerance"),
                      f"{PAIR}:debiased_cka.value": (0.35, None, "out of tolerance"),
                      f"{PAIR}:mutual_knn.value": (0.45, 0.5, "within tolerance")}
    assert report["summary"]["out_of_tolerance"] == 2  # the changed 'architecture' is not in the reference


def test_a_reference_uses_its_own_tolerances_unless_a_tolerances_file_is_given(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    ref = reference(tmp_path, {
        "eval/tiny-RN/metrics.json:explained_variance": {"value": 0.79, "abs": 0.02},
        f"{PAIR}:rbf_cka.value": {"value": 0.25, "abs": 0.01},  # the run has 0.1 + 0.05 * 6 = 0.4
        "eval/tiny-RN/metrics.json:not_a_metric": {"value": 1.0, "abs": 10.0},
        "planted/recovery.json:mean_best_cosine": {"value": 0.9, "abs": 0.1},  # no such file in the run
    })
    code, out, _ = run_cli([run, ref], capsys)
    assert code == 1
    assert "within tolerance     eval/tiny-RN/metrics.json:explained_variance  A=0.8  B=0.79" in out
    assert f"out of tolerance     {PAIR}:rbf_cka.value  A=0.4  B=0.25" in out
    assert "out of tolerance     eval/tiny-RN/metrics.json:not_a_metric  A=(missing)  B=1.0" in out
    assert "out of tolerance     planted/recovery.json:mean_best_cosine  A=(missing)" in out
    assert out.strip().splitlines()[-1] == "diff-runs: 0 files differ, 3 values out of tolerance (of 4 checked)"

    tolerances = tmp_path / "tol.json"
    tolerances.write_text(json.dumps({"numbers": {f"{PAIR}:rbf_cka.value": {"abs": 0.2},
                                                  "eval/tiny-RN/metrics.json:explained_variance": {"abs": 0.001}}}))
    report = json.loads(run_cli([run, ref, "--tolerances", tolerances, "--json"], capsys)[1])
    status = {e["key"]: e["status"] for e in report["values"]}
    assert status == {"eval/tiny-RN/metrics.json:explained_variance": "out of tolerance",
                      f"{PAIR}:rbf_cka.value": "within tolerance",
                      "eval/tiny-RN/metrics.json:not_a_metric": "no tolerance stated",
                      "planted/recovery.json:mean_best_cosine": "no tolerance stated"}


def test_a_reference_of_the_headline_numbers_passes_on_its_own_run(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    ref = reference(tmp_path, {key: {"value": value, "abs": 0.0} for key, value in headline_numbers(run).items()})
    code, out, _ = run_cli([run, ref], capsys)
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "diff-runs: 0 files differ, 0 values out of tolerance (of 22 checked)"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no provenance", "provenance.json is missing"),
        ("no folder", "is not a run folder"),
        ("no run b", "is neither a run folder nor a reference JSON file"),
        ("bad tolerances", "must be a JSON object with a \"numbers\" object"),
        ("negative tolerance", "'abs' of 'eval/tiny-RN/metrics.json:l0' must be a non-negative number"),
        ("bad key", "is not a key of the form '<path>.json:<dotted.key>'"),
        ("not json", "cannot read tolerances file"),
        ("reference without values", "needs a numeric 'value'"),
        ("listed file missing", "metrics.json is missing, and its sha256 differs"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(case, message, tmp_path, capsys):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    args = [a, b]
    tol = tmp_path / "tol.json"
    if case == "no provenance":
        args = [a, write_run(tmp_path / "c", provenance=False)]
    elif case == "no folder":
        args = [tmp_path / "nowhere", b]
    elif case == "no run b":
        args = [a, tmp_path / "nowhere"]
    elif case == "listed file missing":
        b = write_run(tmp_path / "b", changed("eval/tiny-RN/metrics.json:l0", 13.0))
        (b / "eval/tiny-RN/metrics.json").unlink()
        args = [a, b]
    elif case == "reference without values":
        args = [a, reference(tmp_path, {"eval/tiny-RN/metrics.json:l0": {"abs": 1.0}})]
    else:
        content = {"bad tolerances": {"eval/tiny-RN/metrics.json:l0": {"abs": 1}},
                   "negative tolerance": {"numbers": {"eval/tiny-RN/metrics.json:l0": {"abs": -1}}},
                   "bad key": {"numbers": {"explained_variance": {"abs": 1}}}}.get(case)
        tol.write_text("{not json" if content is None else json.dumps(content))
        args += ["--tolerances", tol]
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("saesuite diff-runs: error: ")


def test_headline_numbers_of_a_run(tmp_path):
    run = write_run(tmp_path / "run")
    numbers = headline_numbers(run)
    assert list(numbers) == headline_keys(CONFIG)
    expected = {
        "eval/tiny-RN/metrics.json:explained_variance": 0.8, "eval/tiny-RN/metrics.json:l0": 12.5,
        "eval/tiny-RN/metrics.json:dead_fraction": 0.1,
        "eval/tiny-ViT/metrics.json:explained_variance": 0.7, "eval/tiny-ViT/metrics.json:l0": 20.0,
        "eval/tiny-ViT/metrics.json:dead_fraction": 0.2,
        f"{PAIR}:alive_a": 900.0, f"{PAIR}:alive_b": 800.0,
        f"{PAIR}:overlap_pairing_b": 0.25, f"{PAIR}:correlation_pairing_b": 0.5,
        f"{PAIR}:topk_overlap.value": 0.1, f"{PAIR}:topk_overlap_b_to_a.value": 0.15,
        f"{PAIR}:overlap_pairing.value": 0.2, f"{PAIR}:correlation_pairing.value": 0.25,
        f"{PAIR}:linear_cka.value": 0.3, f"{PAIR}:debiased_cka.value": 0.35, f"{PAIR}:rbf_cka.value": 0.4,
        f"{PAIR}:mutual_knn.value": 0.45, f"{PAIR}:linear_cka_codes.value": 0.5,
        f"{PAIR}:debiased_cka_codes.value": 0.55, f"{PAIR}:rbf_cka_codes.value": 0.6,
        f"{PAIR}:mutual_knn_codes.value": 0.65,
    }
    assert numbers == pytest.approx(expected)
    assert all(isinstance(v, float) for v in numbers.values())


def test_headline_numbers_keep_an_undefined_score_and_reject_a_planted_run(tmp_path):
    files = changed(f"{PAIR}:mutual_knn_codes.value", None)
    assert headline_numbers(write_run(tmp_path / "run", files))[f"{PAIR}:mutual_knn_codes.value"] is None
    planted = {**CONFIG, "planted": {"n": 100}}
    with pytest.raises(ConfigError, match="planted run"):
        headline_numbers(write_run(tmp_path / "planted", config=planted))
