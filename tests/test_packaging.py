"""The software environment and the config schema stay consistent with the code."""

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import yaml

from saesuite.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s;]+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_pins_the_same_versions_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == declared
    assert declared["torch"] == "2.14.1" and declared["torchvision"] == "0.29.1"
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", d) for d in project["dependencies"]), "pin every dependency"


def test_config_schema_train_keys_are_the_trainer_options():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    options = {f.name for f in fields(TrainConfig)} - {"seed"}  # the seed is the config's top-level seed
    assert set(schema["$defs"]["trainOptions"]["properties"]) == options
    assert set(schema["properties"]["train"]["properties"]) == {"sweep", "extra_seeds"}  # workflow keys


def test_every_config_key_is_documented():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    doc = (REPO / "config" / "README.md").read_text()
    sections = dict(schema["properties"], train=schema["$defs"]["trainOptions"])
    for section, spec in sections.items():
        assert f"`{section}" in doc or f"{section}." in doc, section
        for key in spec.get("properties", {}):
            assert key in doc, f"{section}.{key} is not in config/README.md"


# --- the locked environment, the container and the profiles (packaging issue) ---------------

LOCK_HEADER = "#"


def lock():
    return pins(l for l in (REPO / "requirements.lock").read_text().splitlines() if not l.startswith(LOCK_HEADER))


def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_lock_pins_every_dependency_at_pyproject_s_version():
    locked = lock()
    body = [l for l in (REPO / "requirements.lock").read_text().splitlines() if l and not l.startswith("#")]
    assert len(body) == len(locked) and all("==" in l for l in body), "one name==version per line"
    for name, version in pins(project()["dependencies"]).items():
        assert locked.get(name) == version, f"{name}: pyproject {version}, requirements.lock {locked.get(name)}"
    # torch's CUDA stack is locked with it (the CUDA 13.0 wheels the container runs)
    assert locked["cuda-toolkit"].startswith("13.0.") and "nvidia-cudnn-cu13" in locked
    assert "saesuite" not in locked


def test_environment_yml_names_the_lock_and_its_python():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-c requirements.lock" in pip_section and "-e ." in pip_section
    assert "python=3.11" in env["dependencies"]  # the Python the lock was resolved for
    locked = lock()
    for name, version in pins(pip_section).items():
        if name in locked:
            assert locked[name] == version, name


def test_dockerfile_base_and_install_lines_use_the_locked_versions():
    text = (REPO / "Dockerfile").read_text()
    lines = [l.strip() for l in text.splitlines()]
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M).group(1)
    m = re.fullmatch(r"pytorch/pytorch:(?P<torch>[\d.]+)-cuda(?P<cuda>\d+\.\d+)-cudnn(?P<cudnn>\d+)-runtime", base)
    assert m, f"base {base} is not a pinned PyTorch CUDA runtime image"
    locked = lock()
    assert m["torch"] == locked["torch"] == pins(project()["dependencies"])["torch"]
    assert locked["cuda-toolkit"].startswith(m["cuda"] + "."), "the base's CUDA is the one torch's wheels use"
    assert locked["nvidia-cudnn-cu13"].split(".")[0] == m["cudnn"]
    assert "FROM ${BASE}" in lines
    assert "COPY requirements.lock pyproject.toml README.md ./" in lines
    assert "RUN python -m pip install -r requirements.lock -c requirements.lock \\" in lines
    assert "&& python -m pip install --no-deps -c requirements.lock . \\" in lines
    assert "&& python -m pip check" in lines
    assert not any(l.startswith(("ENTRYPOINT", "CMD")) for l in lines), "apptainer exec runs commands directly"
    path = re.search(r"^ENV PATH=(\S+)$", text, re.M).group(1).split(":")
    assert path[0] == "/opt/conda/bin" and "/usr/bin" in path  # the base image's python and pip, then the system
    assert "HF_HUB_OFFLINE=1" in text  # weights baked in at build time; none fetched at run time
    for package in ("latexmk", "texlive-latex-base", "texlive-latex-recommended", "poppler-utils", "git"):
        assert package in text


def test_the_snakefile_names_the_image_of_this_version_and_the_config_can_change_it():
    snakefile = (REPO / "Snakefile").read_text()
    default = re.search(r'container: config.get\("container", "([^"]+)"\)', snakefile)
    assert default, "container: must come from the config key `container`"
    assert default.group(1) == f"docker://ghcr.io/saesuite/saesuite:{project()['version']}"
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    assert "container" in schema["properties"]


def test_default_profile_sets_cores_gpu_limit_and_apptainer_nv():
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["cores"] == "all"
    assert isinstance(profile["resources"]["gpu"], int) and profile["resources"]["gpu"] >= 1
    # local scope: the limit binds jobs on this machine, not sbatch submissions (profiles/slurm)
    assert profile["set-resource-scopes"]["gpu"] == "local"
    assert profile["apptainer-args"] == "--nv"
    assert "software-deployment-method" not in profile and "use-singularity" not in profile  # opt in: --use-singularity


def test_slurm_profile_uses_the_pinned_executor_plugin():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    extras = project()["optional-dependencies"]
    assert "snakemake-executor-plugin-slurm" in pins(extras["cluster"])
    assert pins(extras["test"])["snakemake-executor-plugin-slurm"] == pins(extras["cluster"])["snakemake-executor-plugin-slurm"]


def test_snakefmt_check_passes_on_the_snakefile_and_rules():
    import shutil
    import subprocess
    import sys

    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    assert snakefmt, "snakefmt is pinned in the test extra"
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    proc = subprocess.run([snakefmt, "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
