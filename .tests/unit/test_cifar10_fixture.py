"""
Rule test code for unit testing of rules generated with Snakemake 9.27.1.
"""

import os
import sys
import shutil
import tempfile
from pathlib import Path
from subprocess import check_output

sys.path.insert(0, os.path.dirname(__file__))


def test_cifar10_fixture(conda_prefix):

    with tempfile.TemporaryDirectory() as tmpdir:
        workdir = Path(tmpdir) / "workdir"
        config_path = Path(".tests/unit/cifar10_fixture/config")
        data_path = Path(".tests/unit/cifar10_fixture/data")
        expected_path = Path(".tests/unit/cifar10_fixture/expected")

        # Copy config to the temporary workdir.
        shutil.copytree(config_path, workdir)

        # Copy data to the temporary workdir.
        shutil.copytree(data_path, workdir, dirs_exist_ok=True)

        # Run the test job.
        check_output(
            [
                "python",
                "-m",
                "snakemake",
                "results/smoke/data/cifar10/cifar-10-batches-py/saesuite-fixture.json",
                "results/smoke/data/cifar10/cifar-10-batches-py/batches.meta",
                "results/smoke/data/cifar10/cifar-10-batches-py/data_batch_1",
                "results/smoke/data/cifar10/cifar-10-batches-py/data_batch_2",
                "results/smoke/data/cifar10/cifar-10-batches-py/data_batch_3",
                "results/smoke/data/cifar10/cifar-10-batches-py/data_batch_4",
                "results/smoke/data/cifar10/cifar-10-batches-py/data_batch_5",
                "results/smoke/data/cifar10/cifar-10-batches-py/test_batch",
                "--snakefile",
                "Snakefile",
                "-f",
                "--notemp",
                "--show-failed-logs",
                "-j1",
                "--target-files-omit-workdir-adjustment",
                "--allowed-rules",
                "cifar10_fixture",
                "--configfile",
                "config/smoke.yaml",
                "--directory",
                workdir,
            ]
            + conda_prefix
        )

        # Check the output byte by byte using cmp/zmp/bzcmp/xzcmp.
        # To modify this behavior, you can inherit from common.OutputChecker in here
        # and overwrite the method `compare_files(generated_file, expected_file),
        # also see common.py.
        import common
        common.OutputChecker(data_path, expected_path, workdir).check()
