"""Paths and errors shared by the data loaders."""

from __future__ import annotations

import os
import pathlib

from neuroreg_tf.errors import MissingDataError

DATA_DIR_ENV_VAR = "NEUROREG_DATA_DIR"
FASHION_MNIST_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL_COMMAND = "sudo apt-get install dataset-fashion-mnist"


class DatasetNotFoundError(MissingDataError):
    """A dataset is neither prepared in the data directory nor preparable offline.

    The message names the command that provides the dataset.
    """


def default_data_dir() -> pathlib.Path:
    """Returns the tfds data directory used when none is given.

    ``$NEUROREG_DATA_DIR`` when set, else ``~/tensorflow_datasets`` (tfds' default).
    """
    from_env = os.environ.get(DATA_DIR_ENV_VAR)
    if from_env:
        return pathlib.Path(from_env).expanduser()
    return pathlib.Path("~/tensorflow_datasets").expanduser()


def resolve_data_dir(data_dir) -> pathlib.Path:
    """Returns ``data_dir`` as an absolute path, or the default data directory."""
    if data_dir is None:
        return default_data_dir()
    return pathlib.Path(data_dir).expanduser().absolute()
