"""The workdir contract: a workdir is reused or resumed only for the work that made it."""

import json
import os

import pytest

from neuroreg_tf import workdir
from neuroreg_tf.errors import WorkdirError

RUN = {"config": {"alpha": 20.0, "epochs": 2}, "target": {"fingerprint": "abc"}}


def claim(path, identity=RUN, overwrite=False):
    return workdir.claim(str(path), identity, what="training run", finished_marker="summary.json",
                         overwrite=overwrite)


def test_new_then_resume_then_finished(tmp_path):
    path = tmp_path / "run"
    assert claim(path) == workdir.NEW
    recorded = json.loads((path / "identity.json").read_text())
    assert recorded["config"] == RUN["config"] and len(recorded["fingerprint"]) == 64
    assert claim(path) == workdir.RESUME
    (path / "summary.json").write_text("{}")
    assert claim(path) == workdir.FINISHED


def test_other_config_is_refused_with_the_differing_keys_and_the_ways_on(tmp_path):
    path = tmp_path / "run"
    claim(path)
    (path / "history.csv").write_text("epoch\n0\n")
    other = {"config": {"alpha": 0.0, "epochs": 2}, "target": {"fingerprint": "abc"}}
    with pytest.raises(WorkdirError) as error:
        claim(path, other)
    message = str(error.value)
    assert "config.alpha: 20.0 there, 0.0 here" in message
    assert "epochs" not in message  # only what differs
    assert "--workdir" in message and "--config.overwrite=True" in message
    assert (path / "history.csv").read_text() == "epoch\n0\n"  # nothing touched


def test_files_without_identity_are_refused(tmp_path):
    (tmp_path / "model.keras").write_text("someone else's")
    with pytest.raises(WorkdirError, match="no identity.json"):
        claim(tmp_path)


def test_overwrite_starts_empty_and_leaves_nothing_of_the_old_run(tmp_path):
    path = tmp_path / "run"
    claim(path)
    (path / "history.csv").write_text("old")
    (path / "summary.json").write_text("{}")
    other = {"config": {"alpha": 0.0}, "target": {"fingerprint": "abc"}}
    assert claim(path, other, overwrite=True) == workdir.NEW
    assert sorted(os.listdir(path)) == ["identity.json"]
    assert sorted(os.listdir(tmp_path)) == ["run"], "the moved-aside workdir is removed"
    # The same identity with overwrite also starts over.
    (path / "summary.json").write_text("{}")
    assert claim(path, other, overwrite=True) == workdir.NEW
    assert sorted(os.listdir(path)) == ["identity.json"]


def test_a_killed_overwrite_leaves_old_or_new_never_a_mix(tmp_path):
    path = tmp_path / "run"
    claim(path)
    (path / "summary.json").write_text("{}")
    # Killed right after the rename: the old run sits aside, no workdir yet.
    os.rename(path, tmp_path / "run.replaced-19700101-000000-1")
    assert claim(path, {"config": {"alpha": 0.0}}) == workdir.NEW
    assert sorted(os.listdir(tmp_path)) == ["run"], "leftovers of a moved-aside workdir are removed"
    assert sorted(os.listdir(path)) == ["identity.json"]


def test_identity_differences_list_nested_keys():
    lines = workdir.identity_differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 2]}, "d": 3})
    assert lines == ["a.b: 1 there, 2 here", "d: absent there, 3 here"]
