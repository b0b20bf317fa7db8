"""A custom training loop for any strategy, MultiWorkerMirroredStrategy included.

Keras 3's ``fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585). ``train_loop`` runs the model's own ``train_step``
with ``strategy.run`` inside a ``tf.function`` and drives ordinary Keras
callbacks the way ``fit`` does (``on_train_begin``, ``on_epoch_begin``,
``on_train_batch_end`` with per-step logs, ``on_epoch_end`` with epoch logs,
``model.stop_training``), so CSVLogger, TensorBoard, TerminateOnNaN and
SimilarityMonitor keep their behaviour.

Chief-only writing: every worker computes the same logs, but only the chief
gets the writing callbacks (``writing_callbacks``) and writes checkpoints;
other workers run the rest. Checkpoints are atomic and may be taken mid-epoch;
a restarted run resumes at the exact step, data included (see
``neuroreg_tf.training.checkpointing``).

A cluster recipe (two machines, one process each, both started with the same
command and config; TF_CONFIG differs only in ``task.index``)::

    export TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python train.py --config=configs/cifar10_resnet18.py \\
        --config.strategy=multi_worker --workdir=/shared/run1

Worker 0 is the chief (or the task of type "chief" if the cluster has one).
The workdir should be on a shared filesystem so a restarted cluster finds the
chief's checkpoints; if one worker dies, the others block in their next
collective, so restart all workers (a scheduler's gang restart) and they
resume from the latest checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from neuroreg_tf.progress import Reporter, print_line
from neuroreg_tf.training.checkpointing import HISTORY, AtomicCheckpointer, EpochHistory, announce_resume
from neuroreg_tf.training.distributed_data import distribute_global_batches, epoch_stream

WRITING_CALLBACKS = (
    keras.callbacks.CSVLogger,
    keras.callbacks.TensorBoard,
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.BackupAndRestore,
)


def task_info(strategy: tf.distribute.Strategy | None = None) -> tuple[str, int]:
    """(task type, task index) of this process; ("worker", 0) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and resolver.task_type is not None:
        return resolver.task_type, int(resolver.task_id or 0)
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    return task.get("type", "worker"), int(task.get("index", 0))


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes logs, checkpoints and exports."""
    task_type, task_index = task_info(strategy)
    if task_type == "chief":
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
    return task_type == "worker" and task_index == 0 and "chief" not in cluster


def writing_callbacks(callbacks: Sequence[keras.callbacks.Callback]) -> list:
    """The callbacks that write files (CSV, TensorBoard, Keras checkpoints)."""
    return [c for c in callbacks if isinstance(c, WRITING_CALLBACKS)]


def callbacks_for_this_worker(callbacks, strategy=None) -> list:
    """All callbacks on the chief; the non-writing ones elsewhere."""
    if is_chief(strategy):
        return list(callbacks)
    writers = {id(c) for c in writing_callbacks(callbacks)}
    return [c for c in callbacks if id(c) not in writers]


def _evaluate(model, validation_data) -> dict:
    """Mean cross-entropy and accuracy of the classifier, computed locally."""
    total_loss = 0.0
    correct = 0.0
    count = 0

    @tf.function
    def batch_sums(images, labels):
        logits = model.classifier(images, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        hits = tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(labels, tf.int64)), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(hits), tf.shape(labels)[0]

    for batch in validation_data:
        images, labels = (batch["images"], batch["labels"]) if isinstance(batch, dict) else batch[:2]
        loss_sum, hit_sum, n = batch_sums(images, labels)
        total_loss += float(loss_sum)
        correct += float(hit_sum)
        count += int(n)
    count = max(count, 1)
    return {"val_loss": total_loss / count, "val_task_loss": total_loss / count,
            "val_accuracy": correct / count}


def _check_workers_agree(strategy: tf.distribute.Strategy, start_step: int) -> None:
    """Raises unless every worker restored the same step (e.g. no shared workdir)."""
    if strategy.num_replicas_in_sync == 1:
        return

    @tf.function
    def summed_steps():
        def replica_fn():
            step = tf.constant(float(start_step), tf.float64)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, step)

        return strategy.run(replica_fn)

    total = float(strategy.experimental_local_results(summed_steps())[0])
    if total != strategy.num_replicas_in_sync * start_step:
        raise RuntimeError(
            "Workers restored checkpoints of different steps (mean step "
            f"{total / strategy.num_replicas_in_sync:g}, this worker {start_step}). Every "
            "worker must see the chief's checkpoint directory: put the workdir on a shared "
            "filesystem."
        )


def make_train_function(model: keras.Model, strategy: tf.distribute.Strategy):
    """One distributed training step: ``train_step`` on every replica, logs averaged.

    With ``model.compile(jit_compile=True)`` each replica's step is compiled by XLA, as
    ``fit`` does it.
    """
    replica_step = model.train_step
    if getattr(model, "jit_compile", False):
        replica_step = tf.function(model.train_step, jit_compile=True)

    @tf.function
    def train_function(iterator):
        logs = strategy.run(replica_step, args=(next(iterator),))
        return {
            key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for key, value in logs.items()
        }

    return train_function


def train_loop(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    make_epoch: Callable[[int], tf.data.Dataset],
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | None = None,
    save_every_steps: int = 0,
    validation_data: tf.data.Dataset | None = None,
    verbose: int = 1,
    identity: str | None = None,
    progress: Reporter = print_line,
    history_csv: str | None = None,
) -> keras.callbacks.History:
    """Trains ``model`` (built and compiled under ``strategy.scope()``) like ``fit``.

    Args:
        model: a compiled model with a ``train_step``, e.g. NeuralRegularizedModel.
        strategy: the strategy it was built under.
        make_epoch: builds epoch e's dataset of GLOBAL batches (seeded by e).
        epochs: total epochs.
        steps_per_epoch: batches per epoch.
        callbacks: Keras callbacks; the writing ones run on the chief only.
        checkpoint_dir: where atomic checkpoints go (restored from when present).
        save_every_steps: also checkpoint every this many steps (0: epoch ends only).
        validation_data: (images, labels) batches evaluated at each epoch end.
        verbose: 1 prints one line per epoch (chief only).
        identity: the run's fingerprint, recorded in and checked against checkpoints.
        progress: reporter of the resume announcement (chief only; None: silent).
        history_csv: where the chief writes the run's history, a copy of the checkpoint's
            (``checkpointing.EpochHistory``).

    Returns:
        A History with this process's epoch logs.
    """
    chief = is_chief(strategy)
    checkpointer = None
    start_step = 0
    run_history = EpochHistory(history_csv, write=chief)
    if checkpoint_dir:
        checkpointer = AtomicCheckpointer(
            checkpoint_dir, write=chief, identity=identity, progress=progress if chief else None
        )
        with strategy.scope():
            state = checkpointer.restore(model)
        run_history.restore(state)
        start_step = 0 if state is None else int(state["global_step"])
        if chief:
            announce_resume(start_step, epochs, steps_per_epoch, checkpoint_dir, progress)
    _check_workers_agree(strategy, start_step)
    total_steps = epochs * steps_per_epoch
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        callbacks_for_this_worker(callbacks, strategy) + [history], model=model
    )
    callback_list.set_params({"epochs": epochs, "steps": steps_per_epoch, "verbose": verbose})
    data = distribute_global_batches(
        strategy, lambda: epoch_stream(make_epoch, epochs, steps_per_epoch, start_step)
    )
    iterator = iter(data)
    train_function = make_train_function(model, strategy)

    model.stop_training = False
    callback_list.on_train_begin()
    step = start_step
    logs = {}
    while step < total_steps and not model.stop_training:
        epoch = step // steps_per_epoch
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        started = time.time()
        while step < (epoch + 1) * steps_per_epoch:
            batch = step % steps_per_epoch
            callback_list.on_train_batch_begin(batch)
            logs = {k: float(v) for k, v in train_function(iterator).items()}
            step += 1
            callback_list.on_train_batch_end(batch, logs)
            if checkpointer and save_every_steps and step % save_every_steps == 0 \
                    and step % steps_per_epoch:
                checkpointer.save(model, step, epoch=epoch, step_in_epoch=step % steps_per_epoch,
                                  **{HISTORY: run_history.rows})
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if validation_data is not None:
            epoch_logs.update(_evaluate(model, validation_data))
        callback_list.on_epoch_end(epoch, epoch_logs)
        if not model.stop_training:
            run_history.add(epoch, epoch_logs)
            if checkpointer:
                checkpointer.save(model, step, epoch=epoch + 1, step_in_epoch=0, **{HISTORY: run_history.rows})
            run_history.write_csv()
        if verbose and chief:
            shown = " - ".join(f"{k}: {v:.4f}" for k, v in epoch_logs.items() if np.isscalar(v))
            print(f"Epoch {epoch + 1}/{epochs} ({time.time() - started:.1f}s) - {shown}", flush=True)
    callback_list.on_train_end(logs)
    return history
