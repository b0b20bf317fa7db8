"""The modulator: behaviour (running, pupil size) -> a per-neuron gain."""

from __future__ import annotations

import keras


def make_modulator(n_neurons: int, hidden_units: int = 16, seed: int = 0) -> keras.Sequential:
    """An MLP from standardised behaviour (batch, n_behavior) to a per-neuron log-gain.

    Its output is added to the readout's drive before ELU + 1, which multiplies the rate by
    about exp(output); the last layer starts at zero (gain 1).
    """
    return keras.Sequential(
        [
            keras.layers.Dense(
                hidden_units, activation="elu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            ),
            keras.layers.Dense(n_neurons, kernel_initializer="zeros"),
        ],
        name="modulator",
    )
