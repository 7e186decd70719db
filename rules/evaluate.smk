# Evaluation of each SAE over every row of the eval split's cache.


rule evaluate_sae:
    input:
        sae=f"{RUN}/sae/{{model}}/cfg.json",
        weights=f"{RUN}/sae/{{model}}/sae_weights.safetensors",
        cache=cache_manifest("{model}", EVAL_SPLIT),
    output:
        metrics=f"{RUN}/eval/{{model}}/metrics.json",
        latents=f"{RUN}/eval/{{model}}/latents.npz",
    params:
        evaluate=config["evaluate"],
    log:
        f"{RUN}/logs/evaluate_sae/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate_sae/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=gpus(config["evaluate"]["device"]),
    script:
        "../workflow/scripts/evaluate_sae.py"
