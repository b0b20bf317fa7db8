"""The composed predictive model: core + readout + shifter + modulator -> ELU + 1 rates."""

from __future__ import annotations

import keras
import tensorflow as tf

from neuroreg_tf.neural.predictive.config import PredictiveModelConfig
from neuroreg_tf.neural.predictive.core import Core, laplace_penalty
from neuroreg_tf.neural.predictive.modulator import make_modulator
from neuroreg_tf.neural.predictive.readouts import FactorizedReadout, GaussianReadout
from neuroreg_tf.neural.predictive.shifter import make_shifter

class PredictiveModel(keras.Model):
    """Core + readout + shifter + modulator -> ELU + 1 rates, one scan's neurons."""

    def __init__(self, n_neurons: int, config: PredictiveModelConfig, **kwargs):
        super().__init__(**kwargs)
        config.validate()
        self.config = config
        self.core = Core(config.channels, config.input_kernel, config.hidden_kernel, seed=config.seed, name="core")
        if config.readout == "factorized":
            self.readout = FactorizedReadout(n_neurons, config.readout_pool, config.readout_l1, seed=config.seed, name="readout")
        else:
            self.readout = GaussianReadout(n_neurons, seed=config.seed, name="readout")
        self.shifter = make_shifter(seed=config.seed + 10) if config.use_shifter else None
        self.modulator = make_modulator(n_neurons, seed=config.seed + 11) if config.use_modulator else None
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        images, behavior, pupil_center = inputs
        features = self.core(images, training=training)
        shift = self.shifter(pupil_center) if self.shifter is not None else None
        drive = self.readout(features, shift=shift, training=training)
        if self.modulator is not None:
            drive = drive + self.modulator(behavior)  # log-gain: exp(m) multiplies ELU+1 approximately
        return keras.activations.elu(drive) + 1.0

    def regularization(self) -> tf.Tensor:
        """Laplace smoothness of the first core layer plus the readout's sparsity penalty."""
        return self.config.laplace_weight * laplace_penalty(self.core.convs[0].kernel) + self.readout.penalty()

    def train_step(self, data):
        """One Adam step on the Poisson loss plus ``regularization``; logs the Poisson loss."""
        inputs, responses = data
        with tf.GradientTape() as tape:
            rates = self(inputs, training=True)
            loss = poisson_loss(responses, rates)
            objective = loss + self.regularization()
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(objective, variables), variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


def poisson_loss(responses, rates, eps=1e-8):
    """Mean Poisson negative log-likelihood (up to a constant): rate - y log(rate)."""
    return tf.reduce_mean(rates - responses * tf.math.log(rates + eps))


