"""Rule cifar10_download: real CIFAR-10 fetched once by torchvision (checksums checked) into dataset.root."""
from saesuite.data.datasets import download_cifar10
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    download_cifar10(snakemake.params.root)
