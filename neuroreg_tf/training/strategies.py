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

import keras
import tensorflow as tf

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

    Exactness: with "synchronized", R replicas and one device differ only by
    float32 summation order. Keras' synchronized variance E[x^2] - E[x]^2 is
    ill-conditioned where a channel is nearly constant (e.g. the black
    backgrounds of Fashion-MNIST): there one SGD step at lr 0.1 left weights
    1e-3 apart in float32 and 2.5e-15 apart in float64 (measured, ResNet18
    width 1/8, 1 vs 2 logical CPU devices). On random images the difference
    stays at 1e-5.

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
    return len(layers)
