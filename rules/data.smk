# The dataset. Real data (ImageNet, CIFAR-10) is external, but for CIFAR-10 with dataset.download,
# which one job fetches; otherwise only a fixture the config names is
# built here: the smoke config's CIFAR-10-format fixture, or the rehearsal's ImageFolder in
# ImageNet's layout (config/rehearsal.yaml).


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


if DOWNLOAD_CIFAR10:

    # On the machine that runs Snakemake (compute nodes may have no network); once, before the cache jobs.
    rule cifar10_download:
        output:
            FIXTURE_FILES,
        params:
            root=lambda w, output: Path(output[0]).parents[1],
            code=code_hash(f"{SCRIPTS}/download_cifar10.py"),
        log:
            f"{RUN}/logs/cifar10_download.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        script:
            "../workflow/scripts/download_cifar10.py"

else:

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
