"""Small file helpers: writes that never leave a partial file looking complete."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def json_default(value):
    """Converts NumPy scalars and arrays for ``json.dump``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} as JSON.")


def write_json_atomic(path: str, payload) -> None:
    """Writes JSON to ``path`` via a uniquely named temporary file, fsync and a rename.

    A process killed at any moment leaves either the old file or the new one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(payload, f, indent=2, default=json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
