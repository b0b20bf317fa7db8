"""Distribution strategies chosen by name from a config.

``config.strategy`` selects how training is distributed:

* ``"default"``: TensorFlow's default strategy (one device, no replicas).
* ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over every visible GPU,
  or over every logical CPU device when there is no GPU (so the same code
  path runs, and is tested, on CPU-only machines).
* ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` across the
  workers listed in the ``TF_CONFIG`` environment variable.

BatchNorm under replicas is a separate choice, ``configure_batch_norm``:
``"per_replica"`` (Keras' default: each replica normalises with the statistics
of its own B/R images, and the moving averages are the mean over replicas of
the per-replica updates) or ``"synchronized"`` (batch statistics all-reduced
over the global batch at every BatchNorm call, one extra all-reduce per layer:
R replicas then compute what one device computes on the global batch).
"""

from __future__ import annotations

import json
import os
import types

import keras
import tensorflow as tf

from neuroreg_tf.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
BATCH_NORM_MODES = ("per_replica", "synchronized")


def _strategy_name(config) -> str:
    name = config.get("strategy", "default") if hasattr(config, "get") else config
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    return name


def mirrored_devices() -> list[str]:
    """The devices MirroredStrategy replicates over: all GPUs, else all CPUs."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def make_strategy(config) -> tf.distribute.Strategy:
    """Builds the distribution strategy named by ``config.strategy``.

    Args:
        config: a ConfigDict (or dict) with an optional ``strategy`` entry in
            ("default", "mirrored", "multi_worker"); a bare name also works.

    Returns:
        The ``tf.distribute.Strategy`` to build and train the model under.
    """
    name = _strategy_name(config)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=mirrored_devices())
    if "TF_CONFIG" not in os.environ:
        raise ValueError(
            "strategy='multi_worker' reads the cluster from the TF_CONFIG environment "
            "variable, which is not set. Set it on every worker, e.g. TF_CONFIG="
            + json.dumps({"cluster": {"worker": ["host0:12345", "host1:12345"]},
                          "task": {"type": "worker", "index": 0}})
            + ". Received: strategy='multi_worker'"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def check_jit_compile(strategy: tf.distribute.Strategy, jit_compile: bool) -> None:
    """Refuses XLA where TensorFlow cannot compile the replicated step.

    Replicas on logical devices of one CPU keep their variables on different devices, which an
    XLA cluster cannot reach (TensorFlow: "Trying to access resource ... located in device
    CPU:1 from device CPU:0"). One replica, or replicas on GPUs, compile.
    """
    if not jit_compile or strategy.num_replicas_in_sync == 1:
        return
    if not tf.config.list_logical_devices("GPU"):
        raise ConfigError(
            f"config.jit_compile=True cannot compile a step replicated over "
            f"{strategy.num_replicas_in_sync} CPU devices (XLA cannot reach variables on other "
            "logical devices). Use --config.jit_compile=False, or one replica "
            "(--config.strategy=default)."
        )


def _batch_norm_layers(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for child in getattr(layer, "layers", []):
        yield from _batch_norm_layers(child)


def configure_batch_norm(model: keras.Model, mode: str) -> int:
    """Makes every BatchNormalization layer of ``model`` per-replica or synchronized.

    The switch changes no weights and is stored in the layers' configs, so a
    saved model remembers it; with one replica both modes compute the same
    statistics (the synchronized form as E[x^2] - E[x]^2).

    With "synchronized", the batch moments of a training step are computed in
    two passes over all replicas (the global mean, then the global mean of
    squared deviations from it); with one replica they are ``tf.nn.moments``,
    exactly what per-replica BatchNorm computes. Keras' own synchronized
    moments (E[x^2] - E[x]^2 in one pass) are less well conditioned: on random
    images, 1 vs 2 replicas were 1.3e-5 apart after one step with them, 1.8e-7
    with these (ResNet18 width 1/8). A reloaded model keeps
    ``synchronized=True`` with Keras' form until configured again.

    R replicas and one device then differ only by float32 summation order.
    Nearly constant channels amplify it (BatchNorm divides by sqrt(var + eps)):
    on Fashion-MNIST's black backgrounds one SGD step at lr 0.1 left weights
    6e-4 apart in float32, and 2.5e-15 apart in float64.

    Args:
        model: a Keras model, searched recursively.
        mode: "per_replica" or "synchronized".

    Returns:
        The number of BatchNormalization layers configured.
    """
    if mode not in BATCH_NORM_MODES:
        raise ValueError(f"`batch_norm` must be one of {BATCH_NORM_MODES}. Received: batch_norm={mode!r}")
    layers = list(_batch_norm_layers(model))
    for layer in layers:
        layer.synchronized = mode == "synchronized"
        if mode == "synchronized":
            object.__setattr__(layer, "_moments", types.MethodType(_two_pass_global_moments, layer))
        else:
            layer.__dict__.pop("_moments", None)
    return len(layers)


def _two_pass_global_moments(layer, inputs, mask):
    """Batch mean and variance over all replicas' batches, in two passes."""
    context = tf.distribute.get_replica_context()
    if mask is not None:
        return type(layer)._moments(layer, inputs, mask)
    axes = layer._reduction_axes
    x = tf.convert_to_tensor(inputs)
    compute_dtype = x.dtype
    if compute_dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    if context is None or context.num_replicas_in_sync == 1:
        mean, variance = tf.nn.moments(x, axes)
    else:
        total = tf.distribute.ReduceOp.SUM
        local_count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        count = context.all_reduce(total, local_count)
        mean = context.all_reduce(total, tf.reduce_sum(x, axis=axes)) / count
        deviations = tf.square(x - tf.stop_gradient(mean))
        variance = context.all_reduce(total, tf.reduce_sum(deviations, axis=axes)) / count
    return tf.cast(mean, compute_dtype), tf.cast(variance, compute_dtype)
