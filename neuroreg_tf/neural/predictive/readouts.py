"""Per-neuron readouts of the core's features, each shifted with the eye position."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@tf.custom_gradient
def gather_rows(params: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """``tf.gather(params, indices, batch_dims=1)`` whose gradient sums in a fixed order.

    ``params`` is (batch, n, ...), ``indices`` (batch, k). TensorFlow's own gradient of a gather
    is an unsorted segment sum, whose multi-threaded CPU kernel adds rows in an order that varies
    from run to run (the predictive models then differ in the last bits after one epoch, and
    more after many). Here the gradient sorts the indices and uses the sorted ``segment_sum``.
    """
    output = tf.gather(params, indices, batch_dims=1)

    def gradient(upstream):
        shape = tf.shape(params)
        batch, rows = shape[0], shape[1]
        flat = tf.reshape(upstream, [tf.size(indices), -1])
        ids = tf.reshape(tf.cast(indices, tf.int32) + tf.range(batch)[:, None] * rows, [-1])
        order = tf.argsort(ids, stable=True)
        summed = tf.math.segment_sum(tf.gather(flat, order), tf.gather(ids, order))
        summed = tf.pad(summed, [[0, batch * rows - tf.shape(summed)[0]], [0, 0]])
        return tf.reshape(summed, shape), None

    return output, gradient


def _interpolate_axis(features, positions, axis):
    """Linear interpolation of ``features`` at fractional ``positions`` along ``axis`` (1 or 2).

    positions: (batch, size) coordinates; edges are extended (nearest).
    """
    size = features.shape[axis]
    lower = tf.floor(positions)
    fraction = positions - lower
    index0 = tf.cast(tf.clip_by_value(lower, 0, size - 1), tf.int32)
    index1 = tf.cast(tf.clip_by_value(lower + 1, 0, size - 1), tf.int32)
    if axis == 2:
        features = tf.transpose(features, [0, 2, 1, 3])
    first = gather_rows(features, index0)
    second = gather_rows(features, index1)
    fraction = tf.reshape(fraction, [-1, size, 1, 1])
    result = first * (1.0 - fraction) + second * fraction
    return tf.transpose(result, [0, 2, 1, 3]) if axis == 2 else result


def translate(features: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """Moves (batch, h, w, c) feature maps by ``shift`` (batch, 2) pixels (row, col).

    Bilinear and differentiable in ``shift`` (so a shifter can learn it);
    output[y, x] = input[y - shift_row, x - shift_col], edges extended.
    """
    height, width = features.shape[1], features.shape[2]
    rows = tf.range(height, dtype=features.dtype)[None] - shift[:, 0:1]
    cols = tf.range(width, dtype=features.dtype)[None] - shift[:, 1:2]
    return _interpolate_axis(_interpolate_axis(features, rows, 1), cols, 2)


class _Readout(keras.layers.Layer):
    """Per-neuron feature weights and bias, shared by the readouts."""

    def _add_feature_weights(self, n_features: int) -> None:
        self.features = self.add_weight(
            shape=(self.n_neurons, n_features),
            initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=self.seed + 1),
            name="features",
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer="zeros", name="bias")


class FactorizedReadout(_Readout):
    """Per-neuron spatial mask x feature weights on the pooled core features.

    The shifter's eye shift moves the readout grid (as neuralpredictors' readouts move their
    positions): the pooled features are translated by ``shift / pool`` grid cells.
    """

    def __init__(self, n_neurons, pool, l1, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.n_neurons = n_neurons
        self.pool = pool
        self.l1 = l1
        self.seed = seed

    def build(self, feature_shape):
        height = -(-feature_shape[1] // self.pool)
        width = -(-feature_shape[2] // self.pool)
        self.spatial = self.add_weight(
            shape=(self.n_neurons, height, width),
            initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=self.seed),
            name="spatial",
        )
        self._add_feature_weights(feature_shape[-1])

    def penalty(self):
        return self.l1 * (tf.reduce_mean(tf.abs(self.spatial)) + tf.reduce_mean(tf.abs(self.features)))

    def call(self, features, shift=None, training=False):
        if self.pool > 1:
            features = tf.nn.avg_pool2d(features, self.pool, self.pool, padding="SAME")
        if shift is not None:
            # The readout grid moves with the eye: translating the pooled map by shift / pool
            # cells moves every neuron's spatial mask by ``shift`` pixels (bilinearly), at a
            # pool**2-th of the cost of translating the full-resolution features.
            features = translate(features, shift / float(self.pool))
        spatial_out = tf.einsum("bhwc,nhw->bnc", features, self.spatial)
        return tf.reduce_sum(spatial_out * self.features[None], axis=-1) + self.bias


class GaussianReadout(_Readout):
    """Per-neuron point readout at a learned position mu, jittered by sigma in training."""

    def __init__(self, n_neurons, seed=0, init_mu_range=0.5, init_sigma=0.3, **kwargs):
        super().__init__(**kwargs)
        self.n_neurons = n_neurons
        self.seed = seed
        self.init_mu_range = init_mu_range
        self.init_sigma = init_sigma
        self.generator = tf.random.Generator.from_seed(seed)

    def build(self, feature_shape):
        self.mu = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.RandomUniform(-self.init_mu_range, self.init_mu_range, seed=self.seed),
            name="mu",
        )
        self.log_sigma = self.add_weight(
            shape=(self.n_neurons, 1), initializer=keras.initializers.Constant(np.log(self.init_sigma)), name="log_sigma"
        )
        self._add_feature_weights(feature_shape[-1])

    def penalty(self):
        return 0.0

    def call(self, features, shift=None, training=False):
        batch = tf.shape(features)[0]
        height, width = features.shape[1], features.shape[2]
        position = tf.tile(self.mu[None], [batch, 1, 1])
        if training:
            position += tf.exp(self.log_sigma)[None] * self.generator.normal(tf.shape(position))
        if shift is not None:
            # shift is (batch, 2) in pixels (row, col): convert to [-1, 1] units.
            scale = tf.constant([2.0 / max(height - 1, 1), 2.0 / max(width - 1, 1)])
            position += (shift * scale)[:, None, :]
        position = tf.clip_by_value(position, -1.0, 1.0)
        rows = (position[..., 0] + 1.0) * 0.5 * (height - 1)
        cols = (position[..., 1] + 1.0) * 0.5 * (width - 1)
        row0 = tf.clip_by_value(tf.floor(rows), 0.0, height - 2.0)
        col0 = tf.clip_by_value(tf.floor(cols), 0.0, width - 2.0)
        row_frac = (rows - row0)[..., None]
        col_frac = (cols - col0)[..., None]
        flat = tf.reshape(features, [batch, height * width, -1])

        def gather(r, c):
            index = tf.cast(r, tf.int32) * width + tf.cast(c, tf.int32)
            return gather_rows(flat, index)

        sampled = (
            gather(row0, col0) * (1 - row_frac) * (1 - col_frac)
            + gather(row0, col0 + 1) * (1 - row_frac) * col_frac
            + gather(row0 + 1, col0) * row_frac * (1 - col_frac)
            + gather(row0 + 1, col0 + 1) * row_frac * col_frac
        )
        return tf.reduce_sum(sampled * self.features[None], axis=-1) + self.bias

