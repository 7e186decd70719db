# SAE training from the train split's cache (the seed's recipe by default).


rule train_sae:
    input:
        cache=cache_manifest("{model}", TRAIN_SPLIT),
    output:
        weights=f"{RUN}/sae/{{model}}/sae_weights.safetensors",
        cfg=f"{RUN}/sae/{{model}}/cfg.json",
        log=f"{RUN}/sae/{{model}}/train_log.jsonl",
    params:
        train=config["train"],
        seed=config["seed"],
    log:
        f"{RUN}/logs/train_sae/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/train_sae/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=gpus(config["train"]["device"]),
    script:
        "../workflow/scripts/train_sae.py"
