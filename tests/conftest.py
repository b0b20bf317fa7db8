"""Fixtures and markers shared by the tests."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

# How long a test waits for a subprocess (or a cluster of them) before it calls it hung. A hang
# guard, never a speed check: the longest single wait of the suite, the distributed fixture's
# seven concurrent jobs, took 87 s on a quiet 2-core machine and 188 s with a second suite and a
# demo sharing the cores (bench/RESULTS.md); 30 minutes holds a slowdown of 20x. On a still
# slower machine scale it with NEUROREG_TEST_TIMEOUT_SCALE (e.g. 2).
SUBPROCESS_TIMEOUT_S = 1800 * float(os.environ.get("NEUROREG_TEST_TIMEOUT_SCALE", "1"))

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


# A small joint-training set-up shared by the model and pipeline tests.
JOINT_STIMULI = 40
JOINT_BATCH = 8


@pytest.fixture(scope="module")
def target():
    """A SimilarityTarget of 40 random 36 x 64 stimuli with a random embedding."""
    from neuroreg_tf import similarity
    from neuroreg_tf.targets import SimilarityTarget

    rng = np.random.default_rng(0)
    stimuli = rng.uniform(size=(JOINT_STIMULI, 36, 64, 1)).astype(np.float32)
    embedding = similarity.stimulus_embedding(rng.normal(size=(JOINT_STIMULI, 3)))
    return SimilarityTarget(stimuli=stimuli, embedding=embedding.astype(np.float32))


@pytest.fixture(scope="module")
def classification():
    """Four batches of random 28 x 28 images with labels in 0..9."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = rng.uniform(size=(4 * JOINT_BATCH, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 4 * JOINT_BATCH).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(JOINT_BATCH)


@pytest.fixture(scope="module")
def training_data(target, classification):
    """``classification`` zipped with stimulus batches of ``target`` (joint_dataset)."""
    from neuroreg_tf.training import joint_dataset

    return joint_dataset(classification, target, np.arange(JOINT_STIMULI), JOINT_BATCH, seed=0)


@contextlib.contextmanager
def capturing_figures():
    """Collects every matplotlib figure saved inside the block, by file name, to check what it shows."""
    from matplotlib.figure import Figure

    saved = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        saved[os.path.basename(str(fname))] = self
        return original(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", savefig)
        yield saved


@pytest.fixture
def saved_figures():
    """``capturing_figures`` for the whole test."""
    with capturing_figures() as saved:
        yield saved
