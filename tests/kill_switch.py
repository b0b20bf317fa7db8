"""Kills a run (in-process) at a chosen step boundary: before or after any file commit, or at a step end.

Every file a run commits goes through ``os.replace`` (JSON, history.csv, checkpoints, Keras
files, the SavedModel). ``KillSwitch`` counts those commits and the ends of training steps as
boundaries, names each (temporary names made stable), and raises ``Killed`` at boundary
``kill_at``. ``Killed`` derives from ``BaseException`` as ``KeyboardInterrupt`` does: nothing
after it runs but cleanup handlers, which only remove temporary files. The end-to-end SIGKILL
of whole processes is ``tests/scripts/test_interruptions.py``.
"""

from __future__ import annotations

import contextlib
import os
import re

import keras
import pytest

_TEMPORARY = re.compile(r"\.tmp-[^/]*")


class Killed(BaseException):
    """Stands in for a SIGKILL."""


class KillSwitch:
    """Boundaries of one run under ``root``; raises ``Killed`` at boundary ``kill_at`` (None: never)."""

    def __init__(self, root: str, kill_at: int | None = None):
        self.root = root
        self.kill_at = kill_at
        self.boundaries: list[str] = []
        self.killed_at: str | None = None

    def boundary(self, what: str) -> None:
        if len(self.boundaries) == self.kill_at:
            self.killed_at = what
            raise Killed(what)
        self.boundaries.append(what)

    @contextlib.contextmanager
    def armed(self):
        """Counts commits while the block runs; a ``Killed`` raised by the switch ends the block."""
        original_replace = os.replace

        def replace(source, destination, *args, **kwargs):
            name = _TEMPORARY.sub(".tmp-*", os.path.relpath(os.fspath(destination), self.root))
            self.boundary(f"before committing {name}")
            original_replace(source, destination, *args, **kwargs)
            self.boundary(f"after committing {name}")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "replace", replace)
            try:
                yield self
            except Killed:
                pass

    def step_ends(self) -> keras.callbacks.Callback:
        """A callback that makes the end of every training step a boundary."""
        switch = self

        class StepEnds(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                switch.boundary(f"after step {batch + 1} of epoch {self.epoch + 1}")

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

        return StepEnds()
