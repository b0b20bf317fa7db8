"""Collectives of the joint training step across ``tf.distribute`` replicas.

Eq 9 couples every stimulus of a batch, so each replica gathers the global batch's tapped
features and target rows (``all_gather_rows``, with gradients routed back to each replica's
rows); losses are summed over replicas where one device would see the whole batch. On one
replica every function here is the identity.
"""

from __future__ import annotations

import tensorflow as tf


def multi_replica_context():
    """The replica context when running on more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas() -> int:
    """The number of replicas of the current strategy (1 without one)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.distribute.get_strategy().num_replicas_in_sync
    return context.num_replicas_in_sync


def sum_over_replicas(value):
    """``value`` summed over the replicas of the current step (itself on one replica)."""
    context = multi_replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def at_least_float32(tensor):
    """``tensor`` in float32 if a mixed-precision policy computed it in 16 bits, else unchanged.

    The similarity and the task loss stay in float32 under ``mixed_float16`` and ``mixed_bfloat16``;
    a float64 model (as in the gradient tests) keeps its precision.
    """
    if tensor.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(tensor, tf.float32)
    return tensor


def all_gather_rows(context: tf.distribute.ReplicaContext, tensors):
    """Concatenates each tensor's rows over all replicas, in replica order, with gradients.

    Built from one SUM all-reduce of zero-padded buffers per tensor (the sum of a
    value and zeros is exact) rather than ``ReplicaContext.all_gather``, whose
    gradient mixes integer gathers with float all-reduces and can launch
    collectives in different orders on different replicas. The gradient of a
    SUM all-reduce is a SUM all-reduce, so replica r receives the summed
    gradient of its own rows.

    Args:
        context: the replica context of the current step.
        tensors: tensors sharing their first (batch) dimension on this replica.

    Returns:
        A list with, for each tensor, the rows of all replicas.
    """
    num_replicas = context.num_replicas_in_sync
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    local_rows = tf.shape(tensors[0])[0]
    rows_per_replica = tf.stop_gradient(
        context.all_reduce(
            tf.distribute.ReduceOp.SUM,
            tf.one_hot(replica, num_replicas) * tf.cast(local_rows, tf.float32),
        )
    )
    rows_per_replica = tf.cast(tf.round(rows_per_replica), tf.int32)
    before = tf.reduce_sum(rows_per_replica[:replica])
    after = tf.reduce_sum(rows_per_replica) - before - local_rows
    gathered = []
    for tensor in tensors:
        padding = [[before, after]] + [[0, 0]] * (tensor.shape.rank - 1)
        gathered.append(context.all_reduce(tf.distribute.ReduceOp.SUM, tf.pad(tensor, padding)))
    return gathered




def gather_rows(tensors) -> list:
    """Each tensor's rows over all replicas (``all_gather_rows``); the tensors themselves on one replica."""
    context = multi_replica_context()
    if context is None:
        return list(tensors)
    return all_gather_rows(context, list(tensors))
