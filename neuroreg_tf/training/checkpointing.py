"""Atomic training checkpoints and an exact backup-and-restore callback.

A checkpoint directory holds::

    backup/
      latest.json          {"name": "step-000120", "global_step": 120, ...}
      step-000120/         model.weights.h5 (model + optimizer state), state.json
                           (global step, SHA-256 of the weights file, the run's fingerprint,
                           the logs of every epoch finished so far)
      step-000080/         the previous checkpoint, kept as a fallback

A checkpoint is written to ``backup/.tmp-<random>/`` and renamed into place
only once complete; ``latest.json`` is then replaced atomically (write to a
temporary file, ``os.replace``). A process killed at any moment leaves either
the previous checkpoint or the new one as "latest", never a partial one;
leftover temporary directories are ignored and removed by the next save.

Exact resume needs the data position too: the state records the global step,
and ``neuroreg_tf.training.distributed_data.epoch_stream`` rebuilds the batches
from that step on. Keras' own ``BackupAndRestore`` restarts an epoch from its
first batch with mid-epoch weights and writes its weights and metadata as two
non-atomic files, so it is not used.

The history of a run lives in its checkpoints (``EpochHistory``): each one carries the logs of
the epochs it has finished, and ``history.csv`` is a copy rewritten from the checkpoint after
every save and on every restore. So the history always describes the weights that were
restored, whichever checkpoint that was and wherever the previous process was killed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np

from neuroreg_tf.errors import CheckpointError
from neuroreg_tf.fileio import sha256_file, write_json_atomic, write_text_atomic
from neuroreg_tf.progress import Reporter, print_line, reporter

LATEST = "latest.json"
WEIGHTS = "model.weights.h5"
STATE = "state.json"
HISTORY = "history"  # the key, in a checkpoint's state, of its finished epochs' logs
_CHECKPOINT_NAME = re.compile(r"^step-\d+$")


def optimizer_step(model: keras.Model) -> int:
    """The number of optimizer steps taken, also for distributed (mirrored) variables."""
    return int(np.asarray(model.optimizer.iterations.numpy()))


def _ensure_optimizer_built(model: keras.Model) -> None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)


class EpochHistory:
    """The logs of every finished epoch of a run, carried by each of its checkpoints.

    ``restore`` takes the rows of the checkpoint a run resumes from (none for a fresh run),
    ``add`` appends an epoch's logs before that epoch's checkpoint is written with ``rows``, and
    ``write_csv`` then rewrites the copy at ``csv_path`` atomically. A kill between the
    checkpoint and the copy leaves the copy one epoch behind until the run resumes; the copy
    never lists an epoch that the restored weights have not finished, nor one twice.

    Args:
        csv_path: where the copy goes (columns ``epoch`` and the sorted log keys), or None.
        write: False on workers other than the chief (they keep the rows but write nothing).
    """

    def __init__(self, csv_path: str | None = None, write: bool = True):
        self.csv_path = csv_path
        self.write = bool(write)
        self.rows: list[dict] = []

    def restore(self, state: dict | None) -> None:
        """Takes the rows of a restored checkpoint's state (None: a fresh run) and rewrites the copy."""
        self.rows = [dict(row) for row in (state or {}).get(HISTORY, [])]
        self.write_csv()

    def add(self, epoch: int, logs: dict | None) -> None:
        """Appends epoch ``epoch``'s scalar logs."""
        row = {"epoch": int(epoch)}
        row.update({key: float(value) for key, value in sorted((logs or {}).items()) if np.ndim(value) == 0})
        self.rows.append(row)

    def write_csv(self) -> None:
        """Rewrites ``csv_path`` from the rows (removes it when there are none)."""
        if not self.csv_path or not self.write:
            return
        if not self.rows:
            if os.path.exists(self.csv_path):
                os.remove(self.csv_path)
            return
        keys = sorted({key for row in self.rows for key in row} - {"epoch"})
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for row in self.rows:
            writer.writerow([row["epoch"], *(repr(row[key]) if key in row else "" for key in keys)])
        write_text_atomic(self.csv_path, text.getvalue())


class AtomicCheckpointer:
    """Saves and restores model + optimizer state with a training position, atomically, verified.

    Each checkpoint records the SHA-256 of its weights file and the fingerprint of the run it
    belongs to. ``restore`` takes the newest checkpoint that verifies; when a newer one is
    damaged (a flipped byte, a truncated file) it says so and falls back to the previous one,
    which is kept for that (``keep``). ``latest.json`` only points at the newest checkpoint; a
    damaged or missing one is ignored and the checkpoints themselves are scanned.

    Args:
        directory: where checkpoints live (created on first save).
        keep: how many complete checkpoints to keep (at least 1; 2 keeps a fallback).
        write: False on workers other than the chief: ``save`` then writes
            nothing (every worker can still ``restore`` from a shared directory).
        identity: the fingerprint of the run; a checkpoint of another run is never restored.
        progress: reporter of warnings and the resume announcement (None: silent).
    """

    def __init__(self, directory: str, keep: int = 2, write: bool = True,
                 identity: str | None = None, progress: Reporter = print_line):
        if keep < 1:
            raise ValueError(f"At least one checkpoint must be kept. Received: keep={keep}")
        self.directory = directory
        self.keep = int(keep)
        self.write = bool(write)
        self.identity = identity
        self.report = reporter(progress)

    def _names(self) -> list[str]:
        """Checkpoint directory names, newest first."""
        if not os.path.isdir(self.directory):
            return []
        names = [n for n in os.listdir(self.directory) if _CHECKPOINT_NAME.match(n)]
        return sorted(names, key=lambda n: int(n.split("-")[1]), reverse=True)

    def _problem(self, name: str) -> tuple[dict | None, str | None]:
        """(state, None) for a checkpoint that verifies, else (None, what is wrong with it)."""
        folder = os.path.join(self.directory, name)
        try:
            with open(os.path.join(folder, STATE)) as f:
                state = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            return None, f"its {STATE} cannot be read ({type(error).__name__})"
        weights = os.path.join(folder, WEIGHTS)
        if not os.path.isfile(weights):
            return None, f"{WEIGHTS} is missing"
        expected = state.get("sha256")
        if expected is not None and sha256_file(weights) != expected:
            return None, f"{WEIGHTS} does not match its checksum (damaged)"
        if self.identity is not None and state.get("identity") not in (None, self.identity):
            return None, "it belongs to a run of another config or target"
        return state, None

    def latest(self) -> dict | None:
        """The state of the newest checkpoint that verifies, or None if there is none at all.

        Raises:
            CheckpointError: checkpoints exist but none verifies.
        """
        problems = []
        for name in self._names():
            state, problem = self._problem(name)
            if state is not None:
                for bad_name, bad_problem in problems:
                    self.report(
                        f"WARNING: checkpoint {os.path.join(self.directory, bad_name)} is unusable "
                        f"({bad_problem}); falling back to {name}."
                    )
                return state
            problems.append((name, problem))
        if problems:
            listed = "; ".join(f"{n}: {p}" for n, p in problems)
            raise CheckpointError(
                f"No usable checkpoint in {self.directory} ({listed}). Start over: run the same "
                "command with --config.overwrite=True, or delete that directory."
            )
        return None

    def save(self, model: keras.Model, global_step: int, **state) -> str | None:
        """Writes a checkpoint of ``model`` at ``global_step`` and makes it the latest.

        Returns:
            The checkpoint's path, or None when this worker does not write.
        """
        if not self.write:
            return None
        os.makedirs(self.directory, exist_ok=True)
        name = f"step-{int(global_step):06d}"
        final = os.path.join(self.directory, name)
        temporary = tempfile.mkdtemp(prefix=".tmp-", dir=self.directory)
        try:
            model.save_weights(os.path.join(temporary, WEIGHTS))
            state = {
                "name": name,
                "global_step": int(global_step),
                "sha256": sha256_file(os.path.join(temporary, WEIGHTS)),
                "identity": self.identity,
                **state,
            }
            write_json_atomic(os.path.join(temporary, STATE), state)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        write_json_atomic(os.path.join(self.directory, LATEST), state)
        self._clean(keep_name=name)
        return final

    def restore(self, model: keras.Model) -> dict | None:
        """Loads the newest checkpoint that verifies into ``model`` (and its optimizer).

        Returns:
            The saved state (``global_step`` and what was passed to ``save``), or
            None when there is no checkpoint yet.

        Raises:
            CheckpointError: checkpoints exist but none verifies.
        """
        state = self.latest()
        if state is None:
            return None
        _ensure_optimizer_built(model)
        model.load_weights(os.path.join(self.directory, state["name"], WEIGHTS))
        return state

    def _clean(self, keep_name: str) -> None:
        names = self._names()
        stale = [n for n in names if n != keep_name][max(0, self.keep - 1):]
        for name in stale:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        for name in os.listdir(self.directory):
            if name.startswith(".tmp-") and os.path.isdir(os.path.join(self.directory, name)):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)


class ExactBackupAndRestore(keras.callbacks.Callback):
    """Saves an atomic checkpoint at the end of every epoch (and every N steps).

    Restoring is explicit, before training, because the input stream must start
    where the checkpoint left off::

        backup = ExactBackupAndRestore(workdir + "/backup")
        start_step = backup.restore(model)           # 0 on a fresh run
        data = epoch_stream(make_epoch, epochs, steps_per_epoch, start_step)
        model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  initial_epoch=start_step // steps_per_epoch, callbacks=[backup])

    With ``model.fit`` a resumed run restarts at the last epoch boundary that
    was saved (``fit`` cannot begin mid-epoch); the custom loop in
    ``neuroreg_tf.training.multi_worker`` also resumes from mid-epoch
    checkpoints (``save_every_steps``). Either way the final weights equal an
    uninterrupted run's.

    Each checkpoint carries the run's history (``EpochHistory``), copied to ``history_csv``.
    An epoch that a callback stopped (``model.stop_training``, e.g. ``TerminateOnNaN``) is
    not checkpointed, as in the custom loop.

    Args:
        directory: the checkpoint directory.
        steps_per_epoch: batches per epoch (to record the epoch of a step).
        save_every_steps: also save every this many steps (0: only at epoch ends).
        identity: the run's fingerprint (see ``AtomicCheckpointer``).
        progress: reporter of warnings (None: silent).
        history_csv: where the history's copy goes (None: nowhere).
    """

    def __init__(self, directory: str, steps_per_epoch: int, save_every_steps: int = 0,
                 identity: str | None = None, progress: Reporter = print_line,
                 history_csv: str | None = None):
        super().__init__()
        if save_every_steps < 0:
            raise ValueError(
                f"save_every_steps must be 0 (epoch ends only) or positive. Received: "
                f"save_every_steps={save_every_steps}"
            )
        self.checkpointer = AtomicCheckpointer(directory, identity=identity, progress=progress)
        self.steps_per_epoch = int(steps_per_epoch)
        self.save_every_steps = int(save_every_steps)
        self.history = EpochHistory(history_csv)

    def restore(self, model: keras.Model) -> int:
        """Loads the latest checkpoint into ``model`` and its history; returns the step to resume at."""
        state = self.checkpointer.restore(model)
        self.history.restore(state)
        return 0 if state is None else int(state["global_step"])

    def _save(self):
        step = optimizer_step(self.model)
        self.checkpointer.save(self.model, step, epoch=step // self.steps_per_epoch,
                               step_in_epoch=step % self.steps_per_epoch, **{HISTORY: self.history.rows})

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_step(self.model)
        if self.save_every_steps and step % self.save_every_steps == 0 and step % self.steps_per_epoch:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            return
        self.history.add(epoch, logs)
        self._save()
        self.history.write_csv()


def announce_resume(start_step: int, epochs: int, steps_per_epoch: int, backup_dir: str,
                    progress: Reporter = print_line) -> None:
    """Says where a restored run continues: "Resuming from epoch E/N, step S/M ..."."""
    if start_step:
        epoch, step = divmod(start_step, steps_per_epoch)
        reporter(progress)(
            f"Resuming from epoch {epoch + 1}/{epochs}, step {step}/{steps_per_epoch} "
            f"(global step {start_step}, checkpoint in {backup_dir})"
        )
