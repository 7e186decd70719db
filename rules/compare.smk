# Cross-model comparison of the two SAEs over the eval split (same images, same order),
# its figures, and the planted two-model benchmark of the comparison itself.

COMPARE_DIR = f"{RUN}/compare/{PAIR}"
COMPARE_FIGURES = ["overlap_vs_chance", "similarity", "best_pairs", "unpaired"]


rule compare_saes:
    input:
        cache_a=cache_manifest(A, EVAL_SPLIT),
        cache_data_a=cache_data(A, EVAL_SPLIT),
        sae_a=f"{RUN}/sae/{A}/sae_weights.safetensors",
        cfg_a=f"{RUN}/sae/{A}/cfg.json",
        cache_b=cache_manifest(B, EVAL_SPLIT),
        cache_data_b=cache_data(B, EVAL_SPLIT),
        sae_b=f"{RUN}/sae/{B}/sae_weights.safetensors",
        cfg_b=f"{RUN}/sae/{B}/cfg.json",
        # the SAEs of train.extra_seeds: the spread of every score across SAE seeds
        seed_saes_a=seed_sae_files(A, "sae_weights.safetensors"),
        seed_cfgs_a=seed_sae_files(A, "cfg.json"),
        seed_saes_b=seed_sae_files(B, "sae_weights.safetensors"),
        seed_cfgs_b=seed_sae_files(B, "cfg.json"),
    output:
        comparison=report(
            f"{COMPARE_DIR}/comparison.json",
            caption="../report/compare/comparison.rst",
            category="Comparison",
            subcategory=PAIR,
            labels={"pair": PAIR, "table": "scores"},
        ),
        overlap=f"{COMPARE_DIR}/topk_overlap.npz",
        pairs=report(
            f"{COMPARE_DIR}/pairs.csv",
            caption="../report/compare/pairs.rst",
            category="Comparison",
            subcategory=PAIR,
            labels={"pair": PAIR, "table": "one-to-one pairs"},
        ),
        null=f"{COMPARE_DIR}/null.csv",
        halves=f"{COMPARE_DIR}/halves.csv",  # every score on both halves of each split: the intervals
        # both models' features on one 2-D map (saesuite.compare.feature_map)
        feature_map=f"{COMPARE_DIR}/feature_map.csv",
        feature_map_record=f"{COMPARE_DIR}/feature_map.json",
    params:
        compare={**config["compare"], "k": config["top_k"]},
        seed=config["seed"],
        code=code_hash(f"{SCRIPTS}/compare_saes.py"),
    log:
        f"{RUN}/logs/compare_saes/{PAIR}.log",
    benchmark:
        f"{RUN}/benchmarks/compare_saes/{PAIR}.tsv"
    # the null's and the halves' score passes run in parallel (saesuite.compare.passes): one per thread,
    # each with its own temporaries (about 1.35 GB at 16,384 x 16,384 over 50,000 images); locally
    # Snakemake lowers this to --cores
    threads: 16
    resources:
        mem_mb=32000,
        runtime=240,
        gpu=gpus(config["compare"]["device"]),
    script:
        "../workflow/scripts/compare_saes.py"


rule compare_figures:
    input:
        dataset_input,
        comparison=f"{COMPARE_DIR}/comparison.json",
        overlap=f"{COMPARE_DIR}/topk_overlap.npz",
        pairs=f"{COMPARE_DIR}/pairs.csv",
    output:
        [
            report(
                f"{RUN}/figures/compare/{PAIR}/{figure}.png",
                caption=f"../report/compare/{figure}.rst",
                category="Comparison",
                subcategory=PAIR,
                labels={"pair": PAIR, "figure": figure.replace("_", " ")},
            )
            for figure in COMPARE_FIGURES
        ],
    params:
        dataset=config["dataset"],
        split=EVAL_SPLIT,
        names=[A, B],
        code=code_hash(f"{SCRIPTS}/compare_figures.py"),
    log:
        f"{RUN}/logs/compare_figures/{PAIR}.log",
    benchmark:
        f"{RUN}/benchmarks/compare_figures/{PAIR}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow/scripts/compare_figures.py"


# Both models' features on one map (the map itself is written by compare_saes, beside its scores).
rule figure_feature_map:
    input:
        table=f"{COMPARE_DIR}/feature_map.csv",
        record=f"{COMPARE_DIR}/feature_map.json",
    output:
        report(
            f"{RUN}/figures/compare/{PAIR}/feature_map.png",
            caption="../report/compare/feature_map.rst",
            category="Comparison",
            subcategory=PAIR,
            labels={"pair": PAIR, "figure": "feature map"},
        ),
    params:
        code=code_hash(f"{SCRIPTS}/figure_feature_map.py"),
    log:
        f"{RUN}/logs/figure_feature_map/{PAIR}.log",
    benchmark:
        f"{RUN}/benchmarks/figure_feature_map/{PAIR}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure_feature_map.py"


rule planted_compare:
    input:
        config=config["compare"]["planted_pairs"],
    output:
        result=f"{RUN}/compare/planted/planted_compare.json",
        sweep=f"{RUN}/compare/planted/shared_fraction_sweep.csv",
        figure=report(
            f"{RUN}/figures/compare/planted_shared_fraction.png",
            caption="../report/compare/planted_shared_fraction.rst",
            category="Comparison",
            subcategory="planted benchmark",
            labels={"figure": "shared fraction sweep"},
        ),
    params:
        code=code_hash(f"{SCRIPTS}/planted_compare.py"),
    log:
        f"{RUN}/logs/planted_compare.log",
    benchmark:
        f"{RUN}/benchmarks/planted_compare.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow/scripts/planted_compare.py"


# The comparison along the sweep: top-k overlap and code CKA of every SAE name both models
# trained (main and train.sweep), against their L0, so a reader sees how the scores move with
# sparsity; the headline comparison above pairs the main SAEs at matched L0.
rule compare_sweep:
    input:
        cache_a=cache_manifest(A, EVAL_SPLIT),
        cache_data_a=cache_data(A, EVAL_SPLIT),
        cfgs_a=sae_files(A, "cfg.json"),
        weights_a=sae_files(A, "sae_weights.safetensors"),
        cache_b=cache_manifest(B, EVAL_SPLIT),
        cache_data_b=cache_data(B, EVAL_SPLIT),
        cfgs_b=sae_files(B, "cfg.json"),
        weights_b=sae_files(B, "sae_weights.safetensors"),
    output:
        report(
            f"{COMPARE_DIR}/sweep.csv",
            caption="../report/compare/sweep_table.rst",
            category="Comparison",
            subcategory=PAIR,
            labels={"pair": PAIR, "table": "along the sweep"},
        ),
    params:
        names=["main", *SWEEP],
        k=config["top_k"],
        device=config["compare"]["device"],
        code=code_hash(f"{SCRIPTS}/compare_sweep.py"),
    log:
        f"{RUN}/logs/compare_sweep/{PAIR}.log",
    benchmark:
        f"{RUN}/benchmarks/compare_sweep/{PAIR}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=gpus(config["compare"]["device"]),
    script:
        "../workflow/scripts/compare_sweep.py"


rule figure_compare_sweep:
    input:
        f"{COMPARE_DIR}/sweep.csv",
    output:
        report(
            f"{RUN}/figures/compare/{PAIR}/sweep.png",
            caption="../report/compare/sweep.rst",
            category="Comparison",
            subcategory=PAIR,
            labels={"pair": PAIR, "figure": "along the sweep"},
        ),
    params:
        kind="compare_sweep",
        names=[A, B],
        code=code_hash(f"{SCRIPTS}/figure.py"),
    log:
        f"{RUN}/logs/figures/compare_sweep.log",
    benchmark:
        f"{RUN}/benchmarks/figures/compare_sweep.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure.py"
