"""Atomic checkpoints and restartable input streams (in-process checks).

The kill-and-resume equality of whole training runs is tested with the other
subprocess runs in ``test_distributed.py``.
"""

from __future__ import annotations

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
