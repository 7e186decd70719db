# The dataset. Real data (ImageNet, CIFAR-10) is external; only the CIFAR-10-format
# fixture of the smoke config is built here, because the config names it.


rule cifar10_fixture:
    output:
        FIXTURE,
        FIXTURE_FILES,
    params:
        root=lambda w, output: Path(output[0]).parents[1],
        fixture=config.get("fixture"),
        code=code_hash(f"{SCRIPTS}/make_fixture.py"),
    log:
        f"{RUN}/logs/cifar10_fixture.log",
    benchmark:
        f"{RUN}/benchmarks/cifar10_fixture.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/make_fixture.py"
