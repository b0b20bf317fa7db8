"""train.py end to end on tiny settings: outputs, reloads, resume, and clear errors."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT as REPO
from conftest import SUBPROCESS_TIMEOUT_S, needs_fashion_mnist
from neuroreg_tf import data
from neuroreg_tf.config import base_train_config, runlocal
from neuroreg_tf import workdir as workdir_lib
from neuroreg_tf.errors import ConfigError, WorkdirError
from neuroreg_tf.training import trainer

TINY = {
    "batch_size": 16,
    "data.train_limit": 64,
    "data.eval_limit": 32,
    "verbose": 0,
}


def tiny_config(target_path, **overrides):
    config = runlocal(base_train_config())
    config.data.dataset = "fashion_mnist"
    config.target.path = target_path
    for key, value in {**TINY, **overrides}.items():
        section = config
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    return config


def run_train(workdir, *flags):
    """train.py on configs/demo.py:runlocal with the TINY settings (a subprocess)."""
    command = [sys.executable, "train.py", "--config=configs/demo.py:runlocal", f"--workdir={workdir}"]
    command += [f"--config.{key}={value}" for key, value in TINY.items()] + list(flags)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    completed = run_train(workdir)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return workdir, completed.stdout


@needs_fashion_mnist
def test_train_script_writes_the_whole_workdir(finished_run):
    workdir, stdout = finished_run
    for name in ("config.json", "history.csv", "history.json", "model.keras", "classifier.keras",
                 "summary.json", "export/saved_model.pb", "target_build/target/metadata.json", "tensorboard"):
        assert os.path.exists(os.path.join(workdir, name)), name
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["data"]["train_limit"] == 64 and config["alpha"] == 20.0
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["target"] == {
        "path": os.path.join(workdir, "target_build", "target"), "kind": "neural_data", "simulated": True
    }
    assert summary["epochs"] == 1 and sum(summary["gamma"].values()) == pytest.approx(1.0)
    assert {"val_accuracy", "val_similarity_r", "similarity_loss"} <= set(summary["final"])
    assert "Finished 1 epoch(s)" in stdout


@needs_fashion_mnist
def test_each_epoch_is_monitored_on_the_last_training_images_not_the_test_images(finished_run):
    import tensorflow_datasets as tfds

    workdir, _ = finished_run
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["monitored_on"] == "validation: the last 256 training images (train[-256:])"
    # val_accuracy is the classifier's accuracy on exactly those images, read here by tfds itself.
    images, labels = tfds.as_numpy(tfds.load("fashion_mnist", split="train", batch_size=-1, as_supervised=True,
                                             data_dir=data.default_data_dir()))
    logits = keras.saving.load_model(os.path.join(workdir, "classifier.keras")).predict(
        images[-256:].astype(np.float32) / 255.0, verbose=0)
    assert summary["final"]["val_accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == labels[-256:]), abs=1e-6)


def test_validation_images_never_overlap_the_training_images():
    config = base_train_config()
    config.data.train_limit, config.data.validation_size = 12000, 2000
    assert trainer.training_images(config, 60000) == (12000, "train[-2000:]")
    config.data.train_limit = None
    assert trainer.training_images(config, 60000) == (58000, "train[-2000:]")
    config.data.validation_size = 0
    assert trainer.training_images(config, 60000) == (60000, None)
    config.data.train_limit, config.data.validation_size = 59000, 2000
    with pytest.raises(ConfigError, match="train_limit <= 58000"):
        trainer.training_images(config, 60000)
    config.data.train_limit, config.data.validation_size = None, 60000
    with pytest.raises(ConfigError, match="leaves none of the 60000"):
        trainer.training_images(config, 60000)


def test_the_validation_split_changes_a_runs_identity_only_where_it_changes_its_training_images(tmp_path):
    config = base_train_config()
    target = {"fingerprint": "x", "kind": "neural_data"}
    def recorded_before_the_split(config):
        identity = trainer.run_identity(config, target)
        identity["config"]["data"].pop("validation_size", None)  # the key did not exist then
        return identity

    config.data.train_limit = 12000
    recorded = recorded_before_the_split(config)
    run = str(tmp_path / "limited")
    workdir_lib.claim(run, recorded, what="training run", finished_marker="summary.json", overwrite=False)
    for size in (0, 2000, 5000):  # the same 12,000 training images: the same run
        config.data.validation_size = size
        assert trainer.claim(config, run, target) == workdir_lib.RESUME
    config.data.train_limit = None  # all training images: the split takes images from training
    recorded = recorded_before_the_split(config)
    run = str(tmp_path / "all")
    workdir_lib.claim(run, recorded, what="training run", finished_marker="summary.json", overwrite=False)
    config.data.validation_size = 0  # what such a run did
    assert trainer.claim(config, run, target) == workdir_lib.RESUME
    config.data.validation_size = 2000
    with pytest.raises(WorkdirError, match="data.validation_size"):
        trainer.claim(config, run, target)


@needs_fashion_mnist
def test_saved_model_and_keras_files_reload_to_identical_predictions(finished_run):
    workdir, _ = finished_run
    images, _ = next(iter(data.load_classification("fashion_mnist", "test", batch_size=16, limit=16)))
    classifier = keras.saving.load_model(os.path.join(workdir, "classifier.keras"))
    full = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    exported = tf.saved_model.load(os.path.join(workdir, "export"))
    expected = classifier.predict(images, verbose=0)
    np.testing.assert_array_equal(full.predict(images, verbose=0), expected)
    # The SavedModel graph fuses kernels differently: same weights, float32 round-off.
    layer = keras.layers.TFSMLayer(os.path.join(workdir, "export"), call_endpoint="serve")
    for served in (exported.serve(images).numpy(), layer(images).numpy()):
        np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)
    assert int(full.optimizer.iterations) == 64 // 16


@needs_fashion_mnist
def test_a_finished_run_is_reused_only_for_its_own_config(finished_run, runlocal_target):
    workdir, _ = finished_run
    before = os.path.getmtime(os.path.join(workdir, "model.keras"))
    again = run_train(workdir)
    assert again.returncode == 0 and "already holds this finished run" in again.stdout
    other = run_train(workdir, "--config.alpha=0")
    assert other.returncode == 2
    assert "config.alpha: 20.0 there, 0.0 here" in other.stderr
    assert "--config.overwrite=True" in other.stderr and "Traceback" not in other.stderr
    assert os.path.getmtime(os.path.join(workdir, "model.keras")) == before
    with pytest.raises(WorkdirError, match="another config"):
        trainer.train(tiny_config(runlocal_target), workdir)  # another target, in-process


@needs_fashion_mnist
def test_overwrite_starts_from_an_empty_workdir(tmp_path):
    workdir = str(tmp_path / "run")
    assert run_train(workdir, "--config.epochs=2").returncode == 0
    replaced = run_train(workdir, "--config.overwrite=True")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    with open(os.path.join(workdir, "history.csv")) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0]  # not 0, 1, 0
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["epochs"] == 1
    assert not [name for name in os.listdir(tmp_path) if name != "run"], "the old workdir is gone"


class _Interrupt(Exception):
    pass


class _InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Interrupt()


@needs_fashion_mnist
def test_an_interrupted_run_resumes_from_its_backup(tmp_path, runlocal_target):
    workdir = str(tmp_path)
    config = tiny_config(runlocal_target, epochs=2)
    with pytest.raises(_Interrupt):
        trainer.train(config, workdir, callbacks=[_InterruptAfterFirstEpoch()])
    assert os.path.isdir(os.path.join(workdir, "backup"))
    assert not os.path.exists(os.path.join(workdir, "model.keras")), "no artifact from an unfinished run"

    summary = trainer.train(config, workdir)
    with open(os.path.join(workdir, "history.csv")) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1], "the resumed run continues with epoch 1 instead of starting over"
    assert summary["epochs"] == 2
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert int(model.optimizer.iterations) == 2 * (64 // 16)


@needs_fashion_mnist
def test_unknown_tap_layer_is_reported_before_training(tmp_path, runlocal_target):
    config = tiny_config(runlocal_target)
    config.similarity.tap_layers = "stem_relu,stage9_block1_out"
    with pytest.raises(ValueError, match="unknown layers \[.stage9_block1_out.\]"):
        trainer.train(config, str(tmp_path))


def test_missing_dataset_fails_at_once_with_the_command(tmp_path, runlocal_target):
    config = tiny_config(runlocal_target)
    config.data.dataset = "cifar10"
    config.data.data_dir = str(tmp_path / "empty")
    with pytest.raises(data.DatasetNotFoundError, match="download_and_prepare"):
        trainer.train(config, str(tmp_path / "run"))


@needs_fashion_mnist
def test_evaluate_py_never_replaces_a_training_run(finished_run):
    # The advice of a refusal, followed: --config.overwrite=True must not delete the training run.
    workdir, _ = finished_run
    for extra in ([], ["--config.overwrite=True"]):
        completed = subprocess.run(
            [sys.executable, "evaluate.py", f"--workdir={workdir}", f"--config.models=M={workdir}",
             "--config.num_examples=16", *extra],
            cwd=REPO, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
        )
        assert completed.returncode == 2 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
        assert "holds a training run, not an evaluation: choose another --workdir" in completed.stderr
    assert os.path.isfile(os.path.join(workdir, "model.keras")) and os.path.isfile(os.path.join(workdir, "summary.json"))


@needs_fashion_mnist
def test_the_advice_for_damaged_checkpoints_works_when_followed(tmp_path, runlocal_target):
    from neuroreg_tf.errors import CheckpointError

    workdir = str(tmp_path / "run")
    config = tiny_config(runlocal_target, epochs=2)
    with pytest.raises(_Interrupt):
        trainer.train(config, workdir, callbacks=[_InterruptAfterFirstEpoch()], progress=None)
    backup = os.path.join(workdir, "backup")
    for name in os.listdir(backup):
        weights = os.path.join(backup, name, "model.weights.h5")
        if os.path.isfile(weights):
            data = bytearray(open(weights, "rb").read())
            data[len(data) // 2] ^= 0xFF
            open(weights, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="No usable checkpoint.*--config.overwrite=True") as refused:
        trainer.train(config, workdir, progress=None)
    assert "damaged" in str(refused.value)
    config.overwrite = True  # the advice, followed
    summary = trainer.train(config, workdir, progress=None)
    assert summary["epochs"] == 2 and not os.path.exists(backup)
