"""Across machines: the smoke run's headline numbers agree with the committed reference
(tests/reference/smoke.json) within tolerances derived from measured spreads
(benchmarks/smoke_spread.py). On one machine the bytes agree: tests/test_workflow.py, .tests/unit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from saesuite.report.diff_runs import headline_keys
from tests.smoke import REPO

REFERENCE = REPO / "tests" / "reference" / "smoke.json"


@pytest.mark.workflow
def test_the_smoke_run_matches_the_reference_within_its_tolerances(smoke_run):
    proc = subprocess.run([sys.executable, "-m", "saesuite", "diff-runs", str(smoke_run), str(REFERENCE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    assert "0 values out of tolerance" in proc.stdout


def test_the_reference_gives_every_headline_number_a_measured_tolerance():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from smoke_spread import MULTIPLE

    reference = json.loads(REFERENCE.read_text())
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    numbers = reference["numbers"]
    assert sorted(numbers) == sorted(headline_keys(config))
    conditions = reference["conditions"].values()
    assert {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"} <= {k for c in conditions for k in c["env"]}
    assert {c["cores"] for c in conditions} == {1, 2}  # and another thread count
    for key, entry in numbers.items():
        # a stated multiple of the spread measured across those conditions (integers: at least one unit)
        floor = 1.0 if float(entry["value"]).is_integer() else 0.0
        assert entry["abs"] == MULTIPLE * max(entry["spread"], floor), key
        assert entry["abs"] > 0, f"{key}: a zero tolerance would fail on any other processor"
