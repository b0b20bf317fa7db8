"""tf.data pipelines that pair classification batches with stimulus batches."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neuroreg_tf.targets import SimilarityTarget


def split_stimuli(n_stimuli: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits stimulus indices into (train, held-out), deterministically."""
    if not 0 <= holdout_fraction < 1:
        raise ValueError(
            f"`holdout_fraction` must be in [0, 1). Received: holdout_fraction={holdout_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n_stimuli)
    n_holdout = int(round(holdout_fraction * n_stimuli))
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def stimulus_dataset(
    target: SimilarityTarget, indices: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """An endless stream of (stimuli, target_similarity, stimulus_indices) batches.

    Pass p over ``indices`` is a stateless permutation seeded by (seed, p), cut into
    ``len(indices) // batch_size`` batches; batches never mix two passes, so every stimulus
    batch has distinct stimuli. The stream keeps no random state: every iterator yields the
    same batches. Stimuli and target blocks are gathered from the (possibly memory-mapped)
    target on demand, so no N x N matrix is ever built.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if batch_size < 2:
        raise ValueError(
            "A stimulus batch needs at least 2 stimuli to form a pair. "
            f"Received: batch_size={batch_size}"
        )
    if indices.size < batch_size:
        raise ValueError(
            f"The target has {indices.size} training stimuli, fewer than one stimulus "
            f"batch. Received: batch_size={batch_size}"
        )
    height, width, channels = target.stimuli.shape[1:]
    batches_per_pass = indices.size // batch_size
    pool = tf.constant(indices)
    seed_head = tf.constant(seed, tf.int64)

    def one_pass(pass_index):
        keys = tf.random.stateless_uniform([indices.size], seed=tf.stack([seed_head, pass_index]))
        order = tf.gather(pool, tf.argsort(keys, stable=True))
        batches = tf.reshape(order[: batches_per_pass * batch_size], [batches_per_pass, batch_size])
        return tf.data.Dataset.from_tensor_slices(batches)

    def fetch(batch_indices):
        stimuli, block = tf.numpy_function(
            target.batch, [batch_indices], [tf.float32, tf.float32], stateful=False
        )
        stimuli.set_shape([batch_size, height, width, channels])
        block.set_shape([batch_size, batch_size])
        return stimuli, block, batch_indices

    return (
        tf.data.Dataset.range(2**62)
        .flat_map(one_pass)
        .apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        .map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )


def joint_dataset(
    classification: tf.data.Dataset,
    target: SimilarityTarget,
    indices: np.ndarray,
    stimulus_batch_size: int,
    seed: int,
) -> tf.data.Dataset:
    """Zips (images, labels) batches with stimulus batches into training dicts.

    The classification dataset sets the epoch length; the stimulus stream is
    re-iterated as long as needed.
    """
    stimuli = stimulus_dataset(target, indices, stimulus_batch_size, seed)

    def to_dict(classification_batch, stimulus_batch):
        return {
            "images": classification_batch[0],
            "labels": classification_batch[1],
            "stimuli": stimulus_batch[0],
            "target_similarity": stimulus_batch[1],
            "stimulus_indices": stimulus_batch[2],
        }

    return tf.data.Dataset.zip(classification, stimuli).map(to_dict).prefetch(tf.data.AUTOTUNE)
