# Cross-model comparison of the two SAEs over the eval split (same images, same order).


rule compare_saes:
    input:
        cache_a=cache_manifest(A, EVAL_SPLIT),
        sae_a=f"{RUN}/sae/{A}/sae_weights.safetensors",
        cache_b=cache_manifest(B, EVAL_SPLIT),
        sae_b=f"{RUN}/sae/{B}/sae_weights.safetensors",
    output:
        comparison=f"{RUN}/compare/{PAIR}/comparison.json",
        overlap=f"{RUN}/compare/{PAIR}/topk_overlap.npz",
    params:
        compare=config["compare"],
    log:
        f"{RUN}/logs/compare_saes/{PAIR}.log",
    benchmark:
        f"{RUN}/benchmarks/compare_saes/{PAIR}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=gpus(config["compare"]["device"]),
    script:
        "../workflow/scripts/compare_saes.py"
