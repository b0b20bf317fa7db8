"""Fixtures and markers shared by the tests."""

from __future__ import annotations

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(FASHION_MNIST), reason="needs `sudo apt-get install dataset-fashion-mnist`"
)


@pytest.fixture(scope="session")
def runlocal_target(tmp_path_factory) -> str:
    """The target of ``configs/build_target.py:runlocal`` (tiny SIMULATED Neural (data)), built once."""
    from neuroreg_tf import cli
    from neuroreg_tf.neural import build_targets

    out_dir = str(tmp_path_factory.mktemp("runlocal_target"))
    return build_targets.ensure_built(cli.load_config("build_target.py", "runlocal"), out_dir, progress=None)
