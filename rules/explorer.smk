# The static feature explorer: every latent of both SAEs with its top-k images, histograms
# and cross-model partner, as a site that opens from disk (results/{run}/explorer/index.html).


EXPLORER_MODELS = [A, B]


rule explorer:
    input:
        dataset_input,
        metrics=expand(f"{RUN}/eval/{{model}}/metrics.json", model=EXPLORER_MODELS),
        tables=expand(f"{RUN}/eval/{{model}}/latents.csv", model=EXPLORER_MODELS),
        latents=expand(f"{RUN}/eval/{{model}}/latents.npz", model=EXPLORER_MODELS),
        saes=expand(f"{RUN}/sae/{{model}}/sae_weights.safetensors", model=EXPLORER_MODELS),
        sae_cfgs=expand(f"{RUN}/sae/{{model}}/cfg.json", model=EXPLORER_MODELS),
        caches=[cache_manifest(A, EVAL_SPLIT), cache_manifest(B, EVAL_SPLIT)],
        cache_data=[*cache_data(A, EVAL_SPLIT), *cache_data(B, EVAL_SPLIT)],
        comparison=f"{COMPARE_DIR}/comparison.json",
        overlap=f"{COMPARE_DIR}/topk_overlap.npz",
        pairs=f"{COMPARE_DIR}/pairs.csv",
    output:
        report(
            directory(f"{RUN}/explorer"),
            caption="../report/explorer.rst",
            category="Feature explorer",
            htmlindex="index.html",
        ),
    params:
        names=EXPLORER_MODELS,
        dataset=config["dataset"],
        split=EVAL_SPLIT,
        device=config["evaluate"]["device"],
        code=code_hash(f"{SCRIPTS}/explorer.py"),
    log:
        f"{RUN}/logs/explorer.log",
    benchmark:
        f"{RUN}/benchmarks/explorer.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpus(config["evaluate"]["device"]),
    script:
        "../workflow/scripts/explorer.py"
