"""Bit-for-bit reproducible TensorFlow: the same inputs and seed give the same numbers.

``enable`` turns on op determinism (``tf.config.experimental.enable_op_determinism``: kernels
with a deterministic alternative use it, the others raise) and turns off two of grappler's graph
rewrites, ``remapping`` (kernel fusion) and ``arithmetic_optimization`` (regrouping of sums).
With them on, the same tf.function on the same batch gave a predictive model's first-layer
kernel gradient that differed in its last bits on 3 to 6 of 40 repeats, and a target built twice
in fresh processes differed by up to 0.005 in its embedding; with either one off the in-process
repeats agreed (6 x 40 runs), and with both off so did Keras ``fit`` across fresh processes (only
``remapping`` off still varied there). Turning them off cost no measurable time on the joint
ResNet step on this 2-core CPU (bench/RESULTS.md). Call it before building models.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import tensorflow as tf


def enable() -> None:
    """Makes this process's TensorFlow computations reproducible (see the module docstring)."""
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options(
        {"remapping": False, "arithmetic_optimization": False}
    )


@contextlib.contextmanager
def preserved_global_random_state():
    """Restores Python's and NumPy's global random states when the block ends.

    Keras 3 draws the seeds of initializers and dropout made without one from Python's
    ``random`` (``keras.random.SeedGenerator``), so any library call that draws from it between
    ``keras.utils.set_random_seed`` and model building changes the model. Preparing a tfds dataset
    does: a run that prepared Fashion-MNIST first trained another model than every later run.
    Wrap such side work in this block and the seeded state is as if it never ran.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
