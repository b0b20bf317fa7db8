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


# ---------------------------------------------------------------------------------------------
# One process per workdir.
# ---------------------------------------------------------------------------------------------

def _write_lock(path, pid, host=None):
    import socket

    path.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "what": "training run", "since": "then"}
    (path / workdir.LOCK).write_text(json.dumps(record))


@pytest.fixture
def live_process():
    """Another process of this host that runs for the test's duration."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def test_the_lock_is_held_while_the_block_runs_and_removed_after(tmp_path):
    path = tmp_path / "run"
    with workdir.locked(str(path), "training run"):
        holder = json.loads((path / workdir.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["what"] == "training run"
        with workdir.locked(str(path), "training run"):  # the same process again: re-entrant
            pass
        assert (path / workdir.LOCK).exists(), "the inner block must not release the outer's lock"
    assert not (path / workdir.LOCK).exists()
    with pytest.raises(RuntimeError):
        with workdir.locked(str(path), "training run"):
            raise RuntimeError("a failure inside")
    assert not (path / workdir.LOCK).exists(), "an exception releases the lock too"


def test_a_workdir_held_by_a_live_process_is_refused_in_one_line(tmp_path, live_process):
    path = tmp_path / "run"
    _write_lock(path, live_process)
    with pytest.raises(WorkdirError) as refused:
        with workdir.locked(str(path), "evaluation"):
            pytest.fail("entered a workdir another process holds")
    message = str(refused.value)
    assert "\n" not in message and f"pid {live_process}" in message and "in use by training run" in message
    assert json.loads((path / workdir.LOCK).read_text())["pid"] == live_process, "the holder's lock is kept"


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    path = tmp_path / "run"
    _write_lock(path, 1, host="another-machine")
    with pytest.raises(WorkdirError, match="another-machine"):
        with workdir.locked(str(path), "training run"):
            pass


def test_the_lock_of_a_process_that_no_longer_runs_is_taken_over_with_a_message(tmp_path):
    import subprocess
    import sys
    import time

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not yet reaped
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(f"/proc/{zombie.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    for pid in (ended.pid, zombie.pid):
        path = tmp_path / f"run-{pid}"
        _write_lock(path, pid)
        messages = []
        with workdir.locked(str(path), "training run", progress=messages.append):
            assert json.loads((path / workdir.LOCK).read_text())["pid"] == os.getpid()
        assert len(messages) == 1 and f"pid {pid}" in messages[0] and "no longer runs" in messages[0]
    zombie.wait()


def test_claim_ignores_the_lock_and_overwrite_keeps_it(tmp_path):
    path = tmp_path / "run"
    with workdir.locked(str(path), "training run"):
        assert claim(path) == workdir.NEW, "a workdir holding only its lock is new"
        (path / "history.csv").write_text("old")
        assert claim(path, {**RUN, "config": {"alpha": 0.0}}, overwrite=True) == workdir.NEW
        assert sorted(os.listdir(path)) == [workdir.LOCK, "identity.json"]
        assert json.loads((path / workdir.LOCK).read_text())["pid"] == os.getpid()
    assert sorted(os.listdir(path)) == ["identity.json"]


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: "", "--workdir is empty"),
    (lambda tmp: "   ", "--workdir is empty"),
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file"), "is a file, not a directory"),
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file" / "run"), "which is a file"),
])
def test_a_workdir_path_that_cannot_be_a_directory_is_refused(tmp_path, make, fragment):
    with pytest.raises(WorkdirError, match=fragment):
        with workdir.locked(make(tmp_path), "training run"):
            pass


@pytest.mark.parametrize("edit, fragment", [
    (lambda identity: identity.pop("fingerprint"), "lacks its fingerprint"),
    (lambda identity: identity["config"].update(alpha=0.0), "was changed after it was written"),
])
def test_an_edited_identity_is_refused_unless_overwritten(tmp_path, edit, fragment):
    path = tmp_path / "run"
    claim(path)
    identity = json.loads((path / "identity.json").read_text())
    edit(identity)
    (path / "identity.json").write_text(json.dumps(identity))
    with pytest.raises(WorkdirError, match=fragment):
        claim(path)
    with pytest.raises(WorkdirError, match=fragment):
        workdir.read_identity(str(path))
    assert claim(path, overwrite=True) == workdir.NEW
    assert workdir.read_identity(str(path))["config"] == RUN["config"]


def test_an_overwrite_never_replaces_another_kind_of_work(tmp_path):
    # The case reported: evaluate.py --config.overwrite=True on a training run's workdir.
    path = tmp_path / "run"
    claim(path, {**RUN, "kind": "training run"})
    (path / "model.keras").write_text("the trained model")
    evaluation = {"kind": "evaluation", "models": []}
    for overwrite in (False, True):
        with pytest.raises(WorkdirError, match="holds a training run, not an evaluation: choose another --workdir"):
            workdir.claim(str(path), evaluation, what="evaluation", finished_marker="robustness.json",
                          overwrite=overwrite)
    assert (path / "model.keras").read_text() == "the trained model"


def test_a_refusal_names_the_work_the_workdir_holds(tmp_path):
    path = tmp_path / "run"
    workdir.claim(str(path), {"kind": "evaluation", "models": [1]}, what="evaluation",
                  finished_marker="robustness.json", overwrite=False)
    with pytest.raises(WorkdirError, match="it holds an evaluation of another config"):
        workdir.claim(str(path), {"kind": "evaluation", "models": [2]}, what="evaluation",
                      finished_marker="robustness.json", overwrite=False)


def test_the_advice_for_a_lock_of_another_host_works_when_followed(tmp_path):
    path = tmp_path / "run"
    _write_lock(path, 1, host="another-machine")
    with pytest.raises(WorkdirError) as refused:
        with workdir.locked(str(path), "training run"):
            pass
    lock = str(refused.value).split("delete ")[1].rstrip(").")
    os.remove(lock)  # the advice, followed (that process has ended)
    with workdir.locked(str(path), "training run"):
        assert json.loads((path / workdir.LOCK).read_text())["pid"] == os.getpid()


def _leaves(payload, path=()):
    """Every (path, value) leaf of a nested dict / list payload."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(payload, list) and payload:
        for index, value in enumerate(payload):
            yield from _leaves(value, (*path, index))
    else:
        yield path, payload


def _changed(payload, path, value):
    copy = json.loads(json.dumps(payload))
    section = copy
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value
    return copy


def test_a_runs_fingerprint_changes_when_any_setting_it_covers_changes():
    from neuroreg_tf import cli
    from neuroreg_tf.study import plan
    from neuroreg_tf.training import trainer

    identities = [trainer.run_identity(cli.load_config("demo.py"), {"fingerprint": "f" * 64, "kind": "neural_model"}),
                  plan.study_identity(cli.load_config("study.py", "audit"))]
    for identity in identities:
        identity = json.loads(json.dumps(identity))
        original = workdir.fingerprint_of(identity)
        leaves = list(_leaves(identity))
        assert len(leaves) > 40
        for path, value in leaves:
            other = "another" if isinstance(value, str) else (not value if isinstance(value, bool) else
                                                               (1 if value is None else value + 1 if isinstance(value, (int, float)) else None))
            assert workdir.fingerprint_of(_changed(identity, path, other)) != original, path
        # Key order is not content; the recorded fingerprint itself is left out.
        assert workdir.fingerprint_of(dict(reversed(list(identity.items())))) == original
        assert workdir.fingerprint_of({**identity, "fingerprint": "x"}) == original


def test_a_tree_checksum_changes_with_any_file_name_content_or_place(tmp_path):
    from neuroreg_tf.fileio import sha256_tree

    def tree(root, files):
        for name, content in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, name)) or root, exist_ok=True)
            with open(os.path.join(root, name), "wb") as handle:
                handle.write(content)
        return sha256_tree(str(root))

    base = {"a.npy": b"\x00\x01", "sub/b.json": b"{}"}
    original = tree(tmp_path / "base", base)
    assert tree(tmp_path / "copy", dict(reversed(list(base.items())))) == original  # same content elsewhere
    variants = {
        "content": {**base, "a.npy": b"\x00\x02"},
        "name": {"c.npy": base["a.npy"], "sub/b.json": base["sub/b.json"]},
        "place": {"sub/a.npy": base["a.npy"], "sub/b.json": base["sub/b.json"]},
        "added empty file": {**base, "sub/empty": b""},
        "swapped contents": {"a.npy": base["sub/b.json"], "sub/b.json": base["a.npy"]},
    }
    for what, files in variants.items():
        assert tree(tmp_path / what.replace(" ", "_"), files) != original, what


def test_an_unreadable_lock_is_waited_for_while_fresh_and_taken_over_when_old(tmp_path):
    import time

    path = tmp_path / "run"
    path.mkdir()
    lock = path / workdir.LOCK
    for age, taken in ((4.3, False), (5.7, True), (60.0, True)):  # the boundary is 5 s
        lock.write_text("")  # a lock whose holder has not written its record (yet, or ever)
        os.utime(lock, (time.time() - age, time.time() - age))
        messages = []
        if taken:
            with workdir.locked(str(path), "training run", progress=messages.append):
                assert json.loads(lock.read_text())["pid"] == os.getpid()
            assert len(messages) == 1 and "unreadable and" in messages[0]
            assert abs(float(messages[0].split("unreadable and ")[1].split(" s old")[0]) - age) <= 2
        else:
            with pytest.raises(WorkdirError, match="is being taken by another process"):
                with workdir.locked(str(path), "training run"):
                    pass


def test_a_lock_without_a_usable_pid_is_never_taken_over(tmp_path):
    import socket

    for pid in (None, "123", -1, 0):
        path = tmp_path / f"run-{pid}"
        path.mkdir()
        record = {"host": socket.gethostname(), "what": "training run", "since": "then"}
        if pid is not None:
            record["pid"] = pid
        (path / workdir.LOCK).write_text(json.dumps(record))
        with pytest.raises(WorkdirError, match="in use by training run"):
            with workdir.locked(str(path), "evaluation"):
                pass


def test_the_lock_file_is_readable_by_all_and_writable_by_its_owner(tmp_path):
    path = tmp_path / "run"
    umask = os.umask(0)
    os.umask(umask)
    with workdir.locked(str(path), "training run"):
        assert os.stat(path / workdir.LOCK).st_mode & 0o777 == 0o644 & ~umask


def test_whether_a_process_runs_reads_its_state_and_assumes_yes_when_it_cannot(monkeypatch):
    import builtins

    real_open = builtins.open

    def fake_stat(text):
        def opener(file, *args, **kwargs):
            if str(file).startswith("/proc/4242/"):
                if text is None:
                    raise OSError("no /proc here")
                import io
                return io.StringIO(text)
            return real_open(file, *args, **kwargs)
        return opener

    monkeypatch.setattr(os, "kill", lambda pid, signal: None)
    # A command name holding ")" must not shift the fields: the state is after the last ")".
    monkeypatch.setattr(builtins, "open", fake_stat("4242 (we) ird) Z 1 4242 4242"))
    assert workdir._process_runs(4242) is False
    monkeypatch.setattr(builtins, "open", fake_stat("4242 (we) ird) S 1 4242 4242"))
    assert workdir._process_runs(4242) is True
    monkeypatch.setattr(builtins, "open", fake_stat(None))  # no /proc: it answered the signal
    assert workdir._process_runs(4242) is True

    def not_permitted(pid, signal):
        raise PermissionError("another user's process")

    monkeypatch.setattr(os, "kill", not_permitted)
    assert workdir._process_runs(4242) is True


def test_differences_are_listed_up_to_the_limit_then_counted():
    recorded = {f"k{i}": i for i in range(9)}
    nine = workdir.identity_differences(recorded, {key: -1 for key in recorded})
    assert nine[:8] == [f"k{i}: {i} there, -1 here" for i in range(8)] and nine[8:] == ["... and 1 more"]
    eight = workdir.identity_differences(recorded, {**{f"k{i}": -1 for i in range(8)}, "k8": 8})
    assert eight == [f"k{i}: {i} there, -1 here" for i in range(8)]  # exactly the limit: no count line
    assert workdir.identity_differences({"a": {"b": 1}}, {"a": {"c": 1}}) == [
        "a.b: 1 there, absent here", "a.c: absent there, 1 here"]


def test_an_identity_an_older_version_recorded_is_upgraded_or_refused(tmp_path):
    path = tmp_path / "run"
    old = {"config": {"old_name": 20.0, "epochs": 2}, "target": {"fingerprint": "abc"}}
    claim(path, old)

    def rename(recorded):
        config = dict(recorded["config"])
        config["alpha"] = config.pop("old_name")
        return {**recorded, "config": config}

    def call(identity, upgrade):
        return workdir.claim(str(path), identity, what="training run", finished_marker="summary.json",
                             overwrite=False, upgrade=upgrade)

    with pytest.raises(WorkdirError, match="config.alpha"):
        call(RUN, None)  # without the upgrade: another config
    with pytest.raises(WorkdirError, match="config.epochs"):
        call({**RUN, "config": {"alpha": 20.0, "epochs": 3}}, rename)  # upgraded, still another config
    assert json.loads((path / "identity.json").read_text())["config"] == old["config"], "a refusal changes nothing"
    assert call(RUN, rename) == workdir.RESUME
    assert json.loads((path / "identity.json").read_text())["config"] == RUN["config"], "rewritten in today's form"
    assert call(RUN, lambda recorded: pytest.fail("the same identity needs no upgrade")) == workdir.RESUME


def test_asking_whether_a_process_runs_sends_it_no_signal():
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert workdir._process_runs(sleeper.pid) is True
        with pytest.raises(subprocess.TimeoutExpired):  # signal 0 delivers nothing: it keeps running
            sleeper.wait(timeout=2)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_leftover_that_cannot_be_removed_does_not_stop_a_claim(tmp_path):
    path = tmp_path / "run"
    leftover = tmp_path / f"run{workdir.RETIRED_SUFFIX}20260101-000000-1"
    leftover.write_text("a file where a moved-aside workdir would be: rmtree cannot remove it")
    assert claim(path) == workdir.NEW
    assert leftover.exists()
