# Activation caching: each split is cut into shard jobs over row ranges (run in
# parallel on several GPUs or as cluster jobs), then gathered into manifest.json. Each shard
# job also writes the images' CLIP embeddings (embed-NNNNN.npy) from the same forward pass.


rule cache_shard:
    input:
        dataset_input,
    output:
        shard=f"{RUN}/cache/{{model}}/{{split}}/{SHARD_FILES['npy']}",
        embed=f"{RUN}/cache/{{model}}/{{split}}/{SHARD_FILES['embed']}",
        labels=temp(f"{RUN}/cache/{{model}}/{{split}}/{SHARD_FILES['labels']}"),
        record=temp(f"{RUN}/cache/{{model}}/{{split}}/{SHARD_FILES['record']}"),
    params:
        model=lambda w: {"name": w.model, **config["models"][w.model]},
        dataset=config["dataset"],
        cache=config["cache"],
        n_shards=lambda w: SHARDS[w.split],
        init_seed=config["seed"],
        code=code_hash(f"{SCRIPTS}/cache_shard.py"),
    log:
        f"{RUN}/logs/cache_shard/{{model}}_{{split}}_{{index}}.log",
    benchmark:
        f"{RUN}/benchmarks/cache_shard/{{model}}_{{split}}_{{index}}.tsv"
    threads: config["cache"]["num_workers"] + 1
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=gpus(config["cache"]["device"]),
    script:
        "../workflow/scripts/cache_shard.py"


rule gather_cache:
    input:
        shards=shard_files("npy"),
        embeds=shard_files("embed"),
        labels=shard_files("labels"),
        records=shard_files("record"),
    output:
        manifest=f"{RUN}/cache/{{model}}/{{split}}/{MANIFEST}",
        labels=f"{RUN}/cache/{{model}}/{{split}}/{LABELS}",
    params:
        n_shards=lambda w: SHARDS[w.split],
        code=code_hash(f"{SCRIPTS}/gather_cache.py"),
    log:
        f"{RUN}/logs/gather_cache/{{model}}_{{split}}.log",
    benchmark:
        f"{RUN}/benchmarks/gather_cache/{{model}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow/scripts/gather_cache.py"
