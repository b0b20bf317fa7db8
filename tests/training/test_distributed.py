"""Distributed and resumed training is exact.

* 2 replicas (MirroredStrategy over 2 logical CPU devices) give the losses and
  updated weights of 1 device with the same global batch;
* 2 workers (MultiWorkerMirroredStrategy on 127.0.0.1, the custom loop) end
  with identical weights, equal to a single process's;
* a run SIGKILLed mid-epoch resumes (``fit``: from the last epoch; the custom
  loop: from a mid-epoch checkpoint) to the weights of an uninterrupted run.

Each training run is a subprocess of ``tests/distributed_helpers.py``
(logical CPU devices must be configured before the first TensorFlow op); all
runs start together from one fixture and share the cores. The in-process
checks of checkpoints and input streams are in ``test_resume.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

SUPPORT = os.path.join(os.path.dirname(__file__), "distributed_helpers.py")
from conftest import REPO_ROOT as REPO
from conftest import FASHION_MNIST, SUBPROCESS_TIMEOUT_S
TRAIN_FLAGS = {
    "strategy": "multi_worker",
    "batch_size": 16,
    "data.train_limit": 64,
    "data.eval_limit": 32,
    "checkpoint_every_steps": 2,
    "verbose": 0,
}
EPOCHS = 2
STEPS_PER_EPOCH = 4
MIRRORED_STEPS = 3
SIGKILLED = -signal.SIGKILL
GRACE_S = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(tf_config=None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def run_support(*arguments, tf_config=None) -> subprocess.CompletedProcess:
    """Runs one role of the support script; returns the finished process."""
    return subprocess.run(
        [sys.executable, SUPPORT, *map(str, arguments)],
        env=_environment(tf_config),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def run_cluster(role_arguments, workers: int = 2, script: str = SUPPORT) -> list[subprocess.CompletedProcess]:
    """Runs ``workers`` processes of one TF_CONFIG cluster on 127.0.0.1 and waits for all.

    Like a gang scheduler, once one worker has died the others are SIGKILLed
    after a grace period (they would otherwise wait in their next collective).
    """
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(workers)]
    processes, logs = [], []
    for index in range(workers):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        log = tempfile.TemporaryFile(mode="w+")
        processes.append(
            subprocess.Popen(
                [sys.executable, script, *map(str, role_arguments(index))],
                env=_environment(tf_config),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        logs.append(log)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    first_death = None
    while any(p.poll() is None for p in processes):
        now = time.monotonic()
        if first_death is None and any(p.returncode not in (None, 0) for p in processes):
            first_death = now
        if now > deadline or (first_death is not None and now - first_death > GRACE_S):
            for process in processes:
                if process.poll() is None:
                    process.kill()
        time.sleep(0.2)
    results = []
    for process, log in zip(processes, logs):
        log.seek(0)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, log.read(), ""))
        log.close()
    return results


def _check(process: subprocess.CompletedProcess) -> None:
    assert process.returncode == 0, (process.stdout + process.stderr)[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")

    def killed_then_resumed(name, killed_role, kill_step, resumed_role):
        def arguments(role):
            return (2,) if role == "worker" else ()  # the custom loop saves every 2 steps

        workdir = root / name
        killed = run_support(killed_role, root / f"{name}_killed.npz", EPOCHS, workdir, kill_step,
                             *arguments(killed_role))
        resumed = run_support(resumed_role, root / f"{name}_resumed.npz", EPOCHS, workdir, 0,
                              *arguments(resumed_role))
        return killed, resumed

    def cluster_killed_then_restarted():
        # Worker 1 is SIGKILLed after step 7; both restart on the shared workdir.
        workdir = root / "shared"
        killed = run_cluster(
            lambda index: ("worker", root / f"gang_killed{index}.npz", EPOCHS, workdir, 7 * index, 2)
        )
        restarted = run_cluster(
            lambda index: ("worker", root / f"gang_resumed{index}.npz", EPOCHS, workdir, 0, 2)
        )
        return killed, restarted

    def train_script_on_two_workers():
        if not os.path.isfile(FASHION_MNIST):
            return None
        flags = [f"--config.{key}={value}" for key, value in TRAIN_FLAGS.items()]
        return run_cluster(
            lambda index: ("--config=configs/demo.py:runlocal", f"--workdir={root / 'train_py'}", *flags),
            script=os.path.join(REPO, "train.py"),
        )

    jobs = {
        "train_py": train_script_on_two_workers,
        "reference": lambda: run_support("reference", root, MIRRORED_STEPS, EPOCHS),
        "two_workers": lambda: run_cluster(
            lambda index: ("worker", root / f"worker{index}.npz", EPOCHS, root / f"cluster{index}", 0, 2)
        ),
        "fit_resume": lambda: killed_then_resumed("fit", "fit", 6, "fit"),
        "loop_resume": lambda: killed_then_resumed("loop", "worker", 7, "worker"),
        "loop_then_fit": lambda: killed_then_resumed("loop_then_fit", "worker", 7, "fit"),
        "cluster_resume": cluster_killed_then_restarted,
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    return root, results


@pytest.mark.slow
def test_two_replicas_give_the_losses_and_weights_of_one_device(runs):
    root, results = runs
    _check(results["reference"])
    one = np.load(root / "one_device.npz")
    two = np.load(root / "two_devices.npz")
    for centering in ("batch", "ema"):
        np.testing.assert_array_equal(one[f"{centering}_initial"], two[f"{centering}_initial"])
        assert one[f"{centering}_logs"].shape == (MIRRORED_STEPS, 3)
        np.testing.assert_allclose(
            two[f"{centering}_logs"], one[f"{centering}_logs"], rtol=1e-5, atol=1e-6,
            err_msg=f"per-step loss, task_loss, similarity_loss differ ({centering} centring)",
        )
        moved = np.abs(one[f"{centering}_weights"] - one[f"{centering}_initial"]).max()
        assert moved > 1e-3, "training did not change the weights; the comparison would be empty"
        np.testing.assert_allclose(
            two[f"{centering}_weights"], one[f"{centering}_weights"], rtol=1e-5, atol=1e-5,
            err_msg=f"updated weights differ ({centering} centring)",
        )


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_equal_to_one_process(runs):
    root, results = runs
    for process in results["two_workers"]:
        _check(process)
    _check(results["reference"])
    worker0 = np.load(root / "worker0.npz")
    worker1 = np.load(root / "worker1.npz")
    single = np.load(root / "loop_full.npz")
    assert int(worker0["steps"]) == int(worker1["steps"]) == EPOCHS * STEPS_PER_EPOCH
    np.testing.assert_array_equal(worker0["weights"], worker1["weights"])
    np.testing.assert_allclose(worker0["weights"], single["weights"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(worker0["logs"], single["logs"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_only_the_chief_writes_checkpoints(runs):
    root, results = runs
    for process in results["two_workers"]:
        _check(process)
    assert bool(np.load(root / "worker0.npz")["chief"])
    assert not bool(np.load(root / "worker1.npz")["chief"])
    assert (root / "cluster0" / "backup" / "latest.json").is_file()
    assert not (root / "cluster1").exists()


@pytest.mark.slow
def test_fit_resumes_from_the_last_epoch_and_matches_an_uninterrupted_run(runs):
    root, results = runs
    killed, resumed = results["fit_resume"]
    assert killed.returncode == SIGKILLED, killed.stderr[-3000:]
    assert not (root / "fit_killed.npz").exists()
    _check(resumed)
    _check(results["reference"])
    full = np.load(root / "fit_full.npz")
    after = np.load(root / "fit_resumed.npz")
    assert int(after["start_step"]) == STEPS_PER_EPOCH  # killed at step 6, in epoch 2
    assert int(after["steps"]) == int(full["steps"]) == EPOCHS * STEPS_PER_EPOCH
    np.testing.assert_allclose(after["weights"], full["weights"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_custom_loop_resumes_mid_epoch_and_matches_an_uninterrupted_run(runs):
    root, results = runs
    killed, resumed = results["loop_resume"]
    assert killed.returncode == SIGKILLED, killed.stderr[-3000:]
    _check(resumed)
    _check(results["reference"])
    full = np.load(root / "loop_full.npz")
    after = np.load(root / "loop_resumed.npz")
    # Killed after step 7; the latest checkpoint (step 6) is mid-epoch: 2 steps remain.
    # (Their logged running means cover only those 2 steps, so only weights compare.)
    assert len(after["logs"]) == EPOCHS * STEPS_PER_EPOCH - 6
    np.testing.assert_allclose(after["weights"], full["weights"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_fit_finishes_a_mid_epoch_checkpoint_of_the_custom_loop_exactly(runs):
    root, results = runs
    killed, resumed = results["loop_then_fit"]
    assert killed.returncode == SIGKILLED, killed.stderr[-3000:]
    _check(resumed)
    _check(results["reference"])
    after = np.load(root / "loop_then_fit_resumed.npz")
    assert int(after["start_step"]) == 6
    assert len(after["logs"]) == EPOCHS * STEPS_PER_EPOCH - 6
    full = np.load(root / "fit_full.npz")
    np.testing.assert_allclose(after["weights"], full["weights"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cluster_resumes_after_one_worker_is_killed(runs):
    root, results = runs
    killed, restarted = results["cluster_resume"]
    assert killed[1].returncode == SIGKILLED, killed[1].stdout[-3000:]
    assert killed[0].returncode != 0, "the surviving worker cannot have finished alone"
    for process in restarted:
        _check(process)
    worker0 = np.load(root / "gang_resumed0.npz")
    worker1 = np.load(root / "gang_resumed1.npz")
    full = np.load(root / "loop_full.npz")
    # The chief's latest complete checkpoint is step 6 (or step 4 if it was killed while
    # writing step 6's); both workers resume from the same one.
    assert len(worker0["logs"]) == len(worker1["logs"]) in (2, 4)
    np.testing.assert_array_equal(worker0["weights"], worker1["weights"])
    np.testing.assert_allclose(worker0["weights"], full["weights"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_train_script_on_two_workers_writes_only_the_chiefs_artifacts(runs):
    root, results = runs
    if results["train_py"] is None:
        pytest.skip("needs `sudo apt-get install dataset-fashion-mnist`")
    for process in results["train_py"]:
        _check(process)
    workdir = root / "train_py"
    assert sorted(os.listdir(workdir)) == [
        "classifier.keras", "config.json", "export", "history.csv", "history.json", "identity.json",
        "model.keras", "summary.json", "target_build", "tensorboard",
    ], "a finished run keeps no backup and no worker writes anything else"
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["epochs"] == 1 and "val_accuracy" in summary["final"]
    import keras

    import neuroreg_tf.models  # noqa: F401  (registers NeuralRegularizedModel)

    model = keras.saving.load_model(workdir / "model.keras")
    assert int(model.optimizer.iterations) == 64 // 16
