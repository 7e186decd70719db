# The static feature explorer: every latent of both SAEs with its top-k images, histograms
# and cross-model partner, as a site that opens from disk (results/{run}/explorer/index.html).
# It reads only the evaluations' and the comparison's files (and the images): no SAE, no cache.


EXPLORER_MODELS = [A, B]


rule explorer:
    input:
        dataset_input,
        metrics=expand(f"{RUN}/eval/{{model}}/metrics.json", model=EXPLORER_MODELS),
        tables=expand(f"{RUN}/eval/{{model}}/latents.csv", model=EXPLORER_MODELS),
        latents=expand(f"{RUN}/eval/{{model}}/latents.npz", model=EXPLORER_MODELS),
        inputs=expand(f"{RUN}/eval/{{model}}/inputs.npz", model=EXPLORER_MODELS),
        latent_stats=expand(f"{RUN}/eval/{{model}}/latent_stats.npz", model=EXPLORER_MODELS),
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
        code=code_hash(f"{SCRIPTS}/explorer.py"),
    log:
        f"{RUN}/logs/explorer.log",
    benchmark:
        f"{RUN}/benchmarks/explorer.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../workflow/scripts/explorer.py"
