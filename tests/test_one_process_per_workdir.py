"""Every script's work holds its workdir: a second process on the same workdir is refused at once."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S, needs_fashion_mnist
from neuroreg_tf import cli, workdir
from neuroreg_tf.errors import WorkdirError


@pytest.fixture
def held(tmp_path):
    """A workdir whose lock a live process of this host holds; yields (path, pid)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    path = tmp_path / "held"
    path.mkdir()
    record = {"pid": process.pid, "host": socket.gethostname(), "what": "study", "since": "then"}
    (path / workdir.LOCK).write_text(json.dumps(record))
    yield str(path), process.pid
    process.kill()
    process.wait()
    assert sorted(os.listdir(path)) == [workdir.LOCK], "the refused work wrote nothing"


def _assert_refused(call, pid):
    started = time.time()
    with pytest.raises(WorkdirError) as refused:
        call()
    assert f"in use by study (pid {pid}" in str(refused.value)
    return time.time() - started


def test_training_is_refused(held):
    from neuroreg_tf.training import trainer

    path, pid = held
    config = cli.load_config("demo.py", "runlocal")
    config.target.path = "/nonexistent/target"  # never read: the lock comes first
    _assert_refused(lambda: trainer.train(config, path, progress=None), pid)


def test_evaluation_is_refused(held):
    from neuroreg_tf.robustness import evaluation

    path, pid = held
    x, y = np.zeros((2, 28, 28, 1), np.float32), np.zeros(2, np.int64)
    _assert_refused(lambda: evaluation.evaluate_models([("m", "/nonexistent/run")], x, y, workdir=path,
                                                      progress=None), pid)


def test_target_building_is_refused(held):
    from neuroreg_tf.neural import build_targets

    path, pid = held
    _assert_refused(lambda: build_targets.ensure_built(cli.load_config("build_target.py", "runlocal"), path,
                                                        progress=None), pid)


def test_a_study_is_refused_but_its_shards_hold_locks_of_their_own(held):
    from neuroreg_tf.study import runner

    path, pid = held
    config = cli.load_config("study.py", "runlocal")
    _assert_refused(lambda: runner.run_study(config, path, progress=None), pid)
    with pytest.raises(WorkdirError, match="study shard 1/2"):  # the same shard twice
        with _shard_lock_of_the_live_process(path, pid, "1-of-2", "study shard 1/2"):
            config.shard = "1/2"
            runner.run_study(config, path, progress=None)


def _shard_lock_of_the_live_process(path, pid, shard, what):
    import contextlib

    record = {"pid": pid, "host": socket.gethostname(), "what": what, "since": "then"}
    lock = os.path.join(path, f"{workdir.LOCK}-shard-{shard}")
    with open(lock, "w") as f:
        json.dump(record, f)

    @contextlib.contextmanager
    def holding():
        try:
            yield
        finally:
            os.remove(lock)

    return holding()


@needs_fashion_mnist
def test_a_second_train_py_on_a_running_workdir_is_refused_at_once(tmp_path, runlocal_target):
    run = str(tmp_path / "run")
    command = [sys.executable, "train.py", "--config=configs/demo.py:runlocal", f"--workdir={run}",
               f"--config.target.path={runlocal_target}", "--config.batch_size=16",
               "--config.data.train_limit=64", "--config.data.eval_limit=32", "--config.verbose=0"]
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + SUBPROCESS_TIMEOUT_S
    while not os.path.exists(os.path.join(run, workdir.LOCK)) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    first_out, first_err = first.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert first.returncode == 0, first_err[-2000:]
    assert "Finished 1 epoch(s)" in first_out
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is in use by training run (train.py) (pid {first.pid}" in second.stderr
    assert not os.path.exists(os.path.join(run, workdir.LOCK)), "the finished run released its lock"
