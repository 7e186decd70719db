# The CUDA image that the Snakefile's `container:` names (config key `container`), for
#   snakemake all --use-singularity        (apptainer pulls docker://...; profiles/default adds --nv)
# Build:  docker build -t ghcr.io/saesuite/saesuite:0.1.0 .   (publishing it: README, "The container
# image"). container/saesuite.def builds the same image with Apptainer alone; keep the two in step.
#
# The base is PyTorch's own CUDA image for the torch version pyproject.toml pins (2.14.1, CUDA
# 13.0 wheels as in requirements.lock). Pin it by digest for a bit-for-bit rebuild:
#   docker build --build-arg BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime@sha256:<digest> .
# tests/test_packaging.py keeps the base, the install lines and requirements.lock in step with
# pyproject.toml.
ARG BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# git for provenance.json's commit; TeX Live and poppler for the paper rule (latexmk, pdftotext).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git latexmk texlive-latex-base texlive-latex-recommended poppler-utils \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/saesuite
COPY requirements.lock pyproject.toml README.md ./
COPY saesuite ./saesuite
# Every package at its locked version (the base's torch already is; -c keeps it): the library and
# its `workflow` extra (Snakemake). --no-deps on the second line: nothing outside the lock is pulled in.
RUN python -m pip install -r requirements.lock -c requirements.lock \
    && python -m pip install --no-deps -c requirements.lock '.[workflow]' \
    && python -m pip check

# No network at run time: open_clip's OpenAI weights for the paper's two models are fetched at
# build time into the image's Hugging Face cache, and the hub is told to stay offline.
# A failed download fails the build (nothing may mask the prefetch's exit status). The weights are
# fetched through the suite's own builder (saesuite.models.backbones.create_clip: each tag's QuickGELU and
# preprocessing), so the image holds exactly what a run loads; the pairs are config/config.yaml's models.
ENV HF_HOME=/opt/hf-cache
ARG PREFETCH_WEIGHTS=1
RUN if [ "$PREFETCH_WEIGHTS" = 1 ]; then saesuite prefetch-weights RN50:openai ViT-L-14:openai; fi
RUN mkdir -p /opt/hf-cache && chmod -R a+rX /opt/hf-cache
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLCONFIGDIR=/tmp/matplotlib

# No ENTRYPOINT: `apptainer exec` and Snakemake's --use-singularity run commands directly, so
# the interpreter and the `saesuite`/`snakemake` commands must be found on PATH alone.
ENV PATH=/opt/conda/bin:/usr/local/bin:/usr/bin:/bin

# `docker run` runs as an unprivileged user, uid 1000 (the base image's own uid-1000 user where it
# has one): everything it reads (the Python install, /opt/hf-cache) is world-readable, and /work
# is its own. Apptainer ignores USER and runs every command as the user who invokes it, which is
# why the weights are made readable by all rather than owned by this user.
RUN getent passwd 1000 >/dev/null || useradd --create-home --uid 1000 saesuite
RUN mkdir -p /work && chown 1000 /work
USER 1000
WORKDIR /work
