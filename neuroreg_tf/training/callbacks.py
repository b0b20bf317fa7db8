"""Keras callbacks for neurally regularized training."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras

from neuroreg_tf import similarity
from neuroreg_tf.targets import SimilarityTarget


class SimilarityMonitor(keras.callbacks.Callback):
    """Adds the layer weights gamma and the held-out similarity fit to the logs.

    At the end of each epoch, the model similarity S_CNN of held-out stimuli
    (never used in training steps) is computed in inference mode with
    batch-mean centring over all of them, and compared with the target over
    i < j pairs. Logged keys: ``val_similarity_r`` (Pearson r),
    ``val_similarity_loss`` (the model's own similarity loss: Eq 8 with its clamp, or CKA)
    and ``gamma_<layer>`` for each tap.
    Put it before CSVLogger/TensorBoard so they record these keys.
    """

    def __init__(self, target: SimilarityTarget, holdout_indices, max_stimuli: int = 256,
                 verbose: bool = True):
        super().__init__()
        indices = np.asarray(holdout_indices)[:max_stimuli]
        self.enabled = indices.size >= 3
        if self.enabled:
            self.stimuli, self.target_block = target.batch(indices)
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        gamma = self.model.gamma().numpy()
        for name, value in zip(self.model.tap_layers, gamma):
            logs[f"gamma_{name}"] = float(value)
        if not self.enabled:
            return
        s_pred, _ = self.model.model_similarity(tf.constant(self.stimuli), training=False)
        logs["val_similarity_r"] = float(similarity.pair_correlation(s_pred, self.target_block))
        logs["val_similarity_loss"] = float(self.model.similarity_loss(s_pred, self.target_block))
        if self.verbose:
            weights = ", ".join(f"{n}={g:.2f}" for n, g in zip(self.model.tap_layers, gamma))
            print(f"\nepoch {epoch + 1}: held-out similarity r={logs['val_similarity_r']:.3f}; gamma: {weights}")
