"""Quiet TensorFlow: its INFO lines and the notices it prints while loading, hidden.

Used by the scripts (through ``neuroreg_tf.cli``) and by worker processes, before TensorFlow is
imported.
"""

from __future__ import annotations

import os
import sys

# Lines TensorFlow 2.21 prints while it loads, before its logging is set up, so that
# TF_CPP_MIN_LOG_LEVEL cannot hide them; nothing a user can act on.
_IMPORT_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's INFO lines, and imports TensorFlow without its load-time notices.

    Warnings and errors stay (an explicit ``TF_CPP_MIN_LOG_LEVEL`` wins). The oneDNN notice and
    absl's "before InitializeLog" line are printed by TensorFlow's C++ libraries as they load,
    before its log level applies: standard error is captured while TensorFlow is imported and
    every other line is passed on.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in _IMPORT_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
