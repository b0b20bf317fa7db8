"""SIGKILL at a random point of target building, training and evaluation, then the same command
again: it finishes with the uninterrupted result, bit for bit, or refuses clearly.

Each stage runs once uninterrupted (reference) and once killed after a random delay and re-run;
the kill delays come from a seeded generator (the seed is in the failure message). A target
built in two fresh processes is compared byte for byte: target building is deterministic.
"""

import json
import os
import signal
import subprocess
import sys
import zipfile

import h5py
import io
import numpy as np
import pytest

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S, needs_fashion_mnist

SEED = int(os.environ.get("NEUROREG_KILL_SEED", "2026"))
BUILD = ["--config=configs/build_target.py:demo", "--config.simulation.preset=tiny",
         "--config.model.max_epochs=2", "--config.model.channels=4", "--config.figures=False"]
TRAIN = ["--config=configs/demo.py:runlocal", "--config.epochs=2", "--config.batch_size=16",
         "--config.data.train_limit=96", "--config.data.eval_limit=32", "--config.verbose=0",
         "--config.checkpoint_every_steps=2"]
EVALUATE = ["--config=configs/evaluate.py:runlocal", "--config.num_examples=64",
            "--config.noise.sigmas=(0.0,0.2)", "--config.adversarial.enabled=True", "--config.adversarial.num_examples=6"]


def command(script, *flags):
    return [sys.executable, os.path.join(REPO_ROOT, script), *flags]


def run(script, *flags):
    completed = subprocess.run(command(script, *flags), cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def killed_then_rerun(script, delay, *flags):
    """Starts ``script``, SIGKILLs it after ``delay`` seconds (if still running), runs it again."""
    process = subprocess.Popen(command(script, *flags), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return run(script, *flags)


def classifier_weights(workdir):
    with zipfile.ZipFile(os.path.join(workdir, "classifier.keras")) as archive:
        data = archive.read("model.weights.h5")
    arrays = []
    with h5py.File(io.BytesIO(data), "r") as weights:
        weights.visititems(lambda name, item: arrays.append((name, item[()]))
                           if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.mark.slow
@needs_fashion_mnist
def test_killed_build_train_and_evaluation_finish_with_the_uninterrupted_result(tmp_path):
    rng = np.random.default_rng(SEED)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    context = f"(kill seed {SEED})"

    run("build_target.py", f"--workdir={reference / 'target'}", *BUILD)
    delay = rng.uniform(4.0, 14.0)
    killed_then_rerun("build_target.py", delay, f"--workdir={interrupted / 'target'}", *BUILD)
    for name in ("stimuli.npy", "embedding.npy", "metadata.json"):
        first = (reference / "target" / "target" / name).read_bytes()
        second = (interrupted / "target" / "target" / name).read_bytes()
        assert first == second, f"{name} differs after a kill at {delay:.1f} s {context}"

    flags = [f"--config.target.path={reference / 'target' / 'target'}"]
    run("train.py", f"--workdir={reference / 'neural'}", *flags, *TRAIN)
    delay = rng.uniform(4.0, 16.0)
    rerun = killed_then_rerun("train.py", delay, f"--workdir={interrupted / 'neural'}", *flags, *TRAIN)
    for (name, expected), (_, resumed) in zip(
        classifier_weights(reference / "neural"), classifier_weights(interrupted / "neural")
    ):
        np.testing.assert_array_equal(resumed, expected, err_msg=f"{name}, killed at {delay:.1f} s {context}")
    history = (interrupted / "neural" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1"], history
    assert "Finished 2 epoch(s)" in rerun.stdout

    for root in (reference, interrupted):
        models = f"--config.models=Neural={root / 'neural'}"
        if root is reference:
            run("evaluate.py", f"--workdir={root / 'evaluation'}", models, *EVALUATE)
        else:
            delay = rng.uniform(4.0, 14.0)
            killed_then_rerun("evaluate.py", delay, f"--workdir={root / 'evaluation'}", models, *EVALUATE)
    reports = [json.loads((root / "evaluation" / "robustness.json").read_text())["models"]
               for root in (reference, interrupted)]
    for expected, resumed in zip(*reports):
        assert resumed["clean_accuracy"] == expected["clean_accuracy"], context
        assert resumed["noise"] == expected["noise"], context
        for norm, summary in expected["adversarial"].items():
            timing = {"seconds"}
            assert {k: v for k, v in resumed["adversarial"][norm].items() if k not in timing} == {
                k: v for k, v in summary.items() if k not in timing
            }, f"{norm} of {expected['label']} {context}"
