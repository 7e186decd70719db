# The CUDA image that the Snakefile's `container:` names (config key `container`).
# Minimal for now: it installs the suite with the pinned versions of pyproject.toml on a
# CUDA runtime base. The packaging issue pins the base by digest, adds TeX Live for the
# paper, and tests the image; it has not been built or run in CI yet.
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/saesuite
COPY pyproject.toml README.md ./
COPY saesuite ./saesuite
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install .
# No ENTRYPOINT: `apptainer exec` and Snakemake's --use-singularity run commands directly.
ENV PATH=/opt/venv/bin:$PATH
