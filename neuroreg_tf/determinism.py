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

import tensorflow as tf


def enable() -> None:
    """Makes this process's TensorFlow computations reproducible (see the module docstring)."""
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options(
        {"remapping": False, "arithmetic_optimization": False}
    )
