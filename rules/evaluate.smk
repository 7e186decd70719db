# Evaluation of each SAE over every row of the eval split's cache (and, for the
# zero-shot fidelity test, over the split's images), then its figures.

EVAL_FIGURES = [
    "activation_heatmap",
    "neuron_alignment",
    "label_entropy_scatter",
    "sparsity_panel",
    "zero_shot_fidelity",
    "topk_frequent",
    "topk_low_entropy",
    "topk_random",
    "top_images",
]


rule evaluate_sae:
    input:
        dataset_input,
        sae=f"{RUN}/sae/{{model}}/cfg.json",
        weights=f"{RUN}/sae/{{model}}/sae_weights.safetensors",
        cache=cache_manifest("{model}", EVAL_SPLIT),
        cache_data=cache_data("{model}", EVAL_SPLIT),
    output:
        metrics=report(
            f"{RUN}/eval/{{model}}/metrics.json",
            caption="../report/eval/metrics.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "table": "metrics"},
        ),
        latents=f"{RUN}/eval/{{model}}/latents.npz",
        table=report(
            f"{RUN}/eval/{{model}}/latents.csv",
            caption="../report/eval/latents.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "table": "per-latent table"},
        ),
        inputs=f"{RUN}/eval/{{model}}/inputs.npz",
    params:
        evaluate=config["evaluate"],
        dataset=config["dataset"],
        code=code_hash(f"{SCRIPTS}/evaluate_sae.py"),
    log:
        f"{RUN}/logs/evaluate_sae/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate_sae/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=gpus(config["evaluate"]["device"]),
    script:
        "../workflow/scripts/evaluate_sae.py"


rule eval_figures:
    input:
        dataset_input,
        metrics=f"{RUN}/eval/{{model}}/metrics.json",
        table=f"{RUN}/eval/{{model}}/latents.csv",
        inputs=f"{RUN}/eval/{{model}}/inputs.npz",
    output:
        **{
            name: report(
                f"{RUN}/figures/eval/{{model}}/{name}.png",
                caption=f"../report/eval/{name}.rst",
                category="Evaluation",
                subcategory="{model}",
                labels={"model": "{model}", "figure": name.replace("_", " ")},
            )
            for name in EVAL_FIGURES
        },
    params:
        dataset=config["dataset"],
        split=EVAL_SPLIT,
        grid_latents=config["evaluate"].get("grid_latents", 6),
        seed=config["seed"],
        code=code_hash(f"{SCRIPTS}/eval_figures.py"),
    log:
        f"{RUN}/logs/eval_figures/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/eval_figures/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow/scripts/eval_figures.py"
