"""Scale: the evaluation never holds an N x F matrix beyond a chunk, and shows a progress bar."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import torch

from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
from saesuite.sae.model import SAE, save_sae
from test_eval_known import write_cache

N, D, F = 10000, 64, 2048  # a dense [N, F] float32 code would be 78 MiB

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae
    base = Path(sys.argv[1])
    cfg = EvalConfig(chunk_rows=256)
    evaluate_sae(base / "sae", base / "small", base / "warm", cfg)  # imports, model load, first allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    evaluate_sae(base / "sae", base / "big", base / "eval", cfg)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)  # MiB
    """
)


def test_peak_memory_stays_far_below_a_dense_code_matrix(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    labels = rng.integers(0, 10, N)
    write_cache(tmp_path / "big", x, labels)
    write_cache(tmp_path / "small", x[:1000], labels[:1000])
    torch.manual_seed(0)
    sae = SAE(D, F)
    with torch.no_grad():
        sae.W_enc.normal_(0, D**-0.5)
        sae.W_dec.normal_(0, D**-0.5)
    save_sae(sae, tmp_path / "sae", {"d_in": D, "d_sae": F, "architecture": "relu", "model": "tiny-ViT", "hook": "resid_cls:2"})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth_mib = float(proc.stdout.strip().splitlines()[-1])
    dense_mib = N * F * 4 / 2**20
    assert growth_mib < dense_mib / 2, f"peak memory grew {growth_mib:.0f} MiB; a dense code is {dense_mib:.0f} MiB"


def test_a_progress_bar_counts_the_rows(tmp_path, monkeypatch, capsys):
    import functools

    from saesuite.evaluate import evaluation as evaluate

    # the test session sets TQDM_DISABLE, which tqdm reads once, at import: undo it for this bar alone
    monkeypatch.setattr(evaluate, "tqdm", functools.partial(evaluate.tqdm, disable=False))
    rng = np.random.default_rng(1)
    write_cache(tmp_path / "cache", rng.normal(size=(300, D)), rng.integers(0, 10, 300))
    save_sae(SAE(D, 128), tmp_path / "sae", {"d_in": D, "d_sae": 128, "architecture": "relu", "model": "tiny-ViT", "hook": "resid_cls:2"})
    evaluate_sae(tmp_path / "sae", tmp_path / "cache", tmp_path / "eval", EvalConfig(chunk_rows=100))
    err = capsys.readouterr().err
    assert "evaluating SAE on tiny-ViT" in err and "300/300" in err
