# Evaluation of each SAE over every row of the eval split's cache (and, for the
# zero-shot fidelity test, over the split's images), then its figures. Its files hold every
# per-latent statistic later stages show (latent_stats.npz: histograms, label mass, band samples),
# so nothing after it encodes the cache again. The SAE is a model's
# main SAE (eval/{model}/) or the baseline's replication (eval/{model}/replication/).

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
        sae=f"{RUN}/sae/{{sae}}/cfg.json",
        weights=f"{RUN}/sae/{{sae}}/sae_weights.safetensors",
        cache=lambda w: cache_manifest(sae_model(w.sae), EVAL_SPLIT),
        cache_data=lambda w: cache_data(sae_model(w.sae), EVAL_SPLIT),
        cache_embeds=lambda w: cache_embeds(sae_model(w.sae), EVAL_SPLIT),
    output:
        metrics=report(
            f"{RUN}/eval/{{sae}}/metrics.json",
            caption="../report/eval/metrics.rst",
            category="Evaluation",
            subcategory="{sae}",
            labels={"sae": "{sae}", "table": "metrics"},
        ),
        latents=f"{RUN}/eval/{{sae}}/latents.npz",
        table=report(
            f"{RUN}/eval/{{sae}}/latents.csv",
            caption="../report/eval/latents.rst",
            category="Evaluation",
            subcategory="{sae}",
            labels={"sae": "{sae}", "table": "per-latent table"},
        ),
        inputs=f"{RUN}/eval/{{sae}}/inputs.npz",
        latent_stats=f"{RUN}/eval/{{sae}}/latent_stats.npz",
        # every latent named in words, with each method's description and score (saesuite.evaluate.naming)
        names=f"{RUN}/eval/{{sae}}/names.json",
    params:
        evaluate={**config["evaluate"], "top_k": config["top_k"]},
        dataset=config["dataset"],
        code=code_hash(f"{SCRIPTS}/evaluate_sae.py"),
    log:
        f"{RUN}/logs/evaluate_sae/{{sae}}.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate_sae/{{sae}}.tsv"
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
        evaluate=config["evaluate"],
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
