"""tf.data pipelines for the classification datasets (grayscale, float in [0, 1]).

Datasets come from tfds and are never downloaded here: availability is checked
first, and a missing dataset raises ``DatasetNotFoundError`` at once with the
command that provides it. Fashion-MNIST is prepared offline from Debian's
``dataset-fashion-mnist`` files when needed (see ``fashion_mnist.py``).

Each split is read once per process into host memory (``split_arrays``); pipelines
index into it. Determinism: the order of pass p is a stateless permutation seeded by
(seed, p) and augmentation uses stateless ops seeded by (seed, p, position), so a
pipeline holds no random state: every iterator of it, and every pipeline built with
the same arguments, yields the same batches (passes of ``repeat`` differ from each
other). That is what makes a resumed run see the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np

import tensorflow as tf
import tensorflow_datasets as tfds

from neuroreg_tf.data import common
from neuroreg_tf.data import fashion_mnist

AUGMENT_PADDING = 4


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a classification dataset, as ``load_classification`` yields it.

    Attributes:
        name: tfds name.
        num_classes: number of label classes (labels are 0..num_classes-1).
        image_shape: (height, width, channels) of the yielded images (grayscale).
        splits: official split names mapped to their number of examples.
    """

    name: str
    num_classes: int
    image_shape: tuple
    splits: dict


_DATASETS = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        splits={"train": 60000, "test": 10000},
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        num_classes=10,
        image_shape=(32, 32, 1),
        splits={"train": 50000, "test": 10000},
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        num_classes=100,
        image_shape=(32, 32, 1),
        splits={"train": 50000, "test": 10000},
    ),
}


def known_datasets() -> list[str]:
    """Returns the names ``load_classification`` accepts, sorted."""
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of a known dataset (needs no data on disk).

    Args:
        name: one of ``known_datasets()``.

    Raises:
        ValueError: unknown name.
    """
    if name not in _DATASETS:
        raise ValueError(
            f"Unknown classification dataset. Expected one of {known_datasets()}. "
            f"Received: name={name!r}"
        )
    return _DATASETS[name]


def tfds_prepare_command(name: str) -> str:
    """The shell command that prepares ``name`` with tfds (needs internet), into DIR."""
    return (
        "python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', data_dir='DIR').download_and_prepare()\""
    )


def _not_found_message(name: str, data_dir: pathlib.Path) -> str:
    where = data_dir / name
    if name == "fashion_mnist":
        return (
            f"Dataset 'fashion_mnist' is not prepared in {where} and its Debian source "
            f"files are missing from {common.FASHION_MNIST_SOURCE_DIR}. Install them with "
            f"`{common.FASHION_MNIST_INSTALL_COMMAND}`; the dataset is then prepared "
            "automatically on first use (or run "
            "`python -m neuroreg_tf.data.prepare --dataset=fashion_mnist`). "
            f"Received: data_dir={str(data_dir)!r}"
        )
    return (
        f"Dataset {name!r} is not prepared in {where}, and it is never downloaded here. "
        f"On a machine with internet run\n  {tfds_prepare_command(name)}\n"
        "then copy DIR to this machine and pass data_dir=DIR (or set "
        f"${common.DATA_DIR_ENV_VAR}=DIR), or copy DIR/{name} into {data_dir}. "
        f"Received: data_dir={str(data_dir)!r}"
    )


def ensure_available(name: str, data_dir=None) -> pathlib.Path:
    """Makes sure ``name`` is prepared in the data directory, without any download.

    Fashion-MNIST is prepared from the Debian files when they are installed.

    Args:
        name: one of ``known_datasets()``.
        data_dir: tfds data directory; default ``$NEUROREG_DATA_DIR`` or
            ``~/tensorflow_datasets``.

    Returns:
        The resolved data directory.

    Raises:
        ValueError: unknown name.
        DatasetNotFoundError: the dataset is not prepared and cannot be prepared
            offline; the message names the command that provides it.
    """
    dataset_info(name)
    data_dir = common.resolve_data_dir(data_dir)
    builder = tfds.builder(name, data_dir=str(data_dir), try_gcs=False)
    if builder.is_prepared():
        return data_dir
    if name == "fashion_mnist" and not fashion_mnist.missing_source_files():
        return fashion_mnist.prepare_fashion_mnist(data_dir)
    raise common.DatasetNotFoundError(_not_found_message(name, data_dir))


def _to_grayscale_float(image: tf.Tensor) -> tf.Tensor:
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    return image


NOISE_STREAM = 7919  # folded into an example's seed for its noise (apart from the crop and flip)


def augment_image(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pads by 4 pixels (zeros), crops back at a random place, flips at random.

    Args:
        image: float tensor (height, width, channels).
        seed: int tensor of shape (2,), the stateless seed; same seed, same output.

    Returns:
        The augmented image, same shape and value range as ``image``.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    pad = AUGMENT_PADDING
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def add_gaussian_noise(image: tf.Tensor, seed: tf.Tensor, *, sigma: float = 0.0, max_sigma: float = 0.0) -> tf.Tensor:
    """``image`` plus Gaussian noise, clipped to [0, 1]: the noise augmentation baseline.

    Args:
        image: float tensor in [0, 1].
        seed: the example's stateless seed (shape (2,)); its own streams are split from it.
        sigma: the noise's standard deviation, or
        max_sigma: when > 0, a standard deviation drawn uniformly from [0, max_sigma].

    Returns:
        The noisy image, same shape, in [0, 1].
    """
    sigma_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, NOISE_STREAM), 2))
    if max_sigma:
        sigma = tf.random.stateless_uniform([], seed=sigma_seed, minval=0.0, maxval=max_sigma)
    noise = tf.random.stateless_normal(tf.shape(image), seed=noise_seed, dtype=image.dtype)
    return tf.clip_by_value(image + tf.cast(sigma, image.dtype) * noise, 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _split_in_memory(name: str, split: str, data_dir: str, limit: int | None):
    """The examples of a split (its first ``limit``), read once per process: (images, labels).

    Images stay uint8 (what tfds stores; Fashion-MNIST's whole train split is 47 MB), labels
    int32, both as tensors on the host, shared by every epoch's pipeline.
    """
    info = dataset_info(name)
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    try:
        builder.info.splits[split].num_examples
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"Invalid split for {name!r}: expected one of {sorted(info.splits)} or a tfds "
            f"slice of them such as 'train[:90%]' ({error}). Received: split={split!r}"
        ) from None
    # No tfds auto-cache: it warns when a take(limit) stops before the end of the split.
    dataset = builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    if limit is not None:
        dataset = dataset.take(limit)
    images, labels = [], []
    for image_batch, label_batch in tfds.as_numpy(dataset.batch(8192)):
        images.append(image_batch)
        labels.append(label_batch)
    images = np.concatenate(images) if images else np.zeros((0, *info.image_shape), np.uint8)
    labels = np.concatenate(labels).astype(np.int32) if labels else np.zeros((0,), np.int32)
    return tf.constant(images), tf.constant(labels)


def split_arrays(name: str, split: str, *, data_dir=None, limit: int | None = None):
    """The first ``limit`` examples of a split as NumPy: (float32 images in [0, 1], int64 labels).

    Images are (n, height, width, 1) grayscale, exactly what ``load_classification`` yields.
    """
    data_dir = ensure_available(name, data_dir)
    images, labels = _split_in_memory(name, split, str(data_dir), limit)
    return _to_grayscale_float(images).numpy(), labels.numpy().astype(np.int64)


def _example_order(count: int, seed: int, pass_index: tf.Tensor, shuffle: bool) -> tf.Tensor:
    """Indices of one pass: ``range(count)``, or a stateless permutation of it for (seed, pass)."""
    if not shuffle:
        return tf.range(count, dtype=tf.int64)
    keys = tf.random.stateless_uniform(
        [count], seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(pass_index, tf.int64)])
    )
    return tf.cast(tf.argsort(keys, stable=True), tf.int64)


def load_classification(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir=None,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    limit: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    noise_sigma: float = 0.0,
    noise_max_sigma: float = 0.0,
) -> tf.data.Dataset:
    """Returns batches of (grayscale images, labels) of a classification dataset.

    Args:
        name: 'fashion_mnist' (28x28), 'cifar10' or 'cifar100' (32x32, converted to
            grayscale with ``tf.image.rgb_to_grayscale``).
        split: tfds split, e.g. 'train', 'test' or 'train[:90%]'.
        batch_size: examples per batch.
        data_dir: tfds data directory; default ``$NEUROREG_DATA_DIR`` or
            ``~/tensorflow_datasets``.
        augment: pad-4 random crop and random horizontal flip (meant for training).
        shuffle: shuffle the examples (a stateless permutation of the whole split).
        seed: seed of shuffling and augmentation; same seed, same batches, in every
            iterator of the dataset (no random state is kept between iterators).
        limit: keep only the first ``limit`` examples of the split (before shuffling).
        repeat: repeat forever (pass p shuffled and augmented with seed (seed, p)).
        drop_remainder: drop the last incomplete batch.
        noise_sigma: Gaussian noise augmentation (after ``augment``): each image plus noise of
            this standard deviation, clipped to [0, 1] (0: none).
        noise_max_sigma: instead, a standard deviation drawn per image uniformly from
            [0, noise_max_sigma] (e.g. the noise evaluation's range); both seeded like
            ``augment`` (0: none).

    Returns:
        A prefetched ``tf.data.Dataset`` of (images float32 (B, H, W, 1) in [0, 1],
        labels int32 (B,)).

    Raises:
        ValueError: unknown name or split, or a bad batch_size / limit.
        DatasetNotFoundError: the dataset is not available offline.
    """
    info = dataset_info(name)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or a positive integer. Received: limit={limit!r}")
    data_dir = ensure_available(name, data_dir)
    images, labels = _split_in_memory(name, split, str(data_dir), limit)
    count = int(labels.shape[0])

    def one_pass(pass_index):
        order = _example_order(count, seed, pass_index, shuffle)
        positions = tf.range(count, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([count], pass_index), positions, order)
        )

    if repeat:
        examples = tf.data.Dataset.range(2**62).flat_map(one_pass).apply(
            tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)
        )
    else:  # Known cardinality: Keras then knows the number of batches.
        examples = one_pass(tf.constant(0, tf.int64))

    if noise_sigma < 0 or noise_max_sigma < 0 or (noise_sigma and noise_max_sigma):
        raise ValueError(
            "Gaussian noise augmentation takes noise_sigma >= 0 or noise_max_sigma >= 0, not both. "
            f"Received: noise_sigma={noise_sigma}, noise_max_sigma={noise_max_sigma}"
        )
    seed_head = tf.constant(seed, tf.int64)

    def example(pass_index, position, index):
        image = _to_grayscale_float(tf.gather(images, index))
        example_seed = tf.random.experimental.stateless_fold_in(tf.stack([seed_head, pass_index]), position)
        if augment:
            image = augment_image(image, example_seed)
        if noise_sigma or noise_max_sigma:
            image = add_gaussian_noise(image, example_seed, sigma=noise_sigma, max_sigma=noise_max_sigma)
        return image, tf.gather(labels, index)

    batch_shape = (None,) + info.image_shape
    dataset = (
        examples
        .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=drop_remainder)
        .map(lambda x, y: (tf.ensure_shape(x, batch_shape), y))
    )
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
