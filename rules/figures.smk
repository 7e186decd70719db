# Figures, each drawn from one stage's files.


rule figure_lifetime_sparsity:
    input:
        latents=f"{RUN}/eval/{{model}}/latents.npz",
    output:
        report(
            f"{RUN}/figures/lifetime_sparsity_{{model}}.png",
            caption="../report/lifetime_sparsity.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "lifetime sparsity"},
        ),
    params:
        kind="lifetime_sparsity",
        title=lambda w: f"{w.model} SAE, {EVAL_SPLIT} split",
        code=code_hash(f"{SCRIPTS}/figure.py"),
    log:
        f"{RUN}/logs/figures/lifetime_sparsity_{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/figures/lifetime_sparsity_{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure.py"
