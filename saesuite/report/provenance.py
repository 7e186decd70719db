"""Provenance of a run: which package sources a rule runs, and the record of what a run made.

Two jobs, both for the workflow:

* ``code_hash(script)``: a sha256 over the saesuite source files a workflow script imports,
  directly or through other saesuite modules (found by parsing the imports, not by running
  them), plus the package data folders those modules name (``schemas``, ``model_configs``).
  Rules carry it as a param, so a change to the library code a rule calls reruns that rule
  and everything downstream of it, and nothing else.
* ``write_provenance``: ``results/{run}/provenance.json``, the git commit and dirty flag, the
  config and its hash, the versions of the installed packages, the device, and the sha256 of
  every file the run wrote.

``python -m saesuite.report.provenance lock REPORT.json`` turns ``pip install --dry-run --report``
output into ``requirements.lock``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from saesuite.files import sha256_file, write_json_atomic

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = PACKAGE_DIR.parent / "workflow" / "scripts"


def _imported_modules(source: str, package: str, current: str | None) -> set[str]:
    """Dotted names of ``package`` modules that a Python source imports (anywhere in the file).

    ``current`` is the importing module's dotted name, for relative imports; ``from pkg import x``
    yields both ``pkg`` and ``pkg.x`` (x may be a module or a name in pkg's ``__init__``).
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if current is None:
                    continue
                base = current.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    # importing a.b.c runs the __init__ of a and of a.b first
    names.update(".".join(n.split(".")[:i]) for n in list(names) for i in range(1, n.count(".") + 1))
    return {n for n in names if n == package or n.startswith(package + ".")}


def _module_file(name: str, package_dir: Path) -> Path | None:
    parts = name.split(".")[1:]
    candidate = package_dir.joinpath(*parts)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def _data_dirs(package_dir: Path) -> list[Path]:
    """Sub-folders of the package that hold data files rather than modules."""
    return sorted(p for p in package_dir.iterdir() if p.is_dir() and not (p / "__init__.py").exists()
                  and p.name != "__pycache__")


def source_files(script: Path | str, package_dir: Path | str = PACKAGE_DIR) -> list[Path]:
    """The package files a script runs: the modules it imports, transitively, and the data
    folders (every file in them) that those modules name. Sorted; paths inside ``package_dir``."""
    package_dir = Path(package_dir)
    package = package_dir.name
    data_dirs = _data_dirs(package_dir)
    seen: set[Path] = set()
    data: set[Path] = set()
    todo = [(Path(script).read_text(), None)]
    init = package_dir / "__init__.py"
    if init.is_file():  # importing any submodule runs the package's __init__
        todo.append((init.read_text(), package))
        seen.add(init)
    while todo:
        source, current = todo.pop()
        for name in _imported_modules(source, package, current):
            path = _module_file(name, package_dir)
            if path is None or path in seen:
                continue
            seen.add(path)
            text = path.read_text()
            for folder in data_dirs:
                if f'"{folder.name}"' in text or f"'{folder.name}'" in text:
                    data.update(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            module = ".".join([package, *path.relative_to(package_dir).with_suffix("").parts])
            todo.append((text, module.removesuffix(".__init__")))
    return sorted(seen | data)


@lru_cache(maxsize=None)
def code_hash(script: str, package_dir: str | None = None) -> str:
    """sha256 over the (package-relative path, content) of every file ``source_files`` lists for
    ``script`` (a file name in workflow/scripts, or a path). What a rule's ``code`` param holds."""
    pkg = Path(package_dir) if package_dir else PACKAGE_DIR
    path = Path(script) if Path(script).is_file() else SCRIPTS_DIR / script
    digest = hashlib.sha256()
    for file in source_files(path, pkg):
        digest.update(file.relative_to(pkg).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def git_state(directory: Path | str) -> dict:
    """The commit checked out at ``directory`` and whether tracked files differ from it;
    ``None`` for both outside a git work tree (a copied workflow, an exported archive)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(names: list[str] | None = None) -> dict[str, str | None]:
    """Installed versions of ``names`` (default: saesuite, everything it requires, and Snakemake,
    its ``workflow`` extra, which runs it)."""
    if names is None:
        names = ["saesuite"]
        try:
            requires = metadata.requires("saesuite") or []
        except metadata.PackageNotFoundError:
            requires = []
        for req in requires:
            if "extra ==" not in req or req.endswith('extra == "workflow"'):
                names.append(req.split(";")[0].split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip())
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict:
    """Where the provenance was recorded: Python, platform, torch build, visible CUDA devices."""
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # provenance must not fail because torch is broken; it says so
        info["torch_error"] = repr(err)
    return info


def output_hashes(run_dir: Path | str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` (keys: paths relative to it, sorted), less ``exclude``."""
    run_dir = Path(run_dir)
    skip = {Path(p).resolve() for p in exclude}
    return {
        p.relative_to(run_dir).as_posix(): sha256_file(p)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.resolve() not in skip
    }


def build_provenance(config: dict, run_dir: Path | str, workflow_dir: Path | str, devices: dict,
                     exclude: tuple[str, ...] = ()) -> dict:
    """The provenance record of a run (see the module docstring); ``devices`` is the config's
    device per stage."""
    return {
        "run": config.get("run"),
        "git": git_state(workflow_dir),
        "config": config,
        "config_sha256": config_hash(config),
        "packages": package_versions(),
        "device": {"configured": devices, **device_info()},
        "outputs": output_hashes(run_dir, exclude),
    }


def write_provenance(record: dict, path: Path | str) -> None:
    write_json_atomic(path, record)


def lock_lines(report: dict) -> list[str]:
    """``name==version`` lines of a ``pip install --dry-run --report`` file, less saesuite itself."""
    rows = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"])
    return [f"{name}=={version}" for name, version in rows if name != "saesuite"]


if __name__ == "__main__":  # python -m saesuite.report.provenance lock REPORT.json
    if len(sys.argv) != 3 or sys.argv[1] != "lock":
        sys.exit("usage: python -m saesuite.report.provenance lock REPORT.json")
    print("\n".join(lock_lines(json.loads(Path(sys.argv[2]).read_text()))))
