"""Rule imagenet_fixture: write the generated ImageFolder (ImageNet's layout) the config names."""
from saesuite.data.imagefolder_fixture import make_imagefolder_fixture
from saesuite.runlog import log_to

with log_to(snakemake.log[0]):
    fx = dict(snakemake.params.fixture)
    make_imagefolder_fixture(snakemake.params.root, fx.pop("n_train"), fx.pop("n_test"), **fx)
