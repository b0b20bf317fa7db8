"""Keras callbacks for neurally regularized training."""

from __future__ import annotations

import os

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


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """``CSVLogger`` in append mode whose file lists each trained epoch once, across resumes.

    A resumed run starts at the epoch after its checkpoint and trains the epochs from there
    again. Rows that the interrupted process wrote for those epochs (a row is written at an
    epoch's end, before the checkpoint that counts it) are dropped when the resumed run begins
    its first epoch, so the file matches the restored model: epochs 0, 1, ... once each, in
    order. Checkpointing callbacks must therefore come after this one in the callback list.
    """

    def __init__(self, filename: str, separator: str = ","):
        super().__init__(filename, separator=separator, append=True)
        self._first_epoch_of_this_fit = True

    def on_train_begin(self, logs=None):
        self._first_epoch_of_this_fit = True
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_of_this_fit:
            self._first_epoch_of_this_fit = False
            self._drop_rows_from(epoch)
        super().on_epoch_begin(epoch, logs)

    def _drop_rows_from(self, first_epoch: int) -> None:
        """Keeps the header and the rows of epochs before ``first_epoch``; reopens for appending."""
        if not os.path.exists(self.filename):
            return
        with open(self.filename, newline="") as f:
            lines = f.readlines()  # Rows hold no line breaks; kept byte for byte.
        kept = lines[:1] + [line for line in lines[1:] if _row_epoch(line, self.sep) < first_epoch]
        if kept == lines:
            return
        self.csv_file.close()
        scratch = f"{self.filename}.tmp"
        with open(scratch, "w", newline="") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(scratch, self.filename)
        self.csv_file = open(self.filename, "a", newline="")


def _row_epoch(line: str, separator: str) -> float:
    """The epoch a CSV row records; inf for a row cut short by a kill (so it is dropped)."""
    try:
        return int(line.split(separator, 1)[0]) if line.endswith("\n") else float("inf")
    except ValueError:
        return float("inf")
