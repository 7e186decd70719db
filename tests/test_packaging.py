"""The software environment and the config schema stay consistent with the code."""

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from saesuite.sae.config import TrainConfig

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
    extras = project["optional-dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # the conda environment runs the README's test command, which installs `.[test,saelens]` (and
    # through the test extra, `.[workflow]`)
    for extra in ("workflow", "test", "saelens"):
        for name, version in pins(extras[extra]).items():
            assert pins(pip_section).get(name) == version, f"{name}=={version} ({extra} extra): not in environment.yml"
    assert "'.[test,saelens]'" in (REPO / "README.md").read_text()
    declared = pins(project["dependencies"] + extras["workflow"] + extras["test"] + extras["saelens"])
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
    for name, version in pins(project()["dependencies"] + project()["optional-dependencies"]["workflow"]).items():
        assert locked.get(name) == version, f"{name}: pyproject {version}, requirements.lock {locked.get(name)}"
    # torch's CUDA stack is locked with it (the CUDA 13.0 wheels the container runs)
    assert locked["cuda-toolkit"].startswith("13.0.") and "nvidia-cudnn-cu13" in locked
    assert "saesuite" not in locked


def test_snakemake_is_the_workflow_extra_not_a_dependency_of_the_library():
    """The library has no Snakemake import; whatever runs the workflow installs the `workflow` extra:
    the tests and cluster extras include it, and so does the README's command that runs the smoke workflow."""
    extras = project()["optional-dependencies"]
    assert "snakemake" not in pins(project()["dependencies"])
    assert "snakemake" in pins(extras["workflow"])
    for extra in ("test", "cluster"):
        assert "saesuite[workflow]" in extras[extra], extra
    imports = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / "saesuite").rglob("*.py"))
               for n, line in enumerate(path.read_text().splitlines(), 1)
               if re.match(r"\s*(import|from)\s+snakemake\b", line)]
    assert imports == []
    smoke = [line for line in (REPO / "README.md").read_text().splitlines() if "--configfile config/smoke.yaml" in line
             and "pip install" in line]
    assert smoke and all("-e '.[workflow]'" in line for line in smoke), smoke


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
    assert "&& python -m pip install --no-deps -c requirements.lock '.[workflow]' \\" in lines
    assert "&& python -m pip check" in lines
    assert not any(l.startswith(("ENTRYPOINT", "CMD")) for l in lines), "apptainer exec runs commands directly"
    path = re.search(r"^ENV PATH=(\S+)$", text, re.M).group(1).split(":")
    assert path[0] == "/opt/conda/bin" and "/usr/bin" in path  # the base image's python and pip, then the system
    assert "HF_HUB_OFFLINE=1" in text  # weights baked in at build time; none fetched at run time
    for package in ("latexmk", "texlive-latex-base", "texlive-latex-recommended", "poppler-utils", "git"):
        assert package in text


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    return [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]


PREFETCH = "saesuite prefetch-weights"


def test_a_failed_weight_download_fails_the_image_build_and_the_image_runs_unprivileged():
    instructions = dockerfile_instructions()
    prefetch = [i for i in instructions if PREFETCH in i]
    assert len(prefetch) == 1 and prefetch[0].startswith("RUN ")
    # nothing may mask the download's exit status: no `|| ...`, no `; ...` after it
    assert "||" not in prefetch[0] and ";" not in prefetch[0].split(PREFETCH)[1].replace("; fi", "", 1)
    assert not [i for i in instructions if re.search(r"\|\|\s*(true|:)", i)], "no `|| true` in the image build"
    assert "RUN mkdir -p /opt/hf-cache && chmod -R a+rX /opt/hf-cache" in instructions  # readable by any user
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as an unprivileged user"
    last_run = max(n for n, i in enumerate(instructions) if i.startswith("RUN "))
    assert instructions.index(f"USER {users[-1]}") > last_run


def apptainer_sections() -> dict[str, list[str]]:
    """container/saesuite.def: the header under "", then each %section's lines, comments left out."""
    sections, name = {"": []}, ""
    for line in (REPO / "container" / "saesuite.def").read_text().splitlines():
        if line.startswith("%"):
            name = line[1:].split()[0]
            sections[name] = []
        elif line.strip() and not line.lstrip().startswith("#"):
            sections[name].append(line.strip())
    return sections


def test_the_image_prefetches_every_model_of_the_paper_config_through_the_suite_s_builder():
    """The weights baked in are the paper config's (model, pretrained) pairs, fetched by
    `saesuite prefetch-weights`, which builds each as its tag requires (QuickGELU, preprocessing)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    wanted = sorted(f"{name}:{m['pretrained']}" for name, m in config["models"].items() if m["pretrained"])
    for text in ("\n".join(dockerfile_instructions()), "\n".join(apptainer_sections()["post"])):
        fetched = re.search(PREFETCH + r"((?: [\w.-]+:[\w.-]+)+)", text)
        assert fetched and sorted(fetched.group(1).split()) == wanted


def test_the_apptainer_definition_builds_the_dockerfile_s_image():
    """Same base, same files, same install lines from requirements.lock, same weights, same environment."""
    instructions, sections = dockerfile_instructions(), apptainer_sections()
    header = dict(l.split(":", 1) for l in sections[""])
    assert header["Bootstrap"].strip() == "docker"
    base = next(i.split("=", 1)[1] for i in instructions if i.startswith("ARG BASE="))
    assert header["From"].strip() == base
    copied = {w for i in instructions if i.startswith("COPY ") for w in i.split()[1:-1]}
    assert {l.split()[0] for l in sections["files"]} == copied
    assert all(l.split()[1].startswith("/opt/saesuite/") for l in sections["files"])  # the Dockerfile's WORKDIR
    docker_steps = [step.strip() for i in instructions if i.startswith("RUN ") for step in i[4:].split("&&")]
    post = sections["post"]
    assert post[0] == "set -eu"  # every step's failure fails the build
    for tool in ("python -m pip", "apt-get install"):
        assert [l for l in post if l.startswith(tool)] == [l for l in docker_steps if l.startswith(tool)], tool
    download = re.compile(PREFETCH + r"(?: [\w.-]+:[\w.-]+)+")
    assert [download.search(l).group() for l in post if download.search(l)] == download.findall("\n".join(instructions))
    assert "mkdir -p /opt/hf-cache && chmod -R a+rX /opt/hf-cache" in post and "||" not in "\n".join(post)

    def assignments(lines):
        return dict(word.split("=", 1) for l in lines for word in l.split() if "=" in word and "-" not in word[:1])

    docker_env = assignments(i[4:] for i in instructions if i.startswith("ENV "))
    runtime = assignments(sections["environment"])
    assert docker_env.items() <= (assignments(l for l in post if l.startswith("export ")) | runtime).items()
    for key in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MPLCONFIGDIR", "PATH", "PYTHONUNBUFFERED"):
        assert runtime[key] == docker_env[key], key


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


# --- the docs show commands that work ---------------------------------------------------------

DOCS = ["README.md", "config/README.md", "Snakefile", "rules/*.smk", "paper/*", "report/**/*.rst", "benchmarks/*",
        "profiles/*/config.yaml", ".ci/run", "container/*", "Dockerfile"]


def doc_lines():
    for pattern in DOCS:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and path.suffix not in (".pdf", ".png"):
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    yield f"{path.relative_to(REPO)}:{n}", line


def target_after_configfile(line: str) -> bool:
    """`snakemake ... --configfile FILE TARGET`: --configfile takes several values, so it swallows TARGET."""
    for m in re.finditer(r"snakemake\b[^`#\n]*?--configfile\s+([^`#)\]|&;\\\n]*)", line):
        words = m.group(1).split()
        words = words[: next((i for i, w in enumerate(words) if w.startswith("-")), len(words))]
        if any(not w.endswith((".yaml", ".yml", ".json")) for w in words[1:]):
            return True
    return False


def test_no_doc_shows_a_target_after_configfile():
    assert target_after_configfile("snakemake --configfile config/smoke.yaml paper")
    assert target_after_configfile("`snakemake --cores 2 --configfile config/smoke.yaml all` runs")
    assert not target_after_configfile("snakemake paper --configfile config/smoke.yaml  # the paper")
    assert not target_after_configfile("`snakemake --configfile a.yaml b.yaml -n` (and `--configfile X`)")
    bad = [where for where, line in doc_lines() if target_after_configfile(line)]
    assert bad == [], f"put the target before --configfile: {bad}"
    assert "snakemake paper --configfile config/smoke.yaml" in (REPO / "README.md").read_text()


def test_the_docs_offer_only_the_report_form_that_works():
    """A pure HTML report refuses the explorer's directory; tests/test_workflow.py builds the zip."""
    offered = {m for _, line in doc_lines() for m in re.findall(r"--report\s+(\S+?)[`\s)]", line + " ")}
    assert offered == {"report.zip"}, offered
    html = [where for where, line in doc_lines() if "report.html" in line and "not a single" not in line
            and "pure HTML" not in line]
    assert html == [], html


def test_the_config_s_container_is_a_uri_or_a_local_sif():
    import jsonschema

    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())["properties"]["container"]
    for good in ("docker://ghcr.io/saesuite/saesuite:0.1.0", "oras://ghcr.io/saesuite/saesuite:0.1.0-sif",
                 "saesuite.sif", "/opt/images/saesuite.sif", "file:///opt/images/saesuite.sif"):
        jsonschema.validate(good, schema)
    for bad in ("ghcr.io/saesuite/saesuite:0.1.0", "saesuite image.sif", ""):  # no scheme: a missing local file
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.workflow
def test_a_local_sif_runs_as_it_is_and_a_uri_is_pulled(tmp_path):
    """Snakemake's container: a local path is used without a pull (a dry run with a stand-in apptainer)."""
    import subprocess
    import sys

    from tests.smoke import workflow_copy

    workdir = workflow_copy(tmp_path / "workflow")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text('#!/bin/sh\necho "apptainer version 1.3.4"\n')
    (bin_dir / "apptainer").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = {}
    for image in ("saesuite.sif", "docker://ghcr.io/saesuite/saesuite:0.1.0"):
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "all", "-n", "--sdm", "apptainer", "--configfile", "config/smoke.yaml",
             "--config", f"container={image}"], cwd=workdir, capture_output=True, text=True, env=env,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[image] = proc.stdout + proc.stderr
    assert "will be pulled" not in out["saesuite.sif"]
    assert f"image {image} will be pulled" in out[image]  # the docker:// URI, run last
