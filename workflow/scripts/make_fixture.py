"""Rule cifar10_fixture: write the CIFAR-10-format fixture the config names."""
from saesuite.data.fixture import make_cifar10_fixture
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    fx = snakemake.params.fixture
    make_cifar10_fixture(snakemake.params.root, n=fx["n_train"], n_test=fx["n_test"], seed=fx["seed"])
