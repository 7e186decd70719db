# saesuite: SAEs on CLIP RN50 and ViT-L/14, from activation cache to cross-model comparison.
#   snakemake --cores all                                # the paper run (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml   # the offline smoke run
#   snakemake paper --configfile config/smoke.yaml       # a target goes before --configfile, which
#                                                        # takes several files and would swallow it
import os

from snakemake.utils import min_version

from saesuite.schema import check_config

min_version("9.0")


# The paper config is the default. A --configfile replaces it rather than being
# merged into it (Snakemake would otherwise deep-merge the two, e.g. run the
# paper's models beside the smoke config's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The schema check (and its defaults, filled in as snakemake.utils.validate does), with a short
# message: the dotted key, the problem, the allowed keys or values, a did-you-mean; jsonschema's
# full report (the whole schema and config) goes to the log file it names.
check_config(
    config,
    os.path.relpath(f"{workflow.basedir}/config/config.schema.yaml"),
    ".snakemake/log/config-error.log",
    source=" ".join(os.path.relpath(f) for f in workflow.overwrite_configfiles or ["config/config.yaml"]),
)


container: config.get("container", "docker://ghcr.io/saesuite/saesuite:0.1.0")


# `snakemake --report report.zip`: this page, then every figure and table the rules mark with
# report(...), with its caption from report/. A zip only: the feature explorer is a directory,
# which Snakemake refuses in a pure HTML report.
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/provenance.smk"
include: "rules/train.smk"


if PLANTED:

    include: "rules/planted.smk"

    rule all:
        default_target: True
        input:
            f"{RUN}/planted/recovery.json",
            f"{RUN}/figures/frontier.png",
            f"{RUN}/figures/training_curve_planted.png",
            PROVENANCE,

else:

    include: "rules/data.smk"
    include: "rules/activations.smk"
    include: "rules/evaluate.smk"
    include: "rules/compare.smk"
    include: "rules/figures.smk"
    include: "rules/paper.smk"
    include: "rules/explorer.smk"

    rule all:
        default_target: True
        input:
            expand(f"{RUN}/eval/{{model}}/metrics.json", model=MODELS),
            expand(f"{RUN}/eval/{{model}}/replication/metrics.json", model=REPLICATED),
            expand(f"{RUN}/figures/eval/{{model}}/{{figure}}.png", model=MODELS, figure=EVAL_FIGURES),
            f"{RUN}/compare/{PAIR}/comparison.json",
            f"{RUN}/compare/{PAIR}/sweep.csv",
            f"{RUN}/figures/compare/{PAIR}/sweep.png",
            expand(f"{RUN}/figures/lifetime_sparsity_{{model}}.png", model=MODELS),
            expand(f"{RUN}/figures/training_curve_{{model}}.png", model=MODELS),
            expand(f"{RUN}/figures/compare/{PAIR}/{{figure}}.png", figure=COMPARE_FIGURES),
            f"{RUN}/figures/compare/{PAIR}/feature_map.png",
            f"{RUN}/compare/planted/planted_compare.json",
            f"{RUN}/paper/numbers.tex",
            f"{RUN}/figures/frontier.png",
            PROVENANCE,
            f"{RUN}/explorer",
