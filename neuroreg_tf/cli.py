"""Set-up shared by the command-line scripts (train.py, evaluate.py, ...)."""

from __future__ import annotations

import importlib.util
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"


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


def load_config(name: str, arg: str | None = None):
    """``get_config(arg)`` of ``configs/<name>``, e.g. ``load_config("build_target.py", "demo")``."""
    path = CONFIGS_DIR / name
    spec = importlib.util.spec_from_file_location(f"neuroreg_configs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)
