# The paper: every number, claim and table generated from the result files (rule paper_numbers,
# in rule all), then the rule and file behind each and the run's record (checkpoint paper_sources,
# after provenance.json), then the PDF (rule paper_pdf, latexmk). Not in rule all (a machine without
# TeX Live still runs the pipeline):
#   snakemake paper --configfile config/smoke.yaml
from saesuite.report.paper_sources import run_benchmark_files

# The planted-dictionary benchmark the paper's validation appendix reports: its SAEs are trained
# on the synthetic activations the planted config named by `planted_validation` defines (the paper:
# config/planted.yaml, the same as `snakemake --configfile config/planted.yaml` trains, so the
# appendix and that run agree; the smoke run: a shorter one).
PLANTED_RECOVERY_CONFIG = config["planted_validation"]
PAPER_ROLES = {"A": A, "B": B, **({"R": REPLICATED[0]} if REPLICATED else {})}
PAPER_TABLES = ["models", "hyperparameters", "replication", "quality", "comparison", "sweep", "planted"]
PAPER_SECTIONS = sorted(str(p) for p in Path(workflow.basedir, "paper", "sections").glob("*.tex"))


rule planted_dictionary_recovery:
    input:
        config=PLANTED_RECOVERY_CONFIG,
    output:
        f"{RUN}/planted/recovery.json",
    params:
        # the config is checked against the workflow's schema, as the run's own config is
        schema=os.path.relpath(f"{workflow.basedir}/config/config.schema.yaml"),
        code=code_hash(f"{SCRIPTS}/planted_dictionary_recovery.py"),
    log:
        f"{RUN}/logs/planted_dictionary_recovery.log",
    benchmark:
        f"{RUN}/benchmarks/planted_dictionary_recovery.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../workflow/scripts/planted_dictionary_recovery.py"


rule paper_numbers:
    input:
        metrics_a=f"{RUN}/eval/{A}/metrics.json",
        metrics_b=f"{RUN}/eval/{B}/metrics.json",
        comparison=f"{RUN}/compare/{PAIR}/comparison.json",
        metrics_replication=expand(f"{RUN}/eval/{{model}}/replication/metrics.json", model=REPLICATED),
        baseline="paper/baseline.yaml",
        preliminary="paper/preliminary.yaml",
        # the cfg.json of each paper role: A and B the main SAEs, R the replication
        cfgs=[
            f"{RUN}/sae/{model}/{'replication/' if role == 'R' else ''}cfg.json" for role, model in PAPER_ROLES.items()
        ],
        manifests=[cache_manifest(model, EVAL_SPLIT) for model in PAPER_ROLES.values()],
        sweep=f"{RUN}/compare/{PAIR}/sweep.csv",
        frontiers=expand(f"{RUN}/sweep/{{model}}/frontier.csv", model=[A, B]),
        planted_recovery=f"{RUN}/planted/recovery.json",
        planted_pairs=f"{RUN}/compare/planted/planted_compare.json",
    output:
        numbers=f"{RUN}/paper/numbers.tex",
        tables=[f"{RUN}/paper/tables/{name}.tex" for name in PAPER_TABLES],
    params:
        roles=PAPER_ROLES,
        # what the run is made of (the first page's notice, the dataset section): from the config
        config={key: config.get(key) for key in ("run", "models", "dataset", "fixture", "top_k")},
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


# Every figure the paper prints, by the name its macros use (\FigFile<Name>, \FigSource<Name>),
# with the rule that draws it.
PAPER_FIGURES = {
    "frontier": ("figure_frontier", f"{RUN}/figures/frontier.png"),
    **{
        f"{figure}_{role.lower()}": (rule, path.format(model=model))
        for role, model in (("A", A), ("B", B))
        for figure, rule, path in (
            ("lifetime", "figure_lifetime_sparsity", f"{RUN}/figures/lifetime_sparsity_{{model}}.png"),
            ("training", "figure_training_curve", f"{RUN}/figures/training_curve_{{model}}.png"),
            *((name, "eval_figures", f"{RUN}/figures/eval/{{model}}/{name}.png") for name in EVAL_FIGURES),
        )
    },
    **{name: ("compare_figures", f"{RUN}/figures/compare/{PAIR}/{name}.png") for name in COMPARE_FIGURES},
    "sweep": ("figure_compare_sweep", f"{RUN}/figures/compare/{PAIR}/sweep.png"),
    "feature_map": ("figure_feature_map", f"{RUN}/figures/compare/{PAIR}/feature_map.png"),
    "planted_pairs": ("planted_compare", f"{RUN}/figures/compare/planted_shared_fraction.png"),
}


# A checkpoint: once it has run, provenance.json names every benchmark file of the run, which
# paper_pdf then declares as inputs for its wall-time table.
checkpoint paper_sources:
    input:
        numbers=f"{RUN}/paper/numbers.tex",
        provenance=PROVENANCE,
    output:
        f"{RUN}/paper/sources.tex",
    params:
        run=lambda w, output: str(Path(output[0]).parents[1]),
        pair=PAIR,
        models=[A, B],
        figures={name: path for name, (_, path) in PAPER_FIGURES.items()},
        figure_rules={name: rule for name, (rule, _) in PAPER_FIGURES.items()},
        tables=PAPER_TABLES,
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
        sections=[os.path.relpath(p, workflow.basedir) for p in PAPER_SECTIONS],
        bib="paper/references.bib",
        numbers=f"{RUN}/paper/numbers.tex",
        tables=rules.paper_numbers.output.tables,
        sources=f"{RUN}/paper/sources.tex",
        provenance=PROVENANCE,
        figures=[path for _, path in PAPER_FIGURES.values()],
        # the benchmark file of every job of the run, known once checkpoint paper_sources has run
        benchmarks=lambda w: run_benchmark_files(PROVENANCE, RUN, after=checkpoints.paper_sources.get()),
    output:
        f"{RUN}/paper/main.pdf",
    params:
        run=lambda w, output: str(Path(output[0]).parents[1]),
        # the benchmark file pattern of every rule: which rule each timing belongs to
        benchmark_rules=lambda w: {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark},
        code=code_hash(f"{SCRIPTS}/paper_pdf.py"),
    log:
        f"{RUN}/logs/paper_pdf.log",
    benchmark:
        f"{RUN}/benchmarks/paper_pdf.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/paper_pdf.py"


rule paper:
    input:
        f"{RUN}/paper/main.pdf",
