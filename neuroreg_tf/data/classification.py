"""tf.data pipelines for the classification datasets (grayscale, float in [0, 1]).

Datasets come from tfds and are never downloaded here: availability is checked
first, and a missing dataset raises ``DatasetNotFoundError`` at once with the
command that provides it. Fashion-MNIST is prepared offline from Debian's
``dataset-fashion-mnist`` files when needed (see ``fashion_mnist.py``).

Determinism: shuffling uses ``shuffle(seed=seed, reshuffle_each_iteration=True)``
and augmentation uses stateless random ops whose per-example seeds come from
``tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)``. A new
pipeline built with the same arguments therefore yields the same batches, in the
same order, on the same machine and TF version (each epoch differs from the
previous one, and the sequence of epochs is reproducible too).
"""

from __future__ import annotations

import dataclasses
import pathlib

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


def _to_grayscale_float(image, label):
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    return image, tf.cast(label, tf.int32)


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


def _augmented(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Augments each example with a stateless seed drawn from a seeded stream."""
    example_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    seed_head = tf.constant(seed, tf.int64)

    def augment_example(example, example_seed):
        image, label = example
        return augment_image(image, tf.stack([seed_head, example_seed])), label

    return tf.data.Dataset.zip((dataset, example_seeds)).map(
        augment_example, num_parallel_calls=tf.data.AUTOTUNE
    )


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
        shuffle: shuffle the examples (whole-split buffer), differently each epoch.
        seed: seed of shuffling and augmentation; same seed, same batches.
        limit: keep only the first ``limit`` examples of the split (before shuffling).
        repeat: repeat forever (each pass reshuffled and re-augmented).
        drop_remainder: drop the last incomplete batch.

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
    builder = tfds.builder(name, data_dir=str(data_dir), try_gcs=False)
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"Invalid split for {name!r}: expected one of {sorted(info.splits)} or a tfds "
            f"slice of them such as 'train[:90%]' ({error}). Received: split={split!r}"
        ) from None
    dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    if limit is not None:
        dataset = dataset.take(limit)
        num_examples = min(num_examples, limit)
    dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(max(num_examples, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(_to_grayscale_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        dataset = _augmented(dataset, seed)
    batch_shape = (None,) + info.image_shape
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda images, labels: (tf.ensure_shape(images, batch_shape), labels)
    )
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
