# The static feature explorer: every latent of both SAEs with its top-k images, histograms, activation
# bands and cross-model partner, concept pages and the feature map, as a site that opens from disk
# (results/{run}/explorer/index.html).
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
        names=expand(f"{RUN}/eval/{{model}}/names.json", model=EXPLORER_MODELS),
        comparison=f"{COMPARE_DIR}/comparison.json",
        overlap=f"{COMPARE_DIR}/topk_overlap.npz",
        pairs=f"{COMPARE_DIR}/pairs.csv",
        feature_map=f"{COMPARE_DIR}/feature_map.csv",
        feature_map_record=f"{COMPARE_DIR}/feature_map.json",
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
    threads: 2  # thumbnails
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../workflow/scripts/explorer.py"
