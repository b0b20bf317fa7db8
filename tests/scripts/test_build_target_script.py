"""build_target.py end to end (subprocess), on the tiny SIMULATED preset and on FileTree input."""

import json
import os
import subprocess
import sys

import numpy as np

from neuroreg_tf import targets
from neuroreg_tf.neural import recordings, simulation

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S


def run_build(workdir, *flags):
    command = [sys.executable, "build_target.py", f"--workdir={workdir}", *flags]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_default_config_on_the_tiny_simulation(tmp_path):
    workdir = str(tmp_path / "run")
    stdout = run_build(
        workdir,
        "--config=configs/build_target.py:small",
        "--config.simulation.preset=tiny",
        "--config.model.max_epochs=1",
        "--config.model.channels=4",
        "--config.simulation.save_recordings=True",
    )
    assert "SIMULATED" in stdout and "epoch   1" in stdout and "r_model_vs_truth" in stdout
    with open(os.path.join(workdir, "target_report.json")) as f:
        report = json.load(f)
    for key in ("kind", "n_stimuli", "simulated", "r_data_vs_oracle", "r_model_vs_oracle", "r_data_vs_truth", "r_model_vs_truth"):
        assert key in report
    assert report["simulated"] is True and report["kind"] == "neural_model"
    target = targets.load_target(os.path.join(workdir, "target"))
    assert target.simulated and target.n_stimuli == report["n_stimuli"]
    for kind in ("neural_data", "oracle", "shuffle", "random", "ground_truth"):
        assert targets.load_target(os.path.join(workdir, "targets", kind)).kind == kind
    names = sorted(os.listdir(os.path.join(workdir, "figures")))
    assert names == ["fig1ab_similarity_matrices.png", "fig1c_fluctuations.png", "fig1d_scatter.png"]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["simulation"]["preset"] == "tiny"
    scan = recordings.read_recording(os.path.join(workdir, "recordings", "scan_1"))
    assert scan.simulated
    rates = np.load(os.path.join(workdir, "recordings", "scan_1", "meta", "ground_truth", "trial_rates.npy"))
    assert rates.shape == scan.responses.shape
    neutral = np.load(os.path.join(workdir, "recordings", "ground_truth", "neutral_rates.npy"))
    assert neutral.shape[0] == report["n_stimuli"]


def test_recordings_from_disk_without_a_model(tmp_path):
    experiment = simulation.simulate_experiment(preset="tiny", seed=4)
    paths = [
        recordings.write_filetree(str(tmp_path / "scan_a"), experiment.recordings[0]),
        recordings.write_hdf5(str(tmp_path / "scan_b.h5"), experiment.recordings[1]),
    ]
    workdir = str(tmp_path / "run")
    run_build(
        workdir,
        f"--config.recordings={','.join(paths)}",
        "--config.target.kind=neural_data",
        "--config.target.extra_kinds=oracle",  # ground_truth is a ConfigError for recordings
        "--config.figures=False",
    )
    with open(os.path.join(workdir, "target_report.json")) as f:
        report = json.load(f)
    assert report["kind"] == "neural_data" and report["simulated"] is True
    assert report["r_model_vs_oracle"] is None and "r_data_vs_truth" not in report
    assert not os.path.exists(os.path.join(workdir, "targets", "ground_truth"))
    target = targets.load_target(os.path.join(workdir, "target"))
    np.testing.assert_allclose(target.stimuli, experiment.stimuli)


def test_zipped_recordings_and_a_stimulus_set_no_scan_saw(tmp_path):
    experiment = simulation.simulate_experiment(preset="tiny", seed=5)
    paths = [
        recordings.write_filetree(str(tmp_path / f"static{h}-1-1-ColorImageNet-x.zip"), r)
        for h, r in enumerate(experiment.recordings)
    ]
    from neuroreg_tf.data.stimuli import natural_stimuli

    new = natural_stimuli(40, height=72, width=128, seed=11)
    np.save(tmp_path / "new.npy", new)
    workdir = str(tmp_path / "run")
    stdout = run_build(
        workdir,
        "--config=configs/build_target.py:recordings",
        f"--config.recordings={','.join(paths)}",
        f"--config.stimuli={tmp_path / 'new.npy'}",
        "--config.target.extra_kinds=oracle,shuffle",
        "--config.model.max_epochs=1",
        "--config.model.channels=4",
        "--config.streaming.chunk=16",
    )
    assert "pass 2/2" in stdout and "r_model_vs_oracle" in stdout
    target = targets.load_target(os.path.join(workdir, "target"))
    assert target.n_stimuli == 40 and target.kind == "neural_model" and target.simulated
    np.testing.assert_allclose(target.stimuli[..., 0], new[..., 0].reshape(40, 36, 2, 64, 2).mean(axis=(2, 4)), atol=1e-6)
    assert targets.load_target(os.path.join(workdir, "targets", "oracle")).n_stimuli == 12
    with open(os.path.join(workdir, "target_report.json")) as f:
        report = json.load(f)
    assert report["stimuli"]["stimuli_source"].endswith("new.npy")


def test_bad_config_is_one_message_and_exit_2(tmp_path):
    command = [sys.executable, "build_target.py", f"--workdir={tmp_path}", "--config.target.kind=imagenet"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 2
    assert "build_target.py: error: config.target.kind: must be one of" in completed.stderr
    assert "Traceback" not in completed.stderr
