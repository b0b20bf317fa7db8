"""A training run (``trainer.train``) killed at its step boundaries, then resumed by the same call.

``test_checkpointing.py`` kills the training loop at every boundary it has (every step's end,
and just before and just after each commit of a checkpoint and of ``history.csv``). This test
kills the whole trainer at the last epoch's step, checkpoint and history commit, where a kill
leaves a finished model whose records must still be written, and just before its commits after
training (model.keras, the SavedModel, summary.json) and just after the last one. Each time
the same run is started again in the same workdir and must end with the records of an
uninterrupted run: the same history.csv, history.json, summary and weights.
"""

import csv
import json
import os

import keras
import numpy as np
import pytest

from conftest import needs_fashion_mnist
from kill_switch import KillSwitch
from neuroreg_tf.config import base_train_config, runlocal
from neuroreg_tf.training import trainer

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def _config(target_path):
    config = runlocal(base_train_config())
    config.data.dataset = "fashion_mnist"
    config.target.path = target_path
    config.epochs = 2
    config.batch_size = 16
    config.data.train_limit = 32  # two steps per epoch
    config.data.eval_limit = 16
    config.verbose = 0
    return config


def _train(config, workdir, kill_at=None):
    switch = KillSwitch(workdir, kill_at)
    keras.backend.clear_session()
    with switch.armed():
        trainer.train(config, workdir, callbacks=[switch.step_ends()], progress=None)
    return switch


def _records(workdir):
    """The run's history (CSV and JSON), summary and weights, as compared between runs."""
    with open(os.path.join(workdir, "history.csv"), newline="") as f:
        history_csv = list(csv.reader(f))
    with open(os.path.join(workdir, "history.json")) as f:
        history_json = json.load(f)
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    for key in ("workdir", "train_seconds_this_process"):
        summary.pop(key)
    weights = keras.saving.load_model(os.path.join(workdir, "model.keras")).get_weights()
    return history_csv, history_json, summary, weights


def test_a_run_killed_at_its_boundaries_resumes_to_the_uninterrupted_records(tmp_path, runlocal_target):
    config = _config(runlocal_target)
    reference_dir = str(tmp_path / "reference")
    boundaries = _train(config, reference_dir).boundaries
    history_csv, history_json, summary, weights = _records(reference_dir)
    assert [row[0] for row in history_csv] == ["epoch", "0", "1"] and summary["epochs"] == 2

    # Just after one commit and just before the next, the workdir holds the same files, so
    # "before" a commit (and after the last) covers every state a kill can leave there. The
    # loop's own boundaries (every step, checkpoint and history commit) are each killed at in
    # test_checkpointing.py; here the last epoch's step, checkpoint and history commit, where
    # the records of a finished model must still be written, and every commit after training.
    last_epoch = boundaries.index("after step 1 of epoch 2")
    wanted = [
        "after step 1 of epoch 2", "before committing backup/step-000004", "before committing history.csv",
        "before committing model.keras", "before committing export", "before committing summary.json",
        "after committing summary.json",
    ]
    chosen = [boundaries.index(where, last_epoch) for where in wanted]
    assert boundaries[chosen[1] - 1] == "after committing backup/.tmp-*/state.json"
    for name in ("config.json", "classifier.keras", "history.json"):
        assert f"before committing {name}" in boundaries  # commits of the same kind as those chosen
    for kill_at in chosen:
        workdir = str(tmp_path / f"killed-{kill_at:02d}")
        where = _train(config, workdir, kill_at=kill_at).killed_at
        assert where == boundaries[kill_at]
        assert _train(config, workdir).killed_at is None
        resumed_csv, resumed_json, resumed_summary, resumed_weights = _records(workdir)
        assert resumed_csv == history_csv, where
        assert resumed_json == history_json, where
        assert resumed_summary == summary, where
        for got, expected in zip(resumed_weights, weights, strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=f"killed {where}")
