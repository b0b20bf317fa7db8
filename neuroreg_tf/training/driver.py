"""One entry point that trains exactly under any strategy and resumes exactly.

``train_model`` picks the driver: Keras ``fit`` for the default strategy and
``MirroredStrategy`` (one process), the custom loop of
``neuroreg_tf.training.multi_worker`` for ``MultiWorkerMirroredStrategy``
(where Keras 3's ``fit`` fails, keras-team/keras#20585). Both feed replica
slices of the same seeded global batches (``distributed_data``), restore the
latest atomic checkpoint first and start the input stream at its step, so a
resumed run ends with the weights of an uninterrupted one. Every option means
the same in both: ``save_every_steps`` (mid-epoch checkpoints, resumed exactly
by either) and the model's ``jit_compile`` (XLA for each replica's step).
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

from neuroreg_tf.progress import Reporter, print_line
from neuroreg_tf.training.checkpointing import ExactBackupAndRestore, announce_resume
from neuroreg_tf.training.distributed_data import distribute_global_batches, epoch_stream
from neuroreg_tf.training.multi_worker import train_loop


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans several processes (MultiWorkerMirroredStrategy)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def train_model(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    make_epoch: Callable[[int], tf.data.Dataset],
    *,
    epochs: int,
    steps_per_epoch: int,
    backup_dir: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    recorders: Sequence[keras.callbacks.Callback] = (),
    validation_data=None,
    save_every_steps: int = 0,
    verbose: int = 1,
    identity: str | None = None,
    progress: Reporter = print_line,
    history_csv: str | None = None,
) -> keras.callbacks.History:
    """Trains ``model`` (built and compiled under ``strategy.scope()``) for ``epochs``.

    Args:
        model: e.g. a compiled NeuralRegularizedModel.
        strategy: the strategy the model was built under.
        make_epoch: builds epoch e's dataset of GLOBAL batches, seeded by e (see
            ``distributed_data.epoch_seed``).
        epochs: total epochs of the run (also when resuming).
        steps_per_epoch: batches per epoch.
        backup_dir: the atomic checkpoint directory; restored from when present.
        callbacks: Keras callbacks; with ``fit`` they run after the epoch's checkpoint is
            written, in the multi-worker loop before it (there the writing ones run on the
            chief only).
        recorders: callbacks that add to an epoch's logs (e.g. ``SimilarityMonitor``), run
            before its checkpoint is written in either driver, so the history the checkpoint
            carries holds what they add.
        validation_data: evaluated at every epoch end.
        save_every_steps: also checkpoint every this many steps (0: at epoch ends
            only); either driver resumes from such a mid-epoch checkpoint exactly.
        verbose: Keras verbosity.
        identity: the run's fingerprint, recorded in and checked against checkpoints.
        progress: reporter of the resume announcement and checkpoint warnings (None: silent).
        history_csv: where the run's history is written: a copy of the history that every
            checkpoint carries, rewritten after each checkpoint and on restore, so it always
            describes the restored weights (``checkpointing.EpochHistory``).

    Returns:
        The History of this process's training (empty if it was already done).
    """
    if is_multi_worker(strategy):
        return train_loop(
            model, strategy, make_epoch, epochs=epochs, steps_per_epoch=steps_per_epoch,
            callbacks=[*recorders, *callbacks], checkpoint_dir=backup_dir, save_every_steps=save_every_steps,
            validation_data=validation_data, verbose=verbose, identity=identity, progress=progress,
            history_csv=history_csv,
        )
    backup = ExactBackupAndRestore(
        backup_dir, steps_per_epoch, save_every_steps, identity=identity, progress=progress,
        history_csv=history_csv,
    )
    with strategy.scope():
        start_step = backup.restore(model)
    announce_resume(start_step, epochs, steps_per_epoch, backup_dir, progress)
    history = keras.callbacks.History()
    history.history = {}
    total_steps = epochs * steps_per_epoch
    if start_step >= total_steps:
        return history
    data = distribute_global_batches(
        strategy, lambda: epoch_stream(make_epoch, epochs, steps_per_epoch, start_step)
    )
    callbacks = [*recorders, backup, *callbacks]
    epoch, step_in_epoch = divmod(start_step, steps_per_epoch)
    if step_in_epoch:
        # A mid-epoch checkpoint (from the custom loop): finish that epoch first.
        partial = model.fit(
            data, initial_epoch=epoch, epochs=epoch + 1,
            steps_per_epoch=steps_per_epoch - step_in_epoch,
            validation_data=validation_data, callbacks=callbacks, verbose=verbose, shuffle=False,
        )
        _extend(history, partial)
        epoch += 1
        if epoch == epochs or model.stop_training:
            return history
        data = distribute_global_batches(
            strategy, lambda: epoch_stream(make_epoch, epochs, steps_per_epoch, epoch * steps_per_epoch)
        )
    rest = model.fit(
        data, initial_epoch=epoch, epochs=epochs, steps_per_epoch=steps_per_epoch,
        validation_data=validation_data, callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    _extend(history, rest)
    return history


def _extend(history: keras.callbacks.History, more: keras.callbacks.History) -> None:
    for key, values in more.history.items():
        history.history.setdefault(key, []).extend(values)
    history.epoch = list(getattr(history, "epoch", [])) + list(more.epoch)
