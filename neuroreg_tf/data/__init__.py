"""Data: classification datasets (tfds, offline) and stimulus images."""

from neuroreg_tf.data.classification import add_gaussian_noise
from neuroreg_tf.data.classification import augment_image
from neuroreg_tf.data.classification import dataset_info
from neuroreg_tf.data.classification import DatasetInfo
from neuroreg_tf.data.classification import ensure_available
from neuroreg_tf.data.classification import known_datasets
from neuroreg_tf.data.classification import load_classification
from neuroreg_tf.data.classification import split_arrays
from neuroreg_tf.data.common import DATA_DIR_ENV_VAR
from neuroreg_tf.data.common import DatasetNotFoundError
from neuroreg_tf.data.common import default_data_dir
from neuroreg_tf.data.fashion_mnist import prepare_fashion_mnist
from neuroreg_tf.data.stimuli import check_stimuli
from neuroreg_tf.data.stimuli import load_stimuli
from neuroreg_tf.data.stimuli import natural_stimuli
from neuroreg_tf.data.stimuli import NATURAL_IMAGE_NAMES
from neuroreg_tf.data.stimuli import validate_stimuli

__all__ = [
        "add_gaussian_noise",
        "augment_image",
        "dataset_info",
        "DatasetInfo",
        "ensure_available",
        "known_datasets",
        "load_classification",
        "split_arrays",
        "DATA_DIR_ENV_VAR",
        "DatasetNotFoundError",
        "default_data_dir",
        "prepare_fashion_mnist",
        "check_stimuli",
        "load_stimuli",
        "natural_stimuli",
        "NATURAL_IMAGE_NAMES",
        "validate_stimuli",
]
