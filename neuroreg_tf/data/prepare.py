"""Prepares a classification dataset for offline use.

    python -m neuroreg_tf.data.prepare --dataset=fashion_mnist [--data_dir=DIR]

Fashion-MNIST is built from Debian's files
(``sudo apt-get install dataset-fashion-mnist``) without network. For cifar10 and
cifar100 this only checks availability and prints how to provide them.
"""

from __future__ import annotations

from absl import app
from absl import flags

from neuroreg_tf.data import classification
from neuroreg_tf.data import common

_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist", classification.known_datasets(),
    "Dataset to prepare.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    f"tfds data directory (default ${common.DATA_DIR_ENV_VAR} or "
    "~/tensorflow_datasets).")


def prepare(dataset: str, data_dir=None) -> str:
    """Makes ``dataset`` available offline and returns a one-line summary.

    Raises:
        DatasetNotFoundError: it cannot be provided offline (the message says how).
    """
    ready_dir = classification.ensure_available(dataset, data_dir)
    info = classification.dataset_info(dataset)
    return f"{dataset} is ready in {ready_dir} (splits: {info.splits})."


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        print(prepare(_DATASET.value, _DATA_DIR.value))
    except common.DatasetNotFoundError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    app.run(main)
