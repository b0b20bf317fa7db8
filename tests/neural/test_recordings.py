"""Recording validation and the FileTree / HDF5 round trips."""

import dataclasses
import json
import os

import numpy as np
import pytest

from neuroreg_tf.neural import recordings
from neuroreg_tf.neural.recordings import Recording, RecordingError


def make_recording(n_single=12, n_oracle=3, n_repeats=4, n_neurons=5, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    image_ids = np.concatenate([np.arange(n_oracle, n_oracle + n_single), np.repeat(np.arange(n_oracle), n_repeats)])
    n_trials = image_ids.size
    tiers = np.where(image_ids < n_oracle, "test", "train").astype("U10")
    tiers[n_single - 2 : n_single] = "validation"
    fields = dict(
        images=rng.uniform(size=(n_trials, 6, 8, 1)).astype(np.float32),
        responses=rng.poisson(3.0, size=(n_trials, n_neurons)).astype(np.float32) + rng.uniform(size=(n_trials, n_neurons)),
        behavior=rng.normal(size=(n_trials, 3)),
        pupil_center=rng.normal(size=(n_trials, 2)),
        tiers=tiers,
        image_ids=image_ids,
        neuron_ids=np.arange(100, 100 + n_neurons),
        simulated=True,
        metadata={"label": "SIMULATED test"},
    )
    fields.update(overrides)
    return Recording(**fields)


def assert_same(a: Recording, b: Recording):
    np.testing.assert_allclose(a.images, b.images, atol=1e-7)
    np.testing.assert_array_equal(a.responses, b.responses)
    np.testing.assert_allclose(a.behavior, b.behavior, rtol=1e-6)
    np.testing.assert_allclose(a.pupil_center, b.pupil_center, rtol=1e-6)
    np.testing.assert_array_equal(a.tiers, b.tiers)
    np.testing.assert_array_equal(a.image_ids, b.image_ids)
    np.testing.assert_array_equal(a.neuron_ids, b.neuron_ids)
    assert a.behavior_names == b.behavior_names
    assert a.simulated == b.simulated


def test_repeated_responses_group_trials_by_image():
    recording = make_recording()
    repeated = recording.repeated_responses()
    assert repeated.shape == (3, 4, 5)
    for position, image_id in enumerate(recording.oracle_image_ids()):
        expected = recording.responses[recording.image_ids == image_id]
        np.testing.assert_array_equal(repeated[position], expected)


def test_unique_images_one_per_id():
    recording = make_recording()
    ids, images, first = recording.unique_images()
    np.testing.assert_array_equal(ids, np.arange(15))
    np.testing.assert_array_equal(images, recording.images[first])
    np.testing.assert_array_equal(recording.image_ids[first], ids)


def test_filetree_round_trip(tmp_path):
    recording = make_recording()
    path = recordings.write_filetree(str(tmp_path / "scan"), recording)
    assert os.path.isfile(os.path.join(path, "data", "images", "0.npy"))
    assert np.load(os.path.join(path, "data", "images", "0.npy")).shape == (1, 6, 8)
    assert np.load(os.path.join(path, "meta", "trials", "frame_image_id.npy")).shape == (recording.n_trials,)
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["simulated"] is True
    loaded = recordings.read_recording(path)
    assert_same(recording, loaded)
    assert loaded.metadata["label"] == "SIMULATED test"


def test_hdf5_round_trip(tmp_path):
    recording = make_recording()
    path = recordings.write_recording(str(tmp_path / "scan.h5"), recording)
    loaded = recordings.read_recording(path)
    assert_same(recording, loaded)
    assert loaded.metadata["format"] == "hdf5"


def test_uint8_images_are_rescaled():
    recording = make_recording()
    as_uint8 = (recording.images * 255).astype(np.uint8)
    rebuilt = dataclasses.replace(recording, images=as_uint8)
    np.testing.assert_allclose(rebuilt.images, as_uint8 / 255.0, atol=1e-7)


def test_readers_rescale_0_255_float_images(tmp_path):
    recording = make_recording()
    path = recordings.write_filetree(str(tmp_path / "scan"), recording)
    for trial in range(recording.n_trials):
        file = os.path.join(path, "data", "images", f"{trial}.npy")
        np.save(file, np.load(file) * 255.0)
    loaded = recordings.read_filetree(path)
    np.testing.assert_allclose(loaded.images, recording.images, atol=1e-5)
    assert loaded.metadata["images_rescaled_from_0_255"]


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(behavior=np.zeros((5, 3))), "one entry per trial"),
        (dict(pupil_center=np.zeros((24, 3))), "pupil_center"),
        (dict(image_ids=np.arange(24)), "No image is shown more than once"),
        (dict(tiers=np.full(24, "training")), "tiers"),
        (dict(neuron_ids=np.zeros(5, int)), "unique"),
    ],
)
def test_malformed_recordings_are_rejected(override, message):
    with pytest.raises(RecordingError, match=message):
        make_recording(**override)


def test_nan_and_silent_neurons_are_rejected():
    good = make_recording()
    responses = good.responses.copy()
    responses[3, 1] = np.nan
    with pytest.raises(RecordingError, match=r"NaN.*trial\(s\) \(first: \[3\]\)"):
        dataclasses.replace(good, responses=responses)
    responses = good.responses.copy()
    responses[:, 2] = 7.0
    with pytest.raises(RecordingError, match="zero response variance.*102"):
        dataclasses.replace(good, responses=responses)
    images = good.images.copy()
    images[0, 0, 0, 0] = 3.0
    with pytest.raises(RecordingError, match=r"\[0, 1\]"):
        dataclasses.replace(good, images=images)


def test_filetree_with_missing_trial_file_is_rejected(tmp_path):
    path = recordings.write_filetree(str(tmp_path / "scan"), make_recording())
    os.remove(os.path.join(path, "data", "behavior", "5.npy"))
    with pytest.raises(RecordingError, match="data/behavior holds 23 trials.*\\[5\\]"):
        recordings.read_filetree(path)


def test_readers_reject_wrong_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a FileTree"):
        recordings.read_filetree(str(tmp_path))
    with pytest.raises(ValueError, match="Received: path="):
        recordings.read_recording(str(tmp_path / "scan.txt"))
    import h5py

    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("responses", data=np.zeros((3, 2)))
    with pytest.raises(RecordingError, match="images"):
        recordings.read_hdf5(str(tmp_path / "bad.h5"))
