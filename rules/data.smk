# The dataset. Real data (ImageNet, CIFAR-10) is external; only a fixture the config names is
# built here: the smoke config's CIFAR-10-format fixture, or the rehearsal's ImageFolder in
# ImageNet's layout (config/rehearsal.yaml).


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


rule imagenet_fixture:
    output:
        IMAGENET_FIXTURE,
    params:
        root=lambda w, output: Path(output[0]).parent,
        fixture=config.get("fixture"),
        code=code_hash(f"{SCRIPTS}/make_imagefolder_fixture.py"),
    log:
        f"{RUN}/logs/imagenet_fixture.log",
    benchmark:
        f"{RUN}/benchmarks/imagenet_fixture.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow/scripts/make_imagefolder_fixture.py"
