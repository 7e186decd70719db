"""How a rule's fresh output is compared with the same output of the session's smoke run.

Both were made on this machine with this software stack, so they must be the same bytes. Two
outputs are not deterministic that way, and are compared by what they mean instead:

* ``main.pdf``: pdfTeX stamps the build time and a trailer ID into the file; its text
  (``pdftotext``) is compared.
* ``provenance.json``: the record hashes every file present in the run folder, and a job run alone
  has only its declared inputs (the smoke run also had logs, timings and temporary shards): its
  run name, config and config hash must be equal, and every file it hashed must have the smoke
  run's sha256.

A failure names the file and what differs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


class Mismatch(AssertionError):
    """A rule's fresh output differs from the smoke run's."""


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("comparing a PDF needs pdftotext (poppler-utils; .ci/run installs it)", pytrace=False)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def compare_pdf(expected: Path, actual: Path) -> None:
    e, a = pdf_text(expected).splitlines(), pdf_text(actual).splitlines()
    for i, (le, la) in enumerate(zip(e, a)):
        if le != la:
            raise Mismatch(f"text line {i + 1} differs:\n  smoke run: {le[:200]}\n  rule alone: {la[:200]}")
    if len(e) != len(a):
        raise Mismatch(f"text has {len(e)} lines in the smoke run, {len(a)} from the rule alone")


def compare_provenance(expected: Path, actual: Path) -> None:
    e, a = (json.loads(p.read_text()) for p in (expected, actual))
    if set(a) != set(e):
        raise Mismatch(f"provenance keys {sorted(e)} in the smoke run, {sorted(a)} from the rule alone")
    for key in ("run", "config", "config_sha256"):
        if e[key] != a[key]:
            raise Mismatch(f"provenance {key!r} differs")
    recorded, now = e["outputs"], a["outputs"]
    if not now:
        raise Mismatch("no file hashed")
    unknown = sorted(set(now) - set(recorded))
    if unknown:
        raise Mismatch(f"files hashed by the rule alone but not in the smoke run: {unknown[:5]}")
    changed = sorted(k for k in now if now[k] != recorded[k])
    if changed:
        raise Mismatch(f"sha256 differs for {changed[:5]}")


def compare_outputs(expected: Path, actual: Path) -> None:
    """Raise Mismatch when ``actual`` is not ``expected`` (see the module's docstring)."""
    if expected.name == "provenance.json":
        return compare_provenance(expected, actual)
    if expected.suffix == ".pdf":
        return compare_pdf(expected, actual)
    if expected.read_bytes() != actual.read_bytes():
        raise Mismatch(f"bytes differ ({expected.stat().st_size} bytes in the smoke run, {actual.stat().st_size} now)")
    return None


def check_outputs(expected_root: Path, workdir: Path) -> None:
    """Every file under ``expected_root`` exists at the same relative path under ``workdir`` and
    matches; fails the test naming the first file that does not."""
    expected_files = sorted(
        (Path(path) / f).relative_to(expected_root) for path, _, files in os.walk(expected_root) for f in files
    )
    assert expected_files, f"no output under {expected_root}"
    missing = [str(f) for f in expected_files if not (workdir / f).is_file()]
    assert not missing, f"the rule alone did not write {missing[:5]}"
    for f in expected_files:
        try:
            compare_outputs(expected_root / f, workdir / f)
        except Mismatch as err:
            pytest.fail(f"{f} differs from the smoke run's: {err}", pytrace=False)
