"""Two replicas in one process, for ``tests/models/test_regularized.py`` (no tests here).

Run as a script by ``test_two_replicas_gather_every_row_in_replica_order`` (logical CPU devices
must be configured before the first TensorFlow op, hence the subprocess):

    python tests/training/two_replicas.py IN.npz OUT.npz

IN holds ``split`` (the rows of replica 0; replica 1 gets the rest), the arrays ``wide`` (rows x 4)
and ``deep`` (rows x 2 x 3) to gather, ``stimuli`` and the tiny model's parameters. OUT holds, per
replica r, what ``all_gather_rows`` returned (``wide_r``, ``deep_r`` from one call with both
tensors, ``alone_r`` from a call with ``wide`` alone) and the S_CNN that ``model_similarity``
returned for that replica's share of the stimuli (``s_cnn_r``). The test compares them with
NumPy; nothing is checked here.
"""

from __future__ import annotations

import sys

import numpy as np


def main(in_path: str, out_path: str) -> None:
    import tensorflow as tf

    from distributed_helpers import configure_cpu_devices  # this script's folder is on sys.path

    configure_cpu_devices(2)
    import keras

    keras.config.set_floatx("float64")
    from neuroreg_tf.models import NeuralRegularizedModel
    from neuroreg_tf.models.replicas import all_gather_rows

    data = dict(np.load(in_path))
    split = int(data["split"])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def shares(array):
        return strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(array[:split] if context.replica_id_in_sync_group == 0 else array[split:])
        )

    def gather(*tensors):
        return all_gather_rows(tf.distribute.get_replica_context(), list(tensors))

    both = strategy.run(gather, args=(shares(data["wide"]), shares(data["deep"])))
    alone = strategy.run(gather, args=(shares(data["wide"]),))

    with strategy.scope():
        inputs = keras.Input((3, 3, 1))
        hidden = keras.layers.Dense(4, activation="tanh", name="hidden")(keras.layers.Flatten()(inputs))
        logits = keras.layers.Dense(3, name="logits")(hidden)
        classifier = keras.Model(inputs, logits)
        classifier.get_layer("hidden").set_weights([data["w1"], data["b1"]])
        classifier.get_layer("logits").set_weights([data["w2"], data["b2"]])
        model = NeuralRegularizedModel(classifier, tap_layers=["hidden", "logits"], alpha=1.0)
        model.gamma_logits.assign(data["g"])
    s_cnn = strategy.run(lambda stimuli: model.model_similarity(stimuli)[0], args=(shares(data["stimuli"]),))

    out = {}
    for name, value in (("wide", [b[0] for b in strategy.experimental_local_results(both)]),
                        ("deep", [b[1] for b in strategy.experimental_local_results(both)]),
                        ("alone", [a[0] for a in strategy.experimental_local_results(alone)]),
                        ("s_cnn", strategy.experimental_local_results(s_cnn))):
        for replica, tensor in enumerate(value):
            out[f"{name}_{replica}"] = tensor.numpy()
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
