"""Learning-rate schedules."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="neuroreg_tf")
class CyclicStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay within cycles, reset at each cycle's start (the paper's schedule).

    lr(epoch) = initial * decay ** ((epoch % cycle_epochs) // step_epochs),
    with epoch = step // steps_per_epoch. The paper: initial 0.1, decay 0.3
    every 4 epochs, reset to 0.1 after epoch 20 (cycle_epochs=20), 40 epochs.
    """

    def __init__(self, initial: float, steps_per_epoch: int, step_epochs: int = 4,
                 decay: float = 0.3, cycle_epochs: int = 20):
        if steps_per_epoch < 1 or step_epochs < 1 or cycle_epochs < 1:
            raise ValueError(
                "steps_per_epoch, step_epochs and cycle_epochs must be positive. Received: "
                f"steps_per_epoch={steps_per_epoch}, step_epochs={step_epochs}, "
                f"cycle_epochs={cycle_epochs}"
            )
        self.initial = float(initial)
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_epochs = int(step_epochs)
        self.decay = float(decay)
        self.cycle_epochs = int(cycle_epochs)

    def __call__(self, step):
        epoch = tf.math.floordiv(tf.cast(step, tf.int64), self.steps_per_epoch)
        drops = tf.math.floordiv(tf.math.floormod(epoch, self.cycle_epochs), self.step_epochs)
        return self.initial * tf.pow(self.decay, tf.cast(drops, tf.float32))

    def get_config(self):
        return {
            "initial": self.initial,
            "steps_per_epoch": self.steps_per_epoch,
            "step_epochs": self.step_epochs,
            "decay": self.decay,
            "cycle_epochs": self.cycle_epochs,
        }
