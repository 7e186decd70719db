# Planted-dictionary benchmark (config/planted.yaml): caches of synthetic activations
# from a known sparse dictionary stand in for a dataset and a model; the SAEs
# trained on them are scored on how well their decoder rows recover it.


rule planted_cache:
    output:
        manifest=cache_manifest("planted", "{split}"),
        dictionary=f"{RUN}/cache/planted/{{split}}/dictionary.npy",
        labels=f"{RUN}/cache/planted/{{split}}/{LABELS}",
        shards=shard_paths("planted", "{split}", SHARDS[TRAIN_SPLIT]),
    params:
        planted=config["planted"],
        code=code_hash(f"{SCRIPTS}/planted_cache.py"),
    log:
        f"{RUN}/logs/planted_cache/{{split}}.log",
    benchmark:
        f"{RUN}/benchmarks/planted_cache/{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow/scripts/planted_cache.py"


rule planted_recovery:
    input:
        dictionary=f"{RUN}/cache/planted/{TRAIN_SPLIT}/dictionary.npy",
        main=f"{RUN}/sae/planted/cfg.json",
        main_weights=f"{RUN}/sae/planted/sae_weights.safetensors",
        sweep=sweep_files("planted", "cfg.json"),
        sweep_weights=sweep_files("planted", "sae_weights.safetensors"),
    output:
        report(
            f"{RUN}/planted/recovery.json",
            caption="../report/planted_recovery.rst",
            category="Planted benchmark",
            labels={"table": "dictionary recovery"},
        ),
    params:
        names=["main", *SWEEP],
        code=code_hash(f"{SCRIPTS}/planted_recovery.py"),
    log:
        f"{RUN}/logs/planted_recovery.log",
    benchmark:
        f"{RUN}/benchmarks/planted_recovery.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/planted_recovery.py"
