# SAE training from the train split's cache: each model's SAE (the seed's recipe by
# default) and the sweep under train.sweep, trained together from one read of the
# cache; one more SAE per seed in train.extra_seeds (its own job: its own initialisation
# and sample order), for the comparison's spread across seeds; the baseline's replication
# (config key `replication`: its own recipe and run settings, its own job); then the sweep's
# sparsity/fidelity frontier on the eval split.


rule train_sae:
    input:
        cache=cache_manifest("{model}", TRAIN_SPLIT),
        cache_data=cache_data("{model}", TRAIN_SPLIT),
    output:
        weights=f"{RUN}/sae/{{model}}/sae_weights.safetensors",
        cfg=f"{RUN}/sae/{{model}}/cfg.json",
        log=f"{RUN}/sae/{{model}}/train_log.jsonl",
        sweep=sweep_files("{model}", "cfg.json"),
        sweep_weights=sweep_files("{model}", "sae_weights.safetensors"),
        sweep_logs=sweep_files("{model}", "train_log.jsonl"),
    params:
        train=TRAIN_OPTIONS,
        sweep=config["train"]["sweep"],
        seed=config["seed"],
        code=code_hash(f"{SCRIPTS}/train_sae.py"),
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


rule train_seed_sae:
    input:
        cache=cache_manifest("{model}", TRAIN_SPLIT),
        cache_data=cache_data("{model}", TRAIN_SPLIT),
    output:
        weights=f"{RUN}/sae/{{model}}/seeds/{{sae_seed}}/sae_weights.safetensors",
        cfg=f"{RUN}/sae/{{model}}/seeds/{{sae_seed}}/cfg.json",
        log=f"{RUN}/sae/{{model}}/seeds/{{sae_seed}}/train_log.jsonl",
    params:
        train=TRAIN_OPTIONS,
        sweep=[],
        seed=lambda w: int(w.sae_seed),
        code=code_hash(f"{SCRIPTS}/train_sae.py"),
    log:
        f"{RUN}/logs/train_seed_sae/{{model}}_{{sae_seed}}.log",
    benchmark:
        f"{RUN}/benchmarks/train_seed_sae/{{model}}_{{sae_seed}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=gpus(config["train"]["device"]),
    script:
        "../workflow/scripts/train_sae.py"


rule train_replication:
    input:
        cache=cache_manifest("{model}", TRAIN_SPLIT),
        cache_data=cache_data("{model}", TRAIN_SPLIT),
    output:
        weights=f"{RUN}/sae/{{model}}/replication/sae_weights.safetensors",
        cfg=f"{RUN}/sae/{{model}}/replication/cfg.json",
        log=f"{RUN}/sae/{{model}}/replication/train_log.jsonl",
    params:
        train=REPLICATION,
        sweep=[],
        seed=config["seed"],
        code=code_hash(f"{SCRIPTS}/train_sae.py"),
    log:
        f"{RUN}/logs/train_replication/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/train_replication/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
        runtime=480,
        gpu=gpus(REPLICATION["device"]) if REPLICATION else 0,
    script:
        "../workflow/scripts/train_sae.py"


rule sweep_frontier:
    input:
        cache=cache_manifest("{model}", EVAL_SPLIT),
        cache_data=cache_data("{model}", EVAL_SPLIT),
        main=f"{RUN}/sae/{{model}}/cfg.json",
        main_weights=f"{RUN}/sae/{{model}}/sae_weights.safetensors",
        sweep=sweep_files("{model}", "cfg.json"),
        sweep_weights=sweep_files("{model}", "sae_weights.safetensors"),
    output:
        report(
            f"{RUN}/sweep/{{model}}/frontier.csv",
            caption="../report/frontier_table.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "table": "sweep frontier"},
        ),
    params:
        names=["main", *SWEEP],
        device=config["evaluate"]["device"],
        code=code_hash(f"{SCRIPTS}/sweep_frontier.py"),
    log:
        f"{RUN}/logs/sweep_frontier/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/sweep_frontier/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpus(config["evaluate"]["device"]),
    script:
        "../workflow/scripts/sweep_frontier.py"


rule figure_frontier:
    input:
        expand(f"{RUN}/sweep/{{model}}/frontier.csv", model=MODELS),
    output:
        report(
            f"{RUN}/figures/frontier.png",
            caption="../report/frontier.rst",
            category="Training",
            subcategory="all models",
            labels={"figure": "sparsity/fidelity frontier"},
        ),
    params:
        kind="frontier",
        code=code_hash(f"{SCRIPTS}/figure.py"),
    log:
        f"{RUN}/logs/figures/frontier.log",
    benchmark:
        f"{RUN}/benchmarks/figures/frontier.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure.py"


rule figure_training_curve:
    input:
        log=f"{RUN}/sae/{{model}}/train_log.jsonl",
    output:
        report(
            f"{RUN}/figures/training_curve_{{model}}.png",
            caption="../report/training_curve.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "training curve"},
        ),
    params:
        kind="training_curve",
        title=lambda w: f"{w.model} SAE training",
        code=code_hash(f"{SCRIPTS}/figure.py"),
    log:
        f"{RUN}/logs/figures/training_curve_{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/figures/training_curve_{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure.py"
