"""The paper's PDF says what its results say: built again from the session's smoke run with every
comparison score moved below its chance level, its text turns every "more than chance" into the
opposite (pdftotext), and nothing else about the build changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from saesuite.report.paper import PaperResults, write_paper_numbers
from saesuite.report.paper_claims import chance_verdict
from tests.smoke import REPO, has_tex

pytestmark = pytest.mark.workflow

A, B, R = "tiny-RN", "tiny-ViT", "tiny-ViT"


def results(run, comparison) -> PaperResults:
    """The smoke run's result files as rule paper_numbers reads them, with ``comparison`` in place of its own."""
    return PaperResults(
        metrics={"A": run / f"eval/{A}/metrics.json", "B": run / f"eval/{B}/metrics.json",
                 "R": run / f"eval/{R}/replication/metrics.json"},
        comparison=comparison,
        published=yaml.safe_load((REPO / "paper" / "baseline.yaml").read_text()),
        cfgs={"A": run / f"sae/{A}/cfg.json", "B": run / f"sae/{B}/cfg.json", "R": run / f"sae/{R}/replication/cfg.json"},
        manifests={role: run / f"cache/{m}/test/manifest.json" for role, m in (("A", A), ("B", B), ("R", R))},
        sweep=run / f"compare/{A}__{B}/sweep.csv",
        frontiers={m: run / f"sweep/{m}/frontier.csv" for m in (A, B)},
        planted_recovery=run / "planted/recovery.json",
        planted_pairs=run / "compare/planted/planted_compare.json",
        config=yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()),
    )


def build(run, folder, comparison) -> str:
    """The paper compiled in ``folder`` (beside a link to the run's figures) from the run's files and
    ``comparison``, as rule paper_pdf compiles it; its text by pdftotext, whitespace collapsed."""
    paper = folder / "paper"
    shutil.copytree(run / "paper", paper, ignore=shutil.ignore_patterns("main.pdf", "main.aux", "main.fdb_latexmk",
                                                                        "main.fls", "main.bbl"))
    (folder / "figures").symlink_to(run / "figures")
    write_paper_numbers(results(run, comparison), paper / "numbers.tex")
    env = {**os.environ, "TEXINPUTS": f".:{REPO / 'paper'}:", "BIBINPUTS": f".:{REPO / 'paper'}:"}
    proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=paper,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    text = subprocess.run(["pdftotext", str(paper / "main.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(text.split())


def test_results_pointing_the_other_way_turn_the_claims_around(smoke_run, tmp_path):
    if not has_tex():
        if os.environ.get("CI"):
            raise AssertionError("CI installs latexmk and pdftotext (.ci/run)")
        pytest.skip("TeX Live (latexmk) and poppler-utils (pdftotext) are not installed")
    run = smoke_run
    original = json.loads((run / f"compare/{A}__{B}/comparison.json").read_text())
    flipped = json.loads(json.dumps(original))
    for record in flipped.values():  # every score's chance level above its interval: below chance
        if isinstance(record, dict) and record.get("interval"):
            record["chance"] = record["interval"]["high"] + 0.05
    flipped_path = tmp_path / "comparison.json"
    flipped_path.write_text(json.dumps(flipped))
    as_run = build(run, tmp_path / "as_run", run / f"compare/{A}__{B}/comparison.json")
    turned = build(run, tmp_path / "flipped", flipped_path)

    verdict = chance_verdict(original["topk_overlap"])
    said = {"above": f"{A} features overlap with {B} features more than chance",
            "below": f"{A} features overlap with {B} features less than chance",
            "chance": f"{A} features do not overlap with {B} features more than chance"}
    assert said[verdict] in as_run  # the run's own PDF says what its numbers say
    assert said["below"] in turned and said["above"] not in turned
    assert "agree more than chance" not in turned
    assert re.search(r"to [-\d.e]+, lies above its chance level", turned) is None  # no claimed score above chance
    assert turned.count("lies below its chance level") >= 8  # every claimed score
    assert "none of the 8 comparison scores lies above chance" in turned
    if verdict == "above":
        assert "more than chance" in as_run and as_run != turned
