"""Set-up shared by the command-line scripts (train.py, evaluate.py, ...)."""

import os


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ INFO lines; warnings and errors stay.

    Must run before TensorFlow is imported. An explicit TF_CPP_MIN_LOG_LEVEL wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def quiet_absl_info() -> None:
    """Shows absl/TensorFlow Python logs from WARNING up, unless --verbosity was given."""
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
