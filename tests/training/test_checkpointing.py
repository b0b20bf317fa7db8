"""Atomic checkpoints and restartable input streams (in-process checks).

The kill-and-resume equality of whole training runs is tested with the other
subprocess runs in ``test_distributed.py``.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest


def _small_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_partial_checkpoint_is_never_taken_as_latest(tmp_path):
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    model = _small_model()
    checkpointer = AtomicCheckpointer(str(tmp_path), keep=1)
    assert checkpointer.restore(model) is None
    checkpointer.save(model, 4, epoch=1)
    saved = [w.copy() for w in model.get_weights()]
    # A save killed half-way leaves only a temporary directory behind.
    partial = tmp_path / ".tmp-killed"
    partial.mkdir()
    (partial / "model.weights.h5").write_bytes(b"truncated")
    model.set_weights([w + 1.0 for w in saved])
    state = checkpointer.restore(model)
    assert state["global_step"] == 4 and state["epoch"] == 1
    for restored, expected in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(restored, expected)
    checkpointer.save(model, 8, epoch=2)
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "step-000008"]
    assert json.loads((tmp_path / "latest.json").read_text())["global_step"] == 8


def test_non_chief_checkpointer_writes_nothing(tmp_path):
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    assert AtomicCheckpointer(str(tmp_path / "backup"), write=False).save(_small_model(), 1) is None
    assert not (tmp_path / "backup").exists()


def test_epoch_stream_from_a_step_continues_the_full_stream():
    import tensorflow as tf

    from neuroreg_tf.training.distributed_data import epoch_seed, epoch_stream

    def make_epoch(epoch):
        return tf.data.Dataset.range(10).shuffle(10, seed=epoch_seed(3, epoch), reshuffle_each_iteration=False).batch(2)

    full = [b.numpy().tolist() for b in epoch_stream(make_epoch, 3, 4)]
    assert len(full) == 12
    assert full[:4] != full[4:8], "each epoch must have its own order"
    for start in (0, 4, 6, 11):
        assert [b.numpy().tolist() for b in epoch_stream(make_epoch, 3, 4, start)] == full[start:]
    stream = epoch_stream(make_epoch, 3, 4)
    assert [b.numpy().tolist() for b in stream] == [b.numpy().tolist() for b in stream]


def test_epoch_stream_rejects_a_step_beyond_training():
    from neuroreg_tf.training.distributed_data import epoch_stream

    with pytest.raises(ValueError, match="Received: start_step=13"):
        epoch_stream(lambda epoch: None, 3, 4, 13)


def _flip_bytes(path, count=64, offset=4096):
    data = bytearray(open(path, "rb").read())
    for index in range(offset, min(offset + count, len(data))):
        data[index] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    messages = []
    model = _small_model()
    checkpointer = AtomicCheckpointer(str(tmp_path), identity="run-1", progress=messages.append)
    checkpointer.save(model, 4, epoch=1)
    at_step_4 = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1.0 for w in at_step_4])
    checkpointer.save(model, 8, epoch=2)
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "step-000004", "step-000008"]
    _flip_bytes(tmp_path / "step-000008" / "model.weights.h5")
    model.set_weights([w * 0 for w in at_step_4])
    state = checkpointer.restore(model)
    assert state["global_step"] == 4
    for restored, expected in zip(model.get_weights(), at_step_4):
        np.testing.assert_array_equal(restored, expected)
    assert any("step-000008 is unusable" in m and "checksum" in m and "falling back to step-000004" in m
               for m in messages)


def test_a_truncated_latest_json_is_ignored(tmp_path):
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    model = _small_model()
    checkpointer = AtomicCheckpointer(str(tmp_path), progress=None)
    checkpointer.save(model, 3)
    (tmp_path / "latest.json").write_text('{"name": "step-0')
    assert checkpointer.restore(model)["global_step"] == 3


def test_no_usable_checkpoint_names_the_directory_and_the_way_on(tmp_path):
    from neuroreg_tf.errors import CheckpointError
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    model = _small_model()
    checkpointer = AtomicCheckpointer(str(tmp_path), keep=1, progress=None)
    checkpointer.save(model, 5)
    (tmp_path / "step-000005" / "state.json").write_text("{trunc")
    with pytest.raises(CheckpointError, match=f"No usable checkpoint in {tmp_path}.*overwrite=True"):
        checkpointer.restore(model)


def test_a_checkpoint_of_another_run_is_not_restored(tmp_path):
    from neuroreg_tf.errors import CheckpointError
    from neuroreg_tf.training.checkpointing import AtomicCheckpointer

    model = _small_model()
    AtomicCheckpointer(str(tmp_path), identity="run-A", progress=None).save(model, 2)
    with pytest.raises(CheckpointError, match="another config or target"):
        AtomicCheckpointer(str(tmp_path), identity="run-B", progress=None).restore(model)


class _Killed(Exception):
    """Stands in for a SIGKILL at one point of a run."""


def _history_epochs(path):
    lines = open(path, newline="").read().splitlines()
    assert lines[0].startswith("epoch,")
    return [int(line.split(",")[0]) for line in lines[1:]]


def _train_three_epochs(tmp_path, kill=None):
    """Trains the small model 3 epochs of 2 steps with history.csv and epoch checkpoints.

    ``kill``: (epoch, "before" | "after") raises _Killed just before / just after the checkpoint
    of that epoch's end is written, as a SIGKILL there would stop the run.
    """
    import tensorflow as tf

    from neuroreg_tf.training.checkpointing import AtomicCheckpointer
    from neuroreg_tf.training.driver import train_model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    make_epoch = lambda epoch: tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = _small_model()
    original_save = AtomicCheckpointer.save

    def save(self, model, global_step, **state):
        at_kill = kill is not None and state.get("epoch") == kill[0] + 1 and not state.get("step_in_epoch")
        if at_kill and kill[1] == "before":
            raise _Killed
        written = original_save(self, model, global_step, **state)
        if at_kill and kill[1] == "after":
            raise _Killed
        return written

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AtomicCheckpointer, "save", save)
        return train_model(
            model, tf.distribute.get_strategy(), make_epoch, epochs=3, steps_per_epoch=2,
            backup_dir=str(tmp_path / "backup"), history_csv=str(tmp_path / "history.csv"),
            verbose=0, progress=None,
        ), model


def _history_rows(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _assert_same_history(path, reference_path):
    got, expected = _history_rows(path), _history_rows(reference_path)
    assert [row["epoch"] for row in got] == [row["epoch"] for row in expected]
    for row, reference_row in zip(got, expected):
        assert row.keys() == reference_row.keys()
        for key in row:
            assert row[key] == pytest.approx(reference_row[key], rel=0, abs=1e-6), (row["epoch"], key)


@pytest.mark.parametrize("moment", ["before", "after"])
def test_history_lists_each_epoch_once_whenever_the_run_is_killed(tmp_path, moment):
    # Killed just before epoch 1's checkpoint: the model resumes at epoch 1 and trains it again.
    # Killed just after it, before history.csv is rewritten: the row comes from the checkpoint.
    with pytest.raises(_Killed):
        _train_three_epochs(tmp_path, kill=(1, moment))
    assert _history_epochs(tmp_path / "history.csv") == [0]
    resumed, model = _train_three_epochs(tmp_path)
    assert resumed.epoch == ([1, 2] if moment == "before" else [2])
    (tmp_path / "uninterrupted").mkdir()
    reference, reference_model = _train_three_epochs(tmp_path / "uninterrupted")
    _assert_same_history(tmp_path / "history.csv", tmp_path / "uninterrupted" / "history.csv")
    for restored, expected in zip(model.get_weights(), reference_model.get_weights()):
        np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-6)


def test_each_checkpoint_carries_the_history_of_the_epochs_it_finished(tmp_path):
    _train_three_epochs(tmp_path)
    rows = _history_rows(tmp_path / "history.csv")
    assert [row["epoch"] for row in rows] == [0, 1, 2] and {"loss", "epoch"} <= rows[0].keys()
    for name, epochs in (("step-000006", 3), ("step-000004", 2)):
        state = json.loads((tmp_path / "backup" / name / "state.json").read_text())
        assert state["history"] == rows[:epochs]


def test_history_follows_the_fallback_when_the_newest_checkpoint_is_damaged(tmp_path):
    # Killed just before epoch 2's checkpoint: history rows 0 and 1, checkpoints of epochs 0
    # and 1 kept. The newest is damaged, so the run falls back to epoch 0's and trains 1 and 2
    # again; the history must list them once, as an uninterrupted run does. A row that a
    # stranger appended is dropped too: the history is rebuilt from the checkpoint.
    with pytest.raises(_Killed):
        _train_three_epochs(tmp_path, kill=(2, "before"))
    with open(tmp_path / "history.csv", "a", newline="") as f:
        f.write("3,0.12")
    assert _history_epochs(tmp_path / "history.csv") == [0, 1, 3]
    newest = json.loads((tmp_path / "backup" / "latest.json").read_text())
    assert newest["global_step"] == 4
    _flip_bytes(tmp_path / "backup" / "step-000004" / "model.weights.h5")
    rows_before = open(tmp_path / "history.csv", newline="").read().splitlines()
    resumed, _ = _train_three_epochs(tmp_path)
    assert resumed.epoch == [1, 2]
    rows = open(tmp_path / "history.csv", newline="").read().splitlines()
    assert _history_epochs(tmp_path / "history.csv") == [0, 1, 2]
    assert rows[:2] == rows_before[:2]  # header and epoch 0 kept byte for byte
    (tmp_path / "uninterrupted").mkdir()
    _train_three_epochs(tmp_path / "uninterrupted")
    _assert_same_history(tmp_path / "history.csv", tmp_path / "uninterrupted" / "history.csv")


def _train_small(directory, callbacks=()):
    """The small model, 3 epochs of 2 steps with checkpoints and history.csv in ``directory``."""
    import tensorflow as tf

    from neuroreg_tf.training.driver import train_model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    make_epoch = lambda epoch: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(8, seed=epoch).batch(4)
    model = _small_model()
    train_model(
        model, tf.distribute.get_strategy(), make_epoch, epochs=3, steps_per_epoch=2,
        backup_dir=str(directory / "backup"), history_csv=str(directory / "history.csv"),
        callbacks=list(callbacks), verbose=0, progress=None,
    )
    return model


def test_training_killed_at_every_step_boundary_resumes_to_the_uninterrupted_history(tmp_path):
    # Every commit of a checkpoint (its state, its folder, latest.json) and of history.csv, just
    # before and just after it, and every step's end. The trainer's own commits (artifacts,
    # summary) are killed at in tests/training/test_kill_at_every_step.py.
    from kill_switch import KillSwitch

    reference_dir = tmp_path / "reference"
    reference = KillSwitch(str(reference_dir))
    with reference.armed():
        reference_model = _train_small(reference_dir, [reference.step_ends()])
    boundaries = reference.boundaries
    assert sum(b.startswith("after step") for b in boundaries) == 6
    assert "after committing backup/step-000004" in boundaries
    assert boundaries[-1] == "after committing history.csv"
    for kill_at, where in enumerate(boundaries):
        directory = tmp_path / f"killed-{kill_at:02d}"
        switch = KillSwitch(str(directory), kill_at)
        with switch.armed():
            _train_small(directory, [switch.step_ends()])
        assert switch.killed_at == where
        model = _train_small(directory)
        _assert_same_history(directory / "history.csv", reference_dir / "history.csv")
        for restored, expected in zip(model.get_weights(), reference_model.get_weights(), strict=True):
            np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-6, err_msg=f"killed {where}")
