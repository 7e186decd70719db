"""The smoke workflow end to end, as a user runs it, in a fresh copy of the repo's workflow files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from saesuite.schema import validate

from tests.smoke import REPO, SMOKE, has_tex, snakemake, workflow_copy

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """A second smoke run from scratch, made as a user makes it (no --notemp): the same-machine
    cross-run check (`pytest -m crossrun`, ~4 min; the per-rule tests in .tests/unit already rerun
    every rule on one machine and compare bytes, so the default run leaves this out)."""
    workdir = workflow_copy(tmp_path_factory.mktemp("second"))
    snakemake(workdir, *SMOKE)
    return workdir / "results" / "smoke"


MODELS = ("tiny-RN", "tiny-ViT")
SWEEP = ("relu-l1-8e-5", "relu-l1-1e-3", "relu-l1-1e-2", "topk-8", "topk-32")


def test_every_stage_writes_its_files(smoke_run):
    run = smoke_run
    for model in MODELS:
        for split in ("train", "test"):
            manifest = json.loads((run / "cache" / model / split / "manifest.json").read_text())
            assert manifest["n"] == {"train": 2000, "test": 1000}[split] and len(manifest["shards"]) == 2
            assert manifest["d"] == 64 and manifest["pretrained"] is None and manifest["init_seed"] == 0
        cfg = json.loads((run / "sae" / model / "cfg.json").read_text())
        assert (cfg["d_in"], cfg["d_sae"], cfg["training"]["expansion"]) == (64, 1024, 16)
        for name in SWEEP:  # the sweep, trained in the same pass
            sweep_cfg = json.loads((run / "sae" / model / "sweep" / name / "cfg.json").read_text())
            assert sweep_cfg["architecture"] == ("topk" if name.startswith("topk") else "standard")
        frontier = (run / "sweep" / model / "frontier.csv").read_text().splitlines()
        assert len(frontier) == 1 + 1 + len(SWEEP) and frontier[0].startswith("name,model,architecture")
        assert not (run / "sae" / model / "checkpoint.pt").exists()
        metrics = json.loads((run / "eval" / model / "metrics.json").read_text())
        validate(metrics, "metrics")
        assert metrics["n"] == 1000 and 0 < metrics["l0"] < 1024
        assert metrics["mean_lifetime_sparsity"] == pytest.approx(metrics["population_sparsity"])
        for figure in (f"lifetime_sparsity_{model}.png", f"training_curve_{model}.png"):
            assert (run / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the evaluation suite: per-latent table, fidelity on all 1000 images, every figure
        import pandas as pd

        table = pd.read_csv(run / "eval" / model / "latents.csv")
        assert len(table) == 1024 and table["lifetime_sparsity"].mean() == pytest.approx(metrics["population_sparsity"])
        assert metrics["fidelity"]["n_images"] == 1000 and (metrics["text_naming"] is None) == (model == "tiny-ViT")
        for figure in ("activation_heatmap", "neuron_alignment", "label_entropy_scatter", "sparsity_panel",
                       "zero_shot_fidelity", "topk_frequent", "topk_low_entropy", "topk_random", "top_images"):
            assert (run / "figures" / "eval" / model / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    comparison = json.loads((run / "compare" / "tiny-RN__tiny-ViT" / "comparison.json").read_text())
    validate(comparison, "comparison")
    assert 0 <= comparison["linear_cka"]["value"] <= 1 and comparison["n_images"] == 1000
    # the headline comparison is at matched sparsity: the main SAEs' L0 on the eval split within 10%
    l0 = [json.loads((run / "eval" / m / "metrics.json").read_text())["l0"] for m in MODELS]
    assert max(l0) <= 1.1 * min(l0), l0
    # one top-k for every stage (config key top_k): evaluation's and the comparison's
    top_k = yaml.safe_load((run.parents[1] / "config" / "smoke.yaml").read_text())["top_k"]
    assert comparison["k"] == top_k == json.loads((run / "eval" / "tiny-RN" / "metrics.json").read_text())["top_k"]
    # the comparison along the sweep: main and every sweep entry, with both L0s
    sweep = pd.read_csv(run / "compare" / "tiny-RN__tiny-ViT" / "sweep.csv")
    assert sweep["name"].tolist() == ["main", *SWEEP] and (sweep.loc[0, ["l0_a", "l0_b"]] == 16).all()
    # the baseline's replication: its own recipe and expansion, evaluated
    replication = json.loads((run / "sae" / "tiny-ViT" / "replication" / "cfg.json").read_text())
    assert (replication["recipe"], replication["d_sae"]) == ("fry2024", 64 * 64)
    assert json.loads((run / "eval" / "tiny-ViT" / "replication" / "metrics.json").read_text())["d_sae"] == 4096
    # train.extra_seeds [1]: a second SAE per model, its own job and sample order; every score's seed spread
    for model in MODELS:
        main, other = (json.loads((run / "sae" / model / sub / "cfg.json").read_text())["training"]
                       for sub in (".", "seeds/1"))
        assert (main["seed"], other["seed"]) == (0, 1) and {**main, "seed": 1} == other
    assert comparison["sae_seeds"] == 2
    for key in ("topk_overlap", "debiased_cka_codes", "mutual_knn_codes"):
        seeds = comparison[key]["spread"]["seeds"]
        assert seeds["count"] == 2 and seeds["min"] <= comparison[key]["value"] <= seeds["max"]
    numbers = (run / "paper" / "numbers.tex").read_text()
    assert f"\\newcommand{{\\CmpLinearCka}}{{{comparison['linear_cka']['value']:.4g}}}" in numbers
    assert f"\\newcommand{{\\CmpDebiasedCkaPValue}}{{{comparison['debiased_cka']['p_value']:.4g}}}" in numbers
    for figure in ("overlap_vs_chance", "similarity", "best_pairs", "unpaired"):
        assert (run / "figures" / "compare" / "tiny-RN__tiny-ViT" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    # the feature explorer: a static site of every latent of both SAEs, one thumbnail per distinct top image
    explorer = json.loads((run / "explorer" / "site.json").read_text())
    assert (run / "explorer" / "index.html").is_file() and (run / "explorer" / "app.js").is_file()
    assert [explorer["models"][m]["latents"] for m in MODELS] == [1024, 1024]
    assert explorer["thumbnails"] == len(list((run / "explorer" / "img").iterdir())) <= 1000
    planted = json.loads((run / "compare" / "planted" / "planted_compare.json").read_text())
    assert planted["correlation_pairing"]["precision"] == 1.0
    # the per-shard temporary files are kept (--notemp) for the rule tests
    assert list(run.glob("cache/*/*/labels-*.npy")) and list(run.glob("cache/*/*/shard-*.json"))
    # every rule left a log and a benchmark
    assert len(list(run.glob("benchmarks/**/*.tsv"))) == len(list(run.glob("logs/**/*.log"))) >= 20


@pytest.mark.crossrun
def test_two_runs_from_scratch_are_byte_identical(smoke_run, second_run):
    first, second = smoke_run, second_run
    # temporary per-shard files are gone where they were not kept (--notemp)
    assert not list(second.glob("cache/*/*/labels-*.npy")) and not list(second.glob("cache/*/*/shard-*.json"))
    files = sorted(
        p.relative_to(first)
        for pattern in ("eval/*/metrics.json", "compare/*/comparison.json", "sae/*/sae_weights.safetensors",
                        "sae/*/cfg.json", "cache/*/*/manifest.json", "paper/numbers.tex")
        for p in first.glob(pattern)
    )
    assert len(files) == 2 + 1 + 2 + 2 + 4 + 1
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_a_second_run_has_nothing_to_do(smoke_run):
    out = snakemake(smoke_run.parents[1], "--configfile", "config/smoke.yaml", "--dry-run").stdout
    assert "Nothing to be done" in out


def test_lint_passes():
    proc = snakemake(REPO, "--lint", "--configfile", "config/smoke.yaml", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(trian=c.pop("train")), "'trian' was unexpected"),
        (lambda c: c["train"].update(l1_coef=1.0), "'l1_coef' was unexpected"),
        (lambda c: c["cache"].update(dtype="int8"), "'int8' is not one of"),
        (lambda c: c["compare"].update(b="ViT-B-32"), "compare.b is 'ViT-B-32', which is not a key of models"),
        (lambda c: c["models"]["tiny-ViT"].update(hook="resid_cls"), "does not match"),
        (lambda c: c["dataset"].update(eval_split="val"), "cifar10 has splits train, test"),
        (lambda c: c["train"].update(extra_seeds=[0, 1]), "train.extra_seeds holds 0, the seed of the main SAEs"),
        (lambda c: c["train"].update(extra_seeds=[1, 1]), "has non-unique elements"),
    ],
)
def test_a_bad_config_stops_before_any_job_with_a_message_naming_it(tmp_path, edit, message):
    workdir = workflow_copy(tmp_path)
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    edit(config)
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--configfile", "config/bad.yaml", "--dry-run", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def test_a_missing_dataset_fails_the_job_with_where_it_looked(tmp_path):
    """With the preflight check turned off (data only the compute nodes see), the job itself stops:
    its message reaches the user as one line, its traceback stays in its log."""
    workdir = workflow_copy(tmp_path)
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    config["fixture"] = None
    config["dataset"].update(fixture=False, root="data/nowhere")
    (workdir / "config" / "missing.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/missing.yaml"], cwd=workdir,
        capture_output=True, text=True, env={**os.environ, "SAESUITE_PREFLIGHT_SKIP": "dataset"},
    )
    assert proc.returncode != 0
    log_file = next((workdir / "results" / "smoke" / "logs" / "cache_shard").glob("*.log"))
    log = log_file.read_text()
    assert "CIFAR-10 not found: looked for" in log and "dataset.download: true" in log and "Traceback" in log
    message = next(line for line in proc.stderr.splitlines() if line.startswith("saesuite error: "))
    assert "CIFAR-10 not found: looked for" in message and "(traceback in results/smoke/logs/cache_shard/" in message
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list((workdir / "results" / "smoke").glob("cache/*/*/*.npy"))


# --- packaging: provenance, code hashes, report, paper PDF, SLURM profile -------------------


def test_provenance_records_the_run_and_every_output(smoke_run, tmp_path):
    from saesuite.files import sha256_file
    from saesuite.report.provenance import config_hash
    from saesuite.schema import load_config

    run = smoke_run
    record = json.loads((run / "provenance.json").read_text())
    workdir = run.parents[1]
    # the config the run used: the file, with the schema's defaults filled in as the Snakefile fills them
    config = load_config(workdir / "config" / "smoke.yaml", workdir / "config" / "config.schema.yaml", tmp_path / "log")
    assert config != yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())  # some default was filled in
    assert record["config"] == config and record["config_sha256"] == config_hash(config)
    assert record["git"] == {"commit": None, "dirty": None}  # the copy is not a git work tree
    assert record["packages"]["saesuite"] == "0.1.0" and record["packages"]["torch"].startswith("2.14.1")
    assert record["device"]["configured"]["train"] == "cpu" and "cuda_available" in record["device"]
    on_disk = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    own = {"provenance.json", "logs/provenance.log", "benchmarks/provenance.tsv"}
    later = {p for p in on_disk if p.startswith(("paper/main", "paper/sources")) or "paper_sources" in p
             or "paper_pdf" in p}  # the paper target, which a later test may have built
    assert set(record["outputs"]) == on_disk - own - later
    for rel in ("eval/tiny-ViT/metrics.json", "sae/tiny-RN/sae_weights.safetensors", "paper/numbers.tex"):
        assert record["outputs"][rel] == sha256_file(run / rel)


@pytest.mark.crossrun
def test_two_runs_from_scratch_have_the_same_hash_for_every_output(smoke_run, second_run):
    """Every file the two runs wrote, figures and tables included, except logs and timings."""
    first, second = (json.loads((run / "provenance.json").read_text())["outputs"] for run in (smoke_run, second_run))
    kept = {rel for rel in first if re.fullmatch(r"cache/[^/]+/[^/]+/(labels-\d{5}\.npy|shard-\d{5}\.json)", rel)}
    assert len(kept) == 2 * 2 * 2 * 2 and first.keys() - kept == second.keys()  # the first run kept its temp files
    compared = [rel for rel in second if not rel.startswith(("logs/", "benchmarks/"))]
    assert len(compared) > 60
    assert [rel for rel in compared if first[rel] != second[rel]] == []


def test_a_change_to_the_saesuite_code_a_rule_calls_reruns_it_and_only_its_dependents(smoke_run, tmp_path):
    import os

    workdir = smoke_run.parents[1]
    package = tmp_path / "saesuite"
    shutil.copytree(REPO / "saesuite", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "figures.py").write_text((package / "figures.py").read_text() + "\n# a change\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the Snakefile hashes the package it imports
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", "--dry-run"],
        cwd=workdir, capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {line.split()[0] for line in proc.stdout.split("Job stats:")[1].split("Reasons:")[0].splitlines()[3:]
            if line.strip() and not line.startswith("total")}
    # figures.py draws the figure_* plots (and the comparison's planted sweep plot): those rerun,
    # and the provenance record after them; caching, training and evaluation do not
    assert {"figure_frontier", "figure_training_curve", "figure_lifetime_sparsity", "provenance"} <= jobs
    assert not jobs & {"cache_shard", "gather_cache", "train_sae", "evaluate_sae", "compare_saes"}
    assert "params" in proc.stdout.lower()  # the reason given: the rule's `code` param changed


def test_the_report_holds_every_figure_with_its_caption(smoke_run):
    import zipfile

    workdir = smoke_run.parents[1]
    # the form the README offers: a zip (a pure report.html refuses the explorer's directory)
    offered = re.findall(r"`snakemake --report (\S+)`", (REPO / "README.md").read_text())
    assert offered == ["report.zip"], offered
    snakemake(workdir, "--configfile", "config/smoke.yaml", "--report", *offered)
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        text = "\n".join(archive.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    pngs = [n for n in names if n.endswith(".png")]
    # 9 evaluation figures and 2 plots per model, 4 comparison figures, frontier, planted sweep
    assert len(pngs) >= 2 * 11 + 4 + 2, pngs
    for needle in ("Evaluation", "Comparison", "Training", "Zero-shot classification accuracy",
                   "lifetime sparsity", "saesuite"):
        assert needle in text, needle
    assert any(n.endswith("metrics.json") for n in names) and any(n.endswith("latents.csv") for n in names)
    # the feature explorer is linked from the report, its site carried inside
    assert "Feature explorer" in text and any(n.endswith("/index.html") and "/raw/" in n for n in names)


PAPER_SECTIONS = ("Abstract", "1 Introduction", "1.1 Related work", "2 Data", "Pre-processing.", "2.1 Hook layers",
                  "3 Methods", "3.1 Sparse autoencoders and their recipes", "3.2 Evaluation metrics",
                  "3.3 Feature-comparison methods", "4 Results", "4.1 Baseline replication", "4.2 SAE quality",
                  "4.3 Comparison of the two models", "5 Limitations", "References",
                  "A Reproducibility", "B Validation on planted data")


def test_the_paper_pdf_quotes_the_json_values_and_names_their_rules(smoke_run):
    """The paper: every section of the plan, at least 8 pages, 10 figures and 3 tables, a resolved
    bibliography and no "??"; its numbers equal the JSON values; the smoke notice on page 1; links back."""
    import os

    from saesuite.report.paper_claims import chance_verdict

    if not has_tex():
        if os.environ.get("CI"):
            raise AssertionError("CI installs latexmk and pdftotext (.ci/run)")
        pytest.skip("TeX Live (latexmk) and poppler-utils (pdftotext) are not installed")
    run = smoke_run
    snakemake(run.parents[1], "paper", "--configfile", "config/smoke.yaml")
    pdf = run / "paper" / "main.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    paths = re.sub(r"/ ", "/", flat)  # a path broken after a slash at a line end, joined
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) >= 8
    assert "Understanding and comparing learned features in CLIP models" in info  # hyperref's PDF title
    figures = {int(n) for n in re.findall(r"Figure (\d+):", flat)}
    tables = {int(n) for n in re.findall(r"Table (\d+):", flat)}
    assert len(figures) >= 10 and len(tables) >= 3, (figures, tables)
    for heading in PAPER_SECTIONS:
        assert heading in flat, heading
    assert "??" not in flat and "Citation" not in (run / "paper" / "main.log").read_text()
    for cited in ("Kornblith", "Politis and Romano", "Huh et al.", "Karvonen et al.", "Gao et al.", "Jermyn and Templeton",
                  "Song et al.", "Davari et al.", "Fry (2024)", "Radford et al."):
        assert cited in flat, cited
    # the smoke notice, on the first page, from the config
    first_page = " ".join(text.split("\f")[0].split())
    assert "Not a result: a smoke run." in first_page and "support no conclusion" in first_page
    assert "random weights" in first_page and "synthetic cifar10-format fixture" in first_page
    # the numbers are the JSON values
    metrics = json.loads((run / "eval" / "tiny-RN" / "metrics.json").read_text())
    replication = json.loads((run / "eval" / "tiny-ViT" / "replication" / "metrics.json").read_text())
    comparison = json.loads((run / "compare" / "tiny-RN__tiny-ViT" / "comparison.json").read_text())
    planted = json.loads((run / "compare" / "planted" / "planted_compare.json").read_text())
    recovery = json.loads((run / "planted" / "recovery.json").read_text())
    seeds = comparison["topk_overlap"]["spread"]["seeds"]
    for value in (metrics["explained_variance"], metrics["population_sparsity"], comparison["linear_cka"]["value"],
                  comparison["debiased_cka"]["value"], comparison["topk_overlap"]["value"], seeds["min"], seeds["max"],
                  comparison["topk_overlap"]["interval"]["low"], comparison["topk_overlap"]["interval"]["high"],
                  comparison["topk_overlap"]["chance"], replication["l0"], replication["explained_variance"],
                  planted["overlap_pairing"]["recall"], recovery["main"]["mean_best_cosine"]):
        assert f"{value:.4g}".replace("-", "−") in flat or f"{value:.4g}" in flat, (value, flat[:2000])
    assert f"Over {comparison['n_images']:,} images".replace(",", ",") in flat
    # the sentences say what the numbers say
    said = {"above": "tiny-RN features overlap with tiny-ViT features more than chance",
            "below": "tiny-RN features overlap with tiny-ViT features less than chance",
            "chance": "tiny-RN features do not overlap with tiny-ViT features more than chance"}
    assert said[chance_verdict(comparison["topk_overlap"])] in flat
    # the links back: the rule and file behind the numbers, each table and figure, and the timings
    for needle in ("paper_numbers", "results/smoke/paper/numbers.tex", "figure_frontier", "compare_figures",
                   "results/smoke/figures/frontier.png", "eval_figures", "figure_training_curve",
                   "planted_dictionary_recovery", "results/smoke/provenance.json", "Wall time of every rule"):
        assert needle in paths, needle
    assert re.search(r"train_sae 2 \d+\.\d", flat)  # the wall-time table, from the benchmark files


def test_slurm_profile_dry_run_fans_out_the_cache_and_asks_for_gpus(tmp_path):
    """`snakemake -n --profile profiles/slurm` needs no SLURM (no sbatch) for a dry run."""
    workdir = workflow_copy(tmp_path)
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path)}
    assert shutil.which("sbatch", path=env["PATH"]) is None
    # the preflight checks the paper config's dataset root on the submitting host (a cluster's data is on
    # the shared file system it sees): an ImageFolder layout with one class. The CUDA check is left to the
    # jobs' machines, which a note says
    for split in ("train", "val"):
        (workdir / "data" / "imagenet" / split / "n01440764").mkdir(parents=True)
    out = {}
    for config in ("smoke", "config"):
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", "--configfile",
             f"config/{config}.yaml"], cwd=workdir, capture_output=True, text=True, env=env,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[config] = proc.stdout
        if config == "config":
            assert "saesuite preflight: not checking this machine for a CUDA GPU" in proc.stderr
            assert "the slurm executor runs the jobs on the machines it assigns" in proc.stderr
    stats = dict(line.split() for line in out["smoke"].split("Job stats:")[1].split("Reasons:")[0].splitlines()[3:]
                 if len(line.split()) == 2)
    assert stats["cache_shard"] == "8" and stats["gather_cache"] == "4"  # 2 models x 2 splits x 2 shards
    # the paper config: CUDA rules ask for gpu=1, which the plugin turns into --gpus=1
    jobs = out["config"].split("\n\n")
    for rule in ("cache_shard", "train_sae", "train_seed_sae", "evaluate_sae", "compare_saes"):
        block = next(j for j in jobs if f"rule {rule}:" in j)
        assert "gpu=1" in block, block
    block = next(j for j in jobs if "rule figure_frontier:" in j)
    assert "gpu=" not in block or "gpu=0" in block


def test_the_planted_config_runs_through_the_same_workflow(tmp_path):
    """config/planted.yaml: synthetic caches stand in for dataset and models (dry run; the real run is in the note)."""
    workdir = workflow_copy(tmp_path)
    out = snakemake(workdir, "--configfile", "config/planted.yaml", "--dry-run").stdout
    for rule in ("planted_cache", "train_sae", "planted_recovery", "sweep_frontier", "figure_frontier"):
        assert rule in out
    assert "cache_shard" not in out and "compare_saes" not in out
