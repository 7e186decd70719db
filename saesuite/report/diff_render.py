"""The report of ``saesuite diff-runs`` as text (:func:`render_report`) or strict JSON (:func:`report_json`).

The report itself is built by :mod:`saesuite.report.diff_runs`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from saesuite.report.run_values import MISSING, OUT, UNSTATED, WITHIN, show


def _render_files(files: dict) -> list[str]:
    lines = [f"files (sha256 from provenance.json): {len(files['identical'])} identical, "
             f"{len(files['differing'])} differ, {len(files['only_in_a'])} only in A, "
             f"{len(files['only_in_b'])} only in B, {len(files['volatile_differing'])} logs/timings differ"]
    for label, name in (("differs", "differing"), ("only in A", "only_in_a"), ("only in B", "only_in_b")):
        lines += [f"  {label:<10} {path}" for path in files[name]]
    return lines


def _render_values(report: dict) -> list[str]:
    rule = {"equality": "no tolerances file: every value must be equal",
            "tolerances file": "tolerances from the tolerances file; values it does not list do not fail",
            "reference": "each against the reference's tolerance"}[report["tolerances"]]
    where = f" in {report['json_files']} JSON files" if "json_files" in report else ""
    lines = [f"numbers: {report['checked']} values checked{where} ({rule}), {len(report['values'])} differ"]
    if report.get("json_files_absent"):
        lines.append(f"  ({len(report['json_files_absent'])} JSON files absent from a run folder, "
                     "identical by sha256, not read)")
    order = {OUT: 0, UNSTATED: 1, WITHIN: 2}
    for e in sorted(report["values"], key=lambda e: (order[e["status"]], e["key"])):
        text = f"  {e['status']:<20} {e['key']}  A={show(e['a'])}  B={show(e['b'])}"
        if "abs_diff" in e:
            text += f"  |diff|={e['abs_diff']:.3g}"
        if e["tolerance"]:
            text += f"  (abs {e['tolerance']['abs']:g}, rel {e['tolerance']['rel']:g})"
        lines.append(text)
    lines += [f"  note: tolerance for {key} matches no value" for key in report["unused_tolerances"]]
    return lines


def _render_mapping(name: str, part: dict) -> list[str]:
    lines = [f"{name}: {len(part['differing'])} differ, {part['equal']} equal"]
    lines += [f"  {key}  A={show(a)}  B={show(b)}" for key, (a, b) in part["differing"].items()]
    return lines


def summary_line(report: dict) -> str:
    """``diff-runs: 3 files differ, 2 values out of tolerance (of 14 checked)`` (and what passed
    only for want of a stated tolerance)."""
    s = report["summary"]
    line = (f"diff-runs: {s['files_differing']} files differ, "
            f"{s['out_of_tolerance']} values out of tolerance (of {s['checked']} checked)")
    if s["no_tolerance_stated"]:
        line += f", {s['no_tolerance_stated']} differ with no tolerance stated"
    return line


def render_report(report: dict) -> str:
    """The human-readable report: files, numbers, config, packages, environment, summary line."""
    lines = [f"diff-runs: A = {report['run_a']}, B = {report['run_b']}", ""]
    if report["mode"] == "runs":
        lines += _render_files(report["files"]) + [""]
    lines += _render_values(report) + [""]
    if report["mode"] == "runs":
        for name in ("config", "packages", "environment"):
            lines += _render_mapping(name, report[name]) + [""]
    lines.append(summary_line(report))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf': strict JSON has no such numbers
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def report_json(report: dict) -> str:
    """The report as strict JSON: a missing side is null (a value's ``missing`` names it),
    NaN and infinities are strings."""
    return json.dumps(_jsonable(report), indent=2)
