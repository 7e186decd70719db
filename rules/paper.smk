# The paper's numbers: LaTeX macros generated from the metric JSONs (never typed by hand).


rule paper_numbers:
    input:
        metrics_a=f"{RUN}/eval/{A}/metrics.json",
        metrics_b=f"{RUN}/eval/{B}/metrics.json",
        comparison=f"{RUN}/compare/{PAIR}/comparison.json",
    output:
        f"{RUN}/paper/numbers.tex",
    log:
        f"{RUN}/logs/paper_numbers.log",
    benchmark:
        f"{RUN}/benchmarks/paper_numbers.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow/scripts/paper_numbers.py"
