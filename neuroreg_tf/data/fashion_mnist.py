"""Offline preparation of tfds' ``fashion_mnist`` from Debian's dataset-fashion-mnist.

Debian ships the four original IDX files in /usr/share/datasets/fashion-mnist/,
but re-gzipped, so their sizes and SHA-256 differ from the checksums tfds
records and the stock builder rejects them. ``OfflineFashionMNIST`` is the stock
builder with the local files' checksums; it is prepared with those files as
tfds' ``manual_dir``, so nothing is downloaded. The prepared dataset is the stock
``fashion_mnist`` 3.0.1 layout (same features, splits and record format), so
afterwards ``tfds.load('fashion_mnist', data_dir=...)`` works offline.
"""

from __future__ import annotations

import io
import pathlib
import tempfile

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from neuroreg_tf import determinism
from neuroreg_tf.fileio import sha256_file
from neuroreg_tf.data import common

_SOURCE_FILENAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image[..., 0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _local_url_infos(source_dir: pathlib.Path):
    """Maps each upstream URL tfds asks for to the matching local file's info."""
    url_infos = {}
    for filename in _SOURCE_FILENAMES:
        path = source_dir / filename
        url = tfds_mnist.FashionMNIST.URL + filename
        url_infos[url] = tfds.download.checksums.UrlInfo(
            size=path.stat().st_size, checksum=sha256_file(path), filename=filename)
    return url_infos


def _offline_builder_class(source_dir: pathlib.Path):
    """Returns a FashionMNIST builder class whose checksums are the local files'."""
    local_url_infos = _local_url_infos(source_dir)

    class OfflineFashionMNIST(tfds_mnist.FashionMNIST, skip_registration=True):
        """The stock FashionMNIST builder, verified against the local Debian files."""

        name = "fashion_mnist"
        # Recorded as `moduleName` in dataset_info.json: keeps the prepared folder
        # identical to one the stock builder writes.
        __module__ = tfds_mnist.__name__

        @tfds.core.utils.classproperty
        @classmethod
        def url_infos(cls):
            return local_url_infos

        def _generate_examples(self, num_examples, data_path, label_path):
            # PNG is lossless, so PIL yields the stock records' pixels; it is about
            # twice as fast as the stock path's one eager TF op per image.
            stock_examples = super()._generate_examples(num_examples, data_path, label_path)
            for key, example in stock_examples:
                yield key, {**example, "image": _png_bytes(example["image"])}

    return OfflineFashionMNIST


def missing_source_files(source_dir=common.FASHION_MNIST_SOURCE_DIR):
    """Returns the Fashion-MNIST IDX files absent from ``source_dir`` (a list)."""
    source_dir = pathlib.Path(source_dir)
    return [name for name in _SOURCE_FILENAMES if not (source_dir / name).is_file()]


def is_prepared(data_dir=None) -> bool:
    """Whether tfds' ``fashion_mnist`` is already prepared in ``data_dir``."""
    data_dir = common.resolve_data_dir(data_dir)
    builder = tfds.builder("fashion_mnist", data_dir=str(data_dir), try_gcs=False)
    return builder.is_prepared()


def prepare_fashion_mnist(
    data_dir=None, source_dir=common.FASHION_MNIST_SOURCE_DIR
) -> pathlib.Path:
    """Prepares tfds' ``fashion_mnist`` in ``data_dir`` from local IDX files, offline.

    Idempotent: returns at once when the dataset is already prepared.

    Args:
        data_dir: tfds data directory; default ``$NEUROREG_DATA_DIR`` or
            ``~/tensorflow_datasets``.
        source_dir: folder holding the four Fashion-MNIST ``*-ubyte.gz`` files, as
            installed by ``sudo apt-get install dataset-fashion-mnist``.

    Returns:
        The data directory, in which ``tfds.load('fashion_mnist', data_dir=...)`` now
        works without network.

    Raises:
        DatasetNotFoundError: the source files are missing.
    """
    data_dir = common.resolve_data_dir(data_dir)
    if is_prepared(data_dir):
        return data_dir
    source_dir = pathlib.Path(source_dir).expanduser()
    missing = missing_source_files(source_dir)
    if missing:
        raise common.DatasetNotFoundError(
            f"Fashion-MNIST is not prepared in {data_dir} and its source files "
            f"{missing} are missing from {source_dir}. Install them with "
            f"`{common.FASHION_MNIST_INSTALL_COMMAND}` (then this preparation runs "
            "automatically), or pass source_dir= pointing to a folder with the four "
            f"IDX .gz files. Received: source_dir={str(source_dir)!r}")
    builder_class = _offline_builder_class(source_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    builder = builder_class(data_dir=str(data_dir))
    # tfds draws from Python's global `random` while it prepares; a seeded caller must not
    # see that (it would build another model on a first run than on every later run).
    with determinism.preserved_global_random_state(), \
            tempfile.TemporaryDirectory(dir=data_dir) as scratch_dir:
        try:
            builder.download_and_prepare(
                download_dir=scratch_dir,
                download_config=tfds.download.DownloadConfig(
                    manual_dir=str(source_dir),
                    try_download_gcs=False,
                    download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
                ),
            )
        except OSError:
            if not is_prepared(data_dir):  # Else another process finished first.
                raise
    return data_dir
