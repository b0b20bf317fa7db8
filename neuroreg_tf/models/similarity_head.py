"""The similarity head of the joint model: taps -> S_CNN-k (Eq 9) -> S_CNN = sum_k gamma_k S_CNN-k (Eq 10).

``SimilarityHead`` reads the tapped layers' features of a stimulus batch (gathered over replicas
inside a multi-replica step), centres each layer's features with the batch mean (Eq 9) or a
running mean (``centering="ema"``), and weights the layers by gamma = softmax(gamma_logits).

Its variables -- ``gamma_logits``, and for EMA centring the per-layer running means and their
"started" flag -- are created through the owning model's ``add_weight``, in that order, so that
they are the model's own weights: the saved ``.keras`` layout and the checkpoints are those of
every model trained before the head had a module of its own. The head itself is a plain object,
which Keras neither tracks nor saves.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from neuroreg_tf import similarity
from neuroreg_tf.models import replicas
from neuroreg_tf.models.resnet import feature_model

CENTERINGS = ("batch", "ema")


class SimilarityHead:
    """S_CNN of a stimulus batch from the classifier's tapped layers (Eq 9-10).

    Args:
        classifier: the Keras functional classifier holding ``tap_layers``.
        tap_layers: resolved layer names.
        add_weight: the owning model's ``add_weight``.
        centering: "batch" (Eq 9) or "ema" (a running mean per feature dimension).
        ema_momentum: decay of the running mean.
        stimulus_shape: (height, width) of the stimuli; needed for "ema".
    """

    def __init__(self, classifier: keras.Model, tap_layers, add_weight: Callable, *, centering: str = "batch",
                 ema_momentum: float = 0.9, stimulus_shape=None):
        self.tap_layers = list(tap_layers)
        self.tap_model = feature_model(classifier, self.tap_layers)
        self.centering = centering
        self.ema_momentum = float(ema_momentum)
        self.gamma_logits = add_weight(
            name="gamma_logits", shape=(len(self.tap_layers),), initializer="zeros", trainable=True
        )
        self.feature_means = []
        self.ema_initialized = None
        if centering == "ema":
            if stimulus_shape is None:
                raise ValueError(
                    "centering='ema' keeps a running mean of each layer's features, "
                    "so it needs the stimulus size. Received: stimulus_shape=None; pass "
                    "e.g. stimulus_shape=(36, 64)."
                )
            probe = keras.ops.zeros((1, *stimulus_shape, classifier.input_shape[-1]))
            for name, output in zip(self.tap_layers, self.tap(probe, training=False)):
                dims = int(tf.reduce_prod(tf.shape(output)[1:]))
                self.feature_means.append(
                    add_weight(name=f"{name}_mean", shape=(dims,), initializer="zeros", trainable=False,
                               aggregation="only_first_replica")
                )
            self.ema_initialized = add_weight(
                name="ema_initialized", shape=(), initializer="zeros", trainable=False,
                aggregation="only_first_replica",
            )

    def gamma(self) -> tf.Tensor:
        """The current layer weights softmax(gamma_logits) (Eq 10)."""
        return tf.nn.softmax(self.gamma_logits)

    def tap(self, stimuli, training) -> list:
        """The tapped layers' outputs for ``stimuli``."""
        outputs = self.tap_model(stimuli, training=training)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def similarity(self, stimuli, training: bool = False, update_means: bool = False):
        """(S_CNN, [S_CNN-k]) of a stimulus batch; over the global batch inside a multi-replica step."""
        layer_outputs = replicas.gather_rows(self.tap(stimuli, training=training))
        return self.from_features(layer_outputs, update_means)

    def from_features(self, layer_outputs, update_means: bool):
        """Eq 9 per layer and Eq 10 from the tapped features."""
        per_layer = []
        for index, output in enumerate(layer_outputs):
            output = replicas.at_least_float32(output)
            mean = None
            if self.centering == "ema":
                mean = self.running_mean(index, output, update_means)
            per_layer.append(similarity.layer_similarity(output, mean))
        return similarity.combine_similarities(per_layer, self.gamma_logits), per_layer

    def running_mean(self, index: int, output, update: bool):
        """Layer ``index``'s running feature mean: the stored one, or updated by this batch's mean
        (the first batch's mean itself, then ``momentum * old + (1 - momentum) * batch``)."""
        batch_mean = tf.stop_gradient(tf.reduce_mean(similarity.flatten_features(output), axis=0))
        variable = self.feature_means[index]
        if not update:
            return tf.convert_to_tensor(variable)
        started = tf.cast(self.ema_initialized, batch_mean.dtype)
        momentum = started * self.ema_momentum
        updated = momentum * variable + (1.0 - momentum) * batch_mean
        variable.assign(updated)
        if index == len(self.feature_means) - 1:
            self.ema_initialized.assign(1.0)
        return updated
