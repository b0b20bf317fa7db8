"""The shifter: eye position -> a shift of every neuron's readout position (the image moves on
the retina with the eye)."""

from __future__ import annotations

import keras


def make_shifter(hidden_units: int = 8, seed: int = 0) -> keras.Sequential:
    """An MLP from the standardised pupil centre (batch, 2) to a (row, col) shift in pixels.

    The last layer starts at zero, so an untrained shifter shifts nothing.
    """
    return keras.Sequential(
        [
            keras.layers.Dense(
                hidden_units, activation="tanh",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            ),
            keras.layers.Dense(2, kernel_initializer="zeros"),
        ],
        name="shifter",
    )
