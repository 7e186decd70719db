# The paper's numbers: LaTeX macros generated from the metric JSONs (never typed by hand).


rule paper_numbers:
    input:
        metrics_a=f"{RUN}/eval/{A}/metrics.json",
        metrics_b=f"{RUN}/eval/{B}/metrics.json",
        comparison=f"{RUN}/compare/{PAIR}/comparison.json",
        metrics_replication=expand(f"{RUN}/eval/{{model}}/replication/metrics.json", model=REPLICATED),
        baseline="paper/baseline.yaml",
    output:
        f"{RUN}/paper/numbers.tex",
    params:
        code=code_hash(f"{SCRIPTS}/paper_numbers.py"),
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


# The paper's PDF (latexmk; TeX Live from Debian's latexmk, texlive-latex-base and
# texlive-latex-recommended, or the container): paper/main.tex compiled beside numbers.tex,
# with sources.tex naming the rule and file behind every number and figure it shows.
# Not in rule all (a machine without TeX Live still runs the pipeline):
#   snakemake paper --configfile config/smoke.yaml
PAPER_FIGURES = {
    "frontier": f"{RUN}/figures/frontier.png",
    "similarity": f"{RUN}/figures/compare/{PAIR}/similarity.png",
    "overlap": f"{RUN}/figures/compare/{PAIR}/overlap_vs_chance.png",
}


rule paper_sources:
    input:
        numbers=f"{RUN}/paper/numbers.tex",
    output:
        f"{RUN}/paper/sources.tex",
    params:
        run=lambda w, output: str(Path(output[0]).parents[1]),
        pair=PAIR,
        models=[A, B],
        figures=PAPER_FIGURES,
        code=code_hash(f"{SCRIPTS}/paper_sources.py"),
    log:
        f"{RUN}/logs/paper_sources.log",
    benchmark:
        f"{RUN}/benchmarks/paper_sources.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow/scripts/paper_sources.py"


rule paper_pdf:
    input:
        tex="paper/main.tex",
        numbers=f"{RUN}/paper/numbers.tex",
        sources=f"{RUN}/paper/sources.tex",
        figures=list(PAPER_FIGURES.values()),
    output:
        f"{RUN}/paper/main.pdf",
    log:
        f"{RUN}/logs/paper_pdf.log",
    benchmark:
        f"{RUN}/benchmarks/paper_pdf.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cp {input.tex} $(dirname {output})/main.tex && cd $(dirname {output}) && "
        "latexmk -pdf -interaction=nonstopmode -halt-on-error main.tex > $OLDPWD/{log} 2>&1"


rule paper:
    input:
        f"{RUN}/paper/main.pdf",
