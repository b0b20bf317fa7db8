"""Input pipelines whose batches do not depend on the number of replicas or on restarts.

Two properties make distributed and resumed training reproduce a single-device,
uninterrupted run:

* **The global batch is fixed, replicas take slices of it.** Every input
  pipeline (one per worker) builds the same seeded stream of GLOBAL batches,
  and replica r of R receives rows [r * B / R, (r + 1) * B / R) of every
  component: images, labels, stimuli, and the same rows of the B x B target
  block. All-gathering over replicas (``NeuralRegularizedModel`` does so for
  the tapped features and the target rows) rebuilds exactly the global batch
  and its target block, in the same order as on one device.
* **Each epoch's data is a function of its epoch number.** ``epoch_stream``
  concatenates per-epoch datasets built with ``epoch_seed(seed, epoch)``,
  starting at any epoch and step, so a run resumed from a checkpoint sees the
  same batches as the uninterrupted run instead of replaying epoch 0's order
  (what a fresh iterator over a ``reshuffle_each_iteration`` dataset does).

Every worker reads the whole global batch and keeps its own slice; for
CIFAR-sized images that costs far less than a training step and buys
identical batches for any number of workers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible 31-bit seed for each (seed, epoch) pair."""
    mixed = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]
    return int(mixed) % (2**31 - 1)


def epoch_stream(
    make_epoch: Callable[[int], tf.data.Dataset],
    num_epochs: int,
    steps_per_epoch: int,
    start_step: int = 0,
) -> tf.data.Dataset:
    """The training batches from global step ``start_step`` to the end of training.

    Args:
        make_epoch: builds the dataset of one epoch from its epoch number (use
            ``epoch_seed`` for its shuffling/augmentation seeds); it must yield at
            least ``steps_per_epoch`` batches.
        num_epochs: total number of epochs of the run.
        steps_per_epoch: batches per epoch.
        start_step: the global step to start from (``epoch * steps_per_epoch +
            step_in_epoch`` of a checkpoint); 0 for a fresh run.

    Returns:
        A dataset of ``num_epochs * steps_per_epoch - start_step`` batches. It is
        rebuilt at every iteration, so each iterator yields the same batches
        (``reshuffle_each_iteration`` would otherwise give a second iterator a
        second order; ``fit`` under a strategy iterates once to build the model).
    """
    if steps_per_epoch < 1 or num_epochs < 1:
        raise ValueError(
            "steps_per_epoch and num_epochs must be positive. Received: "
            f"steps_per_epoch={steps_per_epoch}, num_epochs={num_epochs}"
        )
    total = num_epochs * steps_per_epoch
    if not 0 <= start_step <= total:
        raise ValueError(
            f"start_step must lie in [0, {total}] for {num_epochs} epochs of "
            f"{steps_per_epoch} steps. Received: start_step={start_step}"
        )
    first_epoch, skip = divmod(start_step, steps_per_epoch)
    stream = make_epoch(min(first_epoch, num_epochs - 1)).take(0)
    for epoch in range(first_epoch, num_epochs):
        batches = make_epoch(epoch).take(steps_per_epoch)
        if epoch == first_epoch and skip:
            batches = batches.skip(skip)
        stream = stream.concatenate(batches)
    return stream


def replica_slice(batch, replica: tf.Tensor, num_replicas: int):
    """Rows [replica * n / R, (replica + 1) * n / R) of every component of ``batch``.

    Uneven batches are split into slices whose sizes differ by at most one, so
    the task loss stays exact (it divides by the global count).
    """
    replica = tf.cast(replica, tf.int64)

    def rows(tensor):
        n = tf.cast(tf.shape(tensor, out_type=tf.int64)[0], tf.int64)
        start = replica * n // num_replicas
        end = (replica + 1) * n // num_replicas
        return tensor[start:end]

    return tf.nest.map_structure(rows, batch)


def worker_replica_batches(
    global_batches: tf.data.Dataset, first_replica: int, local_replicas: int, num_replicas: int
) -> tf.data.Dataset:
    """Turns each global batch into this worker's per-replica slices, in replica order."""
    if not 0 <= first_replica < first_replica + local_replicas <= num_replicas:
        raise ValueError(
            f"Replicas [{first_replica}, {first_replica + local_replicas}) are not within the "
            f"{num_replicas} replicas in sync. Received: first_replica={first_replica}, "
            f"local_replicas={local_replicas}"
        )

    def slices(*components):
        batch = components[0] if len(components) == 1 else components
        replicas = tf.data.Dataset.range(first_replica, first_replica + local_replicas)
        return replicas.map(lambda replica: replica_slice(batch, replica, num_replicas))

    return global_batches.flat_map(slices)


def distribute_global_batches(
    strategy: tf.distribute.Strategy, make_global_batches: Callable[[], tf.data.Dataset]
):
    """Distributes a stream of global batches so replica r gets the r-th slice of each.

    Args:
        strategy: the strategy training runs under.
        make_global_batches: builds the dataset of GLOBAL batches; called once per
            worker, it must give the same stream on every worker (seeded).

    Returns:
        The dataset itself under a single-replica strategy, else a
        ``tf.distribute.DistributedDataset`` for ``model.fit`` or a custom loop.
    """
    num_replicas = strategy.num_replicas_in_sync
    if num_replicas == 1:
        return make_global_batches()

    def dataset_fn(input_context: tf.distribute.InputContext):
        local_replicas = num_replicas // input_context.num_input_pipelines
        first_replica = input_context.input_pipeline_id * local_replicas
        batches = worker_replica_batches(
            make_global_batches(), first_replica, local_replicas, num_replicas
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        options.deterministic = True
        return batches.with_options(options).prefetch(local_replicas)

    return strategy.distribute_datasets_from_function(dataset_fn)
