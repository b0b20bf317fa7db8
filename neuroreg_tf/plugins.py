"""Modules of your own that register kinds, losses, formats or conditions, named in the environment.

``NEUROREG_TF_PLUGINS`` holds comma-separated module names; every script (and each study worker
process, which inherits the environment) imports them before it reads its config, so what they
register (``register_target_kind``, ``register_similarity_loss``, ``register_format``,
``register_condition``) is known to configs, ``--help`` and studies alike::

    NEUROREG_TF_PLUGINS=my_lab.kinds python build_target.py --help
"""

from __future__ import annotations

import importlib
import os

from neuroreg_tf.errors import ConfigError

VARIABLE = "NEUROREG_TF_PLUGINS"


def names() -> list[str]:
    """The module names in ``NEUROREG_TF_PLUGINS``."""
    return [name.strip() for name in os.environ.get(VARIABLE, "").split(",") if name.strip()]


def load() -> list[str]:
    """Imports every module ``NEUROREG_TF_PLUGINS`` names (each once); returns their names.

    Raises:
        ConfigError: a module that cannot be imported, naming it and the fix.
    """
    for name in names():
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(
                f"{VARIABLE} names module {name!r}, which cannot be imported ({error}); put it on PYTHONPATH "
                f"or drop it from {VARIABLE}. Received: {VARIABLE}={os.environ.get(VARIABLE)!r}"
            ) from None
    return names()
