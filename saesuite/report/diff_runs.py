"""Audit two runs: ``saesuite diff-runs RUN_A RUN_B [--tolerances FILE] [--json]``.

A run folder is ``results/<run>/`` with its ``provenance.json`` (see :mod:`saesuite.report.provenance`).
The report has four parts:

* files: every output as identical / differing / only in A / only in B, from the sha256 sums the
  two provenance records hold (nothing is re-hashed); logs and timings (``logs/``,
  ``benchmarks/``), which differ on every rerun, are counted apart;
* values: every ``*.json`` output both records list is flattened to keys
  ``<path relative to the run>:<dotted.key>`` (list indices as numbers), e.g.
  ``eval/tiny-RN/metrics.json:explained_variance`` or
  ``compare/tiny-RN__tiny-ViT/comparison.json:linear_cka.value``, and each leaf is compared;
* config and packages (and git / device): the entries that differ, and how many are equal.

Tolerances. Without a tolerances file every value must be equal (one machine gives identical
bytes). A tolerances file ``{"numbers": {"<key>": {"abs": 1e-3, "rel": 0.01}, ...}}`` states
which values may move and by how much: a listed number passes when
``|a - b| <= max(abs, rel * max(|a|, |b|))`` (``math.isclose``); a listed value that is not a
pair of numbers (a changed string or bool, null against a number, a key one side lacks) fails;
values it does not list are reported as "no tolerance stated" and do not fail.

RUN_B may instead be a reference file, the same format with a ``value`` per key
(``{"description": ..., "numbers": {"<key>": {"value": 0.81, "abs": 0.02}}}``): only those
keys are read from RUN_A and compared, each against its own tolerance unless a tolerances file
is given. :func:`headline_numbers` gives the keys and values such a reference records.

Exit status (through the CLI): 0 when every checked value is within tolerance, 1 otherwise,
2 for a usage error (a missing run folder or provenance record, a bad tolerances file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saesuite.errors import ConfigError

PROVENANCE = "provenance.json"
VOLATILE = ("logs/", "benchmarks/")  # rewritten on every rerun: log lines and timings
KEY_SEPARATOR = ".json:"  # a key is '<path>.json:<dotted.key>'
METRICS_KEYS = ("explained_variance", "l0", "dead_fraction")
# score records of comparison.json whose ``value`` is a headline number
COMPARISON_SCORES = (
    "topk_overlap", "topk_overlap_b_to_a", "overlap_pairing", "correlation_pairing",
    "linear_cka", "debiased_cka", "rbf_cka", "mutual_knn",
    "linear_cka_codes", "debiased_cka_codes", "rbf_cka_codes", "mutual_knn_codes",
)
# plain numbers of comparison.json: alive latents (positive on at least k images), and the
# pairing fractions over B's alive latents
COMPARISON_NUMBERS = ("alive_a", "alive_b", "overlap_pairing_b", "correlation_pairing_b")

OUT, WITHIN, UNSTATED = "out of tolerance", "within tolerance", "no tolerance stated"


class _Missing:
    """A key one side of a comparison lacks."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING = _Missing()


@dataclass(frozen=True)
class Tolerance:
    """How far two numbers may be apart: ``|a - b| <= max(abs, rel * max(|a|, |b|))``."""

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=self.rel, abs_tol=self.abs)

    def as_dict(self) -> dict:
        return {"abs": self.abs, "rel": self.rel}


# --- keys and values ------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested JSON as ``{"a.b.0.c": leaf}`` (list indices as numbers); an empty
    dict or list is no leaf."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for name, item in items:
        out.update(flatten(item, f"{prefix}.{name}" if prefix else str(name)))
    return out


def make_key(path: str, dotted: str) -> str:
    """``<path relative to the run>:<dotted.key>``."""
    return f"{path}:{dotted}"


def split_key(key: str) -> tuple[str, str]:
    """``(path, dotted key)`` of a key; the path ends in ``.json`` (it may itself hold ``:``)."""
    path, sep, dotted = key.partition(KEY_SEPARATOR)
    if not sep or not path or not dotted:
        raise ConfigError(f"{key!r} is not a key of the form '<path>.json:<dotted.key>' "
                          "(e.g. 'eval/tiny-RN/metrics.json:explained_variance')")
    return path + ".json", dotted


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if _is_number(value):
        return "number"
    return type(value).__name__


def same(a: Any, b: Any) -> bool:
    """Equal values of one kind (``True`` is not ``1``; NaN equals NaN)."""
    if _kind(a) != _kind(b):
        return False
    if _kind(a) == "number" and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_value(key: str, a: Any, b: Any, tolerances: dict[str, Tolerance] | None) -> dict | None:
    """The report entry of one differing value (``None`` when equal).

    ``tolerances`` is ``None`` without a tolerances file: then every difference fails."""
    if same(a, b):
        return None
    tolerance = None if tolerances is None else tolerances.get(key)
    if tolerances is None:
        status = OUT
    elif tolerance is None:
        status = UNSTATED
    elif _is_number(a) and _is_number(b):
        status = WITHIN if tolerance.allows(float(a), float(b)) else OUT
    else:
        status = OUT
    entry = {"key": key, "a": a, "b": b, "status": status,
             "tolerance": tolerance.as_dict() if tolerance else None,
             "missing": [side for side, v in (("a", a), ("b", b)) if v is MISSING] or None}
    if _is_number(a) and _is_number(b):
        entry["abs_diff"] = abs(float(a) - float(b))
    return entry


# --- reading runs and number files ------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


def read_provenance(run: Path | str) -> dict:
    """A run folder's ``provenance.json`` (checked to hold ``outputs``, ``config``, ``packages``)."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run folder (results/<run>/)")
    path = run / PROVENANCE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the run did not finish (its last rule, provenance, writes it); "
                          "rerun the workflow")
    record = _read_json(path, "provenance record")
    for field in ("outputs", "config", "packages"):
        if not isinstance(record, dict) or not isinstance(record.get(field), dict):
            raise ConfigError(f"{path} has no '{field}' object: not a saesuite provenance record")
    return record


def _tolerance(key: str, entry: dict, source: Path) -> Tolerance:
    values = {}
    for name in ("abs", "rel"):
        value = entry.get(name, 0.0)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{source}: '{name}' of {key!r} must be a non-negative number, not {value!r}")
        values[name] = float(value)
    return Tolerance(**values)


def read_numbers_file(path: Path | str, *, reference: bool = False) -> dict[str, dict]:
    """Entries of a tolerances or reference file ``{"numbers": {key: {"value", "abs", "rel"}}}``,
    as ``{key: {"tolerance": Tolerance, "value": ...}}``; a reference needs a ``value`` per key
    (a number, or null for a score the run leaves undefined). Other fields are allowed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file")
    data = _read_json(path, "reference" if reference else "tolerances file")
    if not isinstance(data, dict) or not isinstance(data.get("numbers"), dict):
        raise ConfigError(f'{path} must be a JSON object with a "numbers" object: '
                          '{"numbers": {"<path>.json:<dotted.key>": {"abs": 0.01}}}')
    entries = {}
    for key, entry in data["numbers"].items():
        split_key(key)
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: the entry of {key!r} must be an object such as {{\"abs\": 0.01}}")
        if reference and not (_is_number(entry.get("value")) or entry.get("value", MISSING) is None):
            raise ConfigError(f"{path}: the reference entry of {key!r} needs a numeric 'value'")
        entries[key] = {"tolerance": _tolerance(key, entry, path), "value": entry.get("value")}
    return entries


def read_tolerances(path: Path | str) -> dict[str, Tolerance]:
    """``{key: Tolerance}`` of a tolerances file (a reference file serves as one too)."""
    return {key: entry["tolerance"] for key, entry in read_numbers_file(path).items()}


class _RunValues:
    """Flattened JSON outputs of one run folder, read once each."""

    def __init__(self, run: Path):
        self.run = run
        self._cache: dict[str, dict | None] = {}

    def file(self, path: str, *, required: bool) -> dict | None:
        """Leaves of ``run/path`` (``None`` when the file is absent and not ``required``)."""
        if path not in self._cache:
            full = self.run / path
            if not full.is_file():
                if required:
                    raise ConfigError(f"{full} is missing (its provenance.json lists it, or the config names it): "
                                      "the run folder is incomplete")
                self._cache[path] = None
            else:
                self._cache[path] = flatten(_read_json(full, "result file"))
        return self._cache[path]


# --- the parts of the report ------------------------------------------------------------------


def diff_files(outputs_a: dict[str, str], outputs_b: dict[str, str]) -> dict:
    """Output paths by status, from two ``{path: sha256}`` maps; logs and timings counted apart."""
    out = {"identical": [], "differing": [], "only_in_a": [], "only_in_b": [], "volatile_differing": []}
    for path in sorted(outputs_a.keys() | outputs_b.keys()):
        if path not in outputs_b:
            out["only_in_a"].append(path)
        elif path not in outputs_a:
            out["only_in_b"].append(path)
        elif outputs_a[path] == outputs_b[path]:
            out["identical"].append(path)
        elif path.startswith(VOLATILE):
            out["volatile_differing"].append(path)
        else:
            out["differing"].append(path)
    return out


def diff_mapping(a: dict, b: dict) -> dict:
    """Flattened entries of two mappings that differ, side by side, and the count of equal ones."""
    fa, fb = flatten(a), flatten(b)
    differing = {}
    for key in sorted(fa.keys() | fb.keys()):
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if not same(va, vb):
            differing[key] = [va, vb]
    return {"differing": differing, "equal": len(fa.keys() | fb.keys()) - len(differing)}


def _result_jsons(run_a: Path, run_b: Path, outputs_a: dict, outputs_b: dict) -> tuple[list[str], list[str]]:
    """The ``*.json`` outputs both records list, and those of them left out because a run folder
    no longer holds them (a pruned cache) while their sha256 agree: their values are equal."""
    paths, pruned = [], []
    for path in sorted(p for p in outputs_a.keys() & outputs_b.keys() if p.endswith(".json") and p != PROVENANCE):
        if (run_a / path).is_file() and (run_b / path).is_file():
            paths.append(path)
        elif outputs_a[path] == outputs_b[path]:
            pruned.append(path)
        else:
            gone = run_a / path if not (run_a / path).is_file() else run_b / path
            raise ConfigError(f"{gone} is missing, and its sha256 differs between the runs' provenance records: "
                              "its numbers cannot be compared; restore the file (or rerun)")
    return paths, pruned


def diff_values(run_a: Path, run_b: Path, paths: list[str],
                tolerances: dict[str, Tolerance] | None) -> tuple[list[dict], set[str]]:
    """Differing leaves of the JSON files ``paths`` of two runs, and the keys of every leaf checked."""
    a, b = _RunValues(run_a), _RunValues(run_b)
    entries, checked = [], set()
    for path in paths:
        fa, fb = a.file(path, required=True), b.file(path, required=True)
        for dotted in sorted(fa.keys() | fb.keys()):
            key = make_key(path, dotted)
            checked.add(key)
            entry = compare_value(key, fa.get(dotted, MISSING), fb.get(dotted, MISSING), tolerances)
            if entry is not None:
                entries.append(entry)
    return entries, checked


def _summary(report: dict) -> dict:
    files = report.get("files") or {}
    values = report["values"]
    return {
        "files_differing": len(files.get("differing", [])) + len(files.get("only_in_a", [])) + len(files.get("only_in_b", [])),
        "out_of_tolerance": sum(e["status"] == OUT for e in values),
        "no_tolerance_stated": sum(e["status"] == UNSTATED for e in values),
        "within_tolerance": sum(e["status"] == WITHIN for e in values),
        "checked": report["checked"],
    }


def _unused_tolerances(tolerances: dict[str, Tolerance] | None, seen: set[str]) -> list[str]:
    return sorted(set(tolerances or ()) - seen)


def diff_runs(run_a: Path | str, run_b: Path | str, tolerances: dict[str, Tolerance] | None = None) -> dict:
    """The report of two run folders (see the module docstring); ``report["ok"]`` is the verdict."""
    run_a, run_b = Path(run_a), Path(run_b)
    prov_a, prov_b = read_provenance(run_a), read_provenance(run_b)
    paths, pruned = _result_jsons(run_a, run_b, prov_a["outputs"], prov_b["outputs"])
    values, checked = diff_values(run_a, run_b, paths, tolerances)
    report = {
        "mode": "runs",
        "run_a": str(run_a),
        "run_b": str(run_b),
        "files": diff_files(prov_a["outputs"], prov_b["outputs"]),
        "json_files": len(paths),
        "json_files_absent": pruned,
        "tolerances": "equality" if tolerances is None else "tolerances file",
        "values": values,
        "checked": len(checked),
        "unused_tolerances": _unused_tolerances(tolerances, checked),
        "config": diff_mapping(prov_a["config"], prov_b["config"]),
        "packages": diff_mapping(prov_a["packages"], prov_b["packages"]),
        "environment": diff_mapping({k: prov_a.get(k) for k in ("git", "device")},
                                    {k: prov_b.get(k) for k in ("git", "device")}),
    }
    return _finish(report)


def diff_reference(run: Path | str, reference: Path | str, tolerances: dict[str, Tolerance] | None = None) -> dict:
    """The report of a run folder against a reference file: only the keys it lists, each
    against its own tolerance, or against ``tolerances`` when given."""
    run, reference = Path(run), Path(reference)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run folder (results/<run>/)")
    entries = read_numbers_file(reference, reference=True)
    own = {key: entry["tolerance"] for key, entry in entries.items()}
    active = own if tolerances is None else tolerances
    values_a = _RunValues(run)
    values = []
    for key, entry in entries.items():
        path, dotted = split_key(key)
        leaves = values_a.file(path, required=False)
        found = MISSING if leaves is None else leaves.get(dotted, MISSING)
        result = compare_value(key, found, entry["value"], active)
        if result is not None:
            values.append(result)
    report = {
        "mode": "reference",
        "run_a": str(run),
        "run_b": str(reference),
        "tolerances": "reference" if tolerances is None else "tolerances file",
        "values": values,
        "checked": len(entries),
        "unused_tolerances": _unused_tolerances(tolerances, set(entries)),
    }
    return _finish(report)


def _finish(report: dict) -> dict:
    report["summary"] = _summary(report)
    report["ok"] = report["summary"]["out_of_tolerance"] == 0
    return report


def diff(run_a: Path | str, run_b: Path | str, tolerances_file: Path | str | None = None) -> dict:
    """``diff_runs`` or, when ``run_b`` is a file, ``diff_reference``; reads the tolerances file."""
    tolerances = read_tolerances(tolerances_file) if tolerances_file is not None else None
    run_b = Path(run_b)
    if run_b.is_file():
        return diff_reference(run_a, run_b, tolerances)
    if not run_b.exists():
        raise ConfigError(f"{run_b} is neither a run folder nor a reference JSON file")
    return diff_runs(run_a, run_b, tolerances)


# --- rendering --------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is MISSING:
        return "(missing)"
    return repr(value) if isinstance(value, float) else json.dumps(value)


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
        text = f"  {e['status']:<20} {e['key']}  A={_show(e['a'])}  B={_show(e['b'])}"
        if "abs_diff" in e:
            text += f"  |diff|={e['abs_diff']:.3g}"
        if e["tolerance"]:
            text += f"  (abs {e['tolerance']['abs']:g}, rel {e['tolerance']['rel']:g})"
        lines.append(text)
    lines += [f"  note: tolerance for {key} matches no value" for key in report["unused_tolerances"]]
    return lines


def _render_mapping(name: str, part: dict) -> list[str]:
    lines = [f"{name}: {len(part['differing'])} differ, {part['equal']} equal"]
    lines += [f"  {key}  A={_show(a)}  B={_show(b)}" for key, (a, b) in part["differing"].items()]
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


# --- headline numbers -------------------------------------------------------------------------


def headline_keys(config: dict) -> list[str]:
    """Keys of the headline numbers of a (non-planted) run with this config: per model
    ``explained_variance``, ``l0``, ``dead_fraction`` of metrics.json; of the pair's
    comparison.json the alive latent counts (``alive_a``, ``alive_b``: latents positive on at
    least k compared images), the ``value`` of each score in :data:`COMPARISON_SCORES` and the
    pairing fractions over B (``overlap_pairing_b``, ``correlation_pairing_b``)."""
    if config.get("planted"):
        raise ConfigError("a planted run has no model pair: headline numbers are those of a run with models and compare")
    try:
        models, a, b = list(config["models"]), config["compare"]["a"], config["compare"]["b"]
    except (KeyError, TypeError):
        raise ConfigError("the run's config has no 'models' or no 'compare: {a, b}'") from None
    keys = [make_key(f"eval/{m}/metrics.json", name) for m in models for name in METRICS_KEYS]
    pair = f"compare/{a}__{b}/comparison.json"
    keys += [make_key(pair, name) for name in COMPARISON_NUMBERS]
    keys += [make_key(pair, f"{name}.value") for name in COMPARISON_SCORES]
    return keys


def headline_numbers(run: Path | str) -> dict[str, float | None]:
    """The headline numbers of a run folder, keyed as in :func:`headline_keys` (config from
    its provenance.json); ``None`` where the run records a score as undefined (null)."""
    run = Path(run)
    values = _RunValues(run)
    out: dict[str, float | None] = {}
    for key in headline_keys(read_provenance(run)["config"]):
        path, dotted = split_key(key)
        leaves = values.file(path, required=True)
        value = leaves.get(dotted, MISSING)
        if not (_is_number(value) or value is None):
            raise ConfigError(f"{run / path} has no number at '{dotted}' (found {_show(value)})")
        out[key] = None if value is None else float(value)
    return out
