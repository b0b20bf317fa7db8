"""The core: stacked convolutions with dense skip connections and a Laplace smoothness penalty."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_LAPLACE = np.array([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]], np.float32)


def laplace_penalty(kernel: tf.Tensor) -> tf.Tensor:
    """sum(Laplace(kernel)^2) / sum(kernel^2) over a (k, k, in, out) kernel."""
    k, _, n_in, n_out = kernel.shape
    planes = tf.reshape(tf.transpose(kernel, [2, 3, 0, 1]), [n_in * n_out, k, k, 1])
    filtered = tf.nn.conv2d(planes, _LAPLACE[:, :, None, None], strides=1, padding="SAME")
    return tf.reduce_sum(tf.square(filtered)) / (tf.reduce_sum(tf.square(kernel)) + 1e-8)


class Core(keras.layers.Layer):
    """3 conv layers with dense skip connections; output = all layers concatenated."""

    def __init__(self, channels, input_kernel, hidden_kernel, seed=0, **kwargs):
        super().__init__(**kwargs)
        initializer = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
        self.convs = [
            keras.layers.Conv2D(channels, input_kernel, padding="same", kernel_initializer=initializer(0), name="conv1"),
            keras.layers.Conv2D(channels, hidden_kernel, padding="same", kernel_initializer=initializer(1), name="conv2"),
            keras.layers.Conv2D(channels, hidden_kernel, padding="same", kernel_initializer=initializer(2), name="conv3"),
        ]
        self.norms = [keras.layers.BatchNormalization(name=f"norm{i + 1}") for i in range(3)]

    def call(self, images, training=False):
        outputs = []
        x = images
        for conv, norm in zip(self.convs, self.norms):
            x = keras.activations.elu(norm(conv(x), training=training))
            outputs.append(x)
            x = keras.ops.concatenate(outputs, axis=-1)
        return x

