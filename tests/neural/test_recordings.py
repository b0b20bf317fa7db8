"""Recordings: validation, both layouts both ways (folder, zip, HDF5), id variants, colour, resizing."""

import dataclasses
import json
import os
import zipfile

import numpy as np
import pytest

from neuroreg_tf.errors import MissingDataError
from neuroreg_tf.neural import build_config, recordings
from neuroreg_tf.neural.recordings import ImageOptions, ReadOptions, Recording, RecordingError, RecordingWarning

KEEP_SIZE = ReadOptions(images=ImageOptions(size=None))
LAYOUTS = ("scan", "scan.zip", "scan.h5")


def make_recording(n_single=12, n_oracle=3, n_repeats=4, n_neurons=5, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    image_ids = np.concatenate([np.arange(n_oracle, n_oracle + n_single), np.repeat(np.arange(n_oracle), n_repeats)])
    n_trials = image_ids.size
    tiers = np.where(image_ids < n_oracle, "test", "train").astype("U10")
    tiers[n_single - 2 : n_single] = "validation"
    fields = dict(
        images=rng.uniform(size=(n_oracle + n_single, 6, 8, 1)).astype(np.float32)[image_ids],
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
    assert a.image_id_name == b.image_id_name


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


@pytest.mark.parametrize("name", LAYOUTS)
def test_round_trip_keeps_everything(tmp_path, name):
    base = make_recording()
    recording = dataclasses.replace(
        base,
        behavior=np.random.default_rng(1).normal(size=(base.n_trials, 5)),
        behavior_names=("a", "b", "c", "d", "e"),
        neuron_meta={"area": np.array(["V1", "LM", "V1", "V1", "AL"]), "cell_motor_coordinates": np.arange(15).reshape(5, 3)},
        trial_meta={"frame_image_class": np.full(base.n_trials, "imagenet"), "trial_idx": np.arange(base.n_trials)[::-1]},
    )
    path = recordings.write_recording(str(tmp_path / name), recording)
    loaded = recordings.read_recording(path, KEEP_SIZE)
    assert_same(recording, loaded)
    assert loaded.metadata["label"] == "SIMULATED test"
    np.testing.assert_array_equal(loaded.neuron_meta["area"], recording.neuron_meta["area"])
    np.testing.assert_array_equal(loaded.neuron_meta["cell_motor_coordinates"], np.arange(15).reshape(5, 3))
    np.testing.assert_array_equal(loaded.trial_meta["trial_idx"], np.arange(base.n_trials)[::-1])
    np.testing.assert_array_equal(loaded.trial_meta["frame_image_class"], recording.trial_meta["frame_image_class"])
    assert loaded.neuron_meta["layer"].tolist() == ["unknown"] * 5  # written by default for SENSORIUM


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("id_name", recordings.IMAGE_ID_NAMES)
def test_every_image_id_name_round_trips(tmp_path, name, id_name):
    recording = dataclasses.replace(make_recording(), image_id_name=id_name)
    path = recordings.write_recording(str(tmp_path / name), recording)
    class_name = recordings.image_class_name(id_name)
    if name.endswith(".h5"):
        import h5py

        with h5py.File(path) as f:
            assert f"item_info/{id_name}" in f and f"item_info/{class_name}" in f
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            assert f"scan/meta/trials/{id_name}.npy" in archive.namelist()
    else:
        assert os.path.isfile(os.path.join(path, "meta", "trials", f"{id_name}.npy"))
        assert os.path.isfile(os.path.join(path, "meta", "trials", f"{class_name}.npy"))
    loaded = recordings.read_recording(path, KEEP_SIZE)
    assert loaded.image_id_name == id_name
    np.testing.assert_array_equal(loaded.image_ids, recording.image_ids)


def write_release_like(root, *, n_neurons=6, size=(144, 256), channels=2, seed=0, zipped=True, id_name="colorframeprojector_image_id"):
    """A FileTree written by hand the way the releases are (not by the project's writer)."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([np.arange(10, 30), np.repeat(np.arange(3), 3)])
    pictures = rng.integers(0, 256, size=(30, channels, *size), dtype=np.uint8)
    tiers = np.where(ids < 3, "test", "train").astype("U10")
    tiers[18:20] = "validation"
    name = os.path.basename(root)
    files = {}
    for trial, image_id in enumerate(ids):
        files[f"data/images/{trial}.npy"] = pictures[image_id]
        files[f"data/responses/{trial}.npy"] = rng.gamma(2.0, size=n_neurons).astype(np.float32)
        files[f"data/behavior/{trial}.npy"] = rng.normal(size=(1, 3)).astype(np.float32)
        files[f"data/pupil_center/{trial}.npy"] = rng.normal(size=(1, 2)).astype(np.float32)
    files["meta/trials/tiers.npy"] = tiers
    files[f"meta/trials/{id_name}.npy"] = ids
    files["meta/neurons/unit_ids.npy"] = np.arange(n_neurons) + 1
    files["meta/neurons/area.npy"] = np.full(n_neurons, "V1")
    if zipped:
        with zipfile.ZipFile(root + ".zip", "w") as archive:
            for relative, value in files.items():
                with archive.open(f"{name}/{relative}", "w") as member:
                    np.save(member, value)
        return root + ".zip", pictures, ids, files
    for relative, value in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
        np.save(os.path.join(root, relative), value)
    return root, pictures, ids, files


def block_mean(image, factor):
    """Mean over factor x factor blocks, by explicit loops."""
    height, width = image.shape[0] // factor, image.shape[1] // factor
    out = np.zeros((height, width))
    for row in range(height):
        for col in range(width):
            out[row, col] = image[row * factor : (row + 1) * factor, col * factor : (col + 1) * factor].mean()
    return out


def test_zipped_colour_release_is_read_in_place_reduced_and_resized(tmp_path):
    path, pictures, ids, _ = write_release_like(str(tmp_path / "static1-2-3-ColorImageNet-abc"))
    recording = recordings.read_recording(path)
    assert not os.path.exists(str(tmp_path / "static1-2-3-ColorImageNet-abc"))  # never unpacked
    assert recording.image_id_name == "colorframeprojector_image_id"
    assert recording.images.shape == (ids.size, 36, 64, 1)
    for trial in (0, 7, 22):
        gray = pictures[ids[trial]].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(recording.images[trial, ..., 0], block_mean(gray, 4) / 255.0, atol=1e-6)
    green = recordings.read_recording(path, ReadOptions(images=ImageOptions(color="channel:1")))
    np.testing.assert_allclose(green.images[3, ..., 0], block_mean(pictures[ids[3], 1].astype(np.float64), 4) / 255.0, atol=1e-6)
    weighted = recordings.read_recording(path, ReadOptions(images=ImageOptions(color="weights:3,1")))
    expected = block_mean(0.75 * pictures[ids[5], 0] + 0.25 * pictures[ids[5], 1].astype(np.float64), 4) / 255.0
    np.testing.assert_allclose(weighted.images[5, ..., 0], expected, atol=1e-6)
    assert recording.behavior.shape == (ids.size, 3) and recording.behavior_names == ("behavior_0", "behavior_1", "behavior_2")
    assert recording.neuron_meta["area"].tolist() == ["V1"] * 6


def test_folder_with_plain_image_id_and_grayscale_keeps_its_size(tmp_path):
    path, pictures, ids, _ = write_release_like(str(tmp_path / "scan"), size=(36, 64), channels=1, zipped=False, id_name="frame_image_id")
    recording = recordings.read_recording(path)
    np.testing.assert_allclose(recording.images[4, ..., 0], pictures[ids[4], 0] / 255.0, atol=1e-7)


def test_non_integer_resize_keeps_constant_images_and_refuses_distortion(tmp_path):
    from neuroreg_tf.neural.recordings import images as image_ops

    constant = np.full((2, 50, 90), 0.4, np.float32)
    resized = image_ops.resize(constant, (36, 64))
    assert resized.shape == (2, 36, 64)
    np.testing.assert_allclose(resized, 0.4, atol=1e-6)
    ramp = np.tile(np.linspace(0, 1, 90, dtype=np.float32), (1, 50, 1))
    out = image_ops.resize(ramp, (36, 64))
    assert np.all(np.diff(out[0, 18]) > 0)  # a left-to-right ramp stays a ramp
    with pytest.raises(image_ops.ImageFormatError, match="aspect ratio|width / height"):
        image_ops.resize(np.zeros((1, 64, 64)), (36, 64))
    path, *_ = write_release_like(str(tmp_path / "square"), size=(64, 64), channels=1)
    with pytest.raises(RecordingError, match=r"square\.zip:square/data/images/0\.npy.*64x64.*36x64"):
        recordings.read_recording(path)


def test_hdf5_with_item_info_image_id_and_colour(tmp_path):
    import h5py

    rng = np.random.default_rng(3)
    ids = np.concatenate([np.arange(5, 25), np.repeat(np.arange(5), 2)])
    pictures = rng.uniform(0, 255, size=(25, 3, 72, 128)).astype(np.float32)
    tiers = np.where(ids < 5, "test", "train").astype("S")
    with h5py.File(tmp_path / "static.h5", "w") as f:
        f["images"] = pictures[ids]
        f["responses"] = rng.gamma(2.0, size=(ids.size, 4))
        f["behavior"] = rng.normal(size=(ids.size, 2))
        f["pupil_center"] = rng.normal(size=(ids.size, 2))
        f["tiers"] = tiers
        f["item_info/image_id"] = ids
        f["neurons/unit_ids"] = np.arange(4)
    recording = recordings.read_recording(str(tmp_path / "static.h5"), ReadOptions(images=ImageOptions(color="luminance")))
    assert recording.image_id_name == "image_id" and recording.images.shape == (ids.size, 36, 64, 1)
    luminance = 0.299 * pictures[ids[2], 0] + 0.587 * pictures[ids[2], 1] + 0.114 * pictures[ids[2], 2]
    np.testing.assert_allclose(recording.images[2, ..., 0], block_mean(luminance, 2) / 255.0, atol=1e-5)
    assert recording.metadata["images_rescaled_from_0_255"] is True
    assert recording.behavior_names == ("behavior_0", "behavior_1")


# ----------------------------------------------------------------------------
# What neuralpredictors' readers need (FileTreeDatasetBase, StaticImageSet, NeuroNormalizer,
# convert_static_h5_dataset_to_folder; SENSORIUM's static_loader), checked on our writer.
# ----------------------------------------------------------------------------

NEURON_KEYS = ("unit_ids", "area", "layer", "animal_ids", "sessions", "scan_idx")
TRIAL_KEYS = ("tiers", "frame_image_id", "frame_image_class", "trial_idx")
STATS = ("mean", "std", "min", "max", "median")


def expected_statistics(recording):
    arrays = {
        "images": np.transpose(recording.images, (0, 3, 1, 2)).astype(np.float64),
        "responses": recording.responses.astype(np.float64),
        "behavior": recording.behavior.astype(np.float64),
        "pupil_center": recording.pupil_center.astype(np.float64),
    }
    out = {}
    for key, values in arrays.items():
        flat = values.reshape(-1) if key == "images" else values
        out[key] = {
            "mean": flat.mean(axis=0), "std": flat.std(axis=0), "min": flat.min(axis=0),
            "max": flat.max(axis=0), "median": np.median(flat, axis=0),
        }
    return out


@pytest.mark.parametrize("zipped", [False, True])
def test_filetree_has_what_neuralpredictors_reads(tmp_path, zipped):
    recording = make_recording()
    path = recordings.write_recording(str(tmp_path / ("scan.zip" if zipped else "scan")), recording)
    if zipped:
        with zipfile.ZipFile(path) as archive:
            assert all(name.startswith("scan/") for name in archive.namelist())  # FileTreeDataset unzips next to it
            archive.extractall(tmp_path / "unzipped")
        path = str(tmp_path / "unzipped" / "scan")
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["links"] == {}  # FileTreeDataset.statistics reads config["links"]
    for key in ("images", "responses", "behavior", "pupil_center"):
        assert sorted(os.listdir(os.path.join(path, "data", key))) == sorted(f"{t}.npy" for t in range(recording.n_trials))
    assert np.load(os.path.join(path, "data", "images", "0.npy")).shape == (1, 6, 8)
    assert np.load(os.path.join(path, "data", "responses", "0.npy")).dtype == np.float32
    expected = expected_statistics(recording)
    for key, stats in expected.items():
        for source in ("all", "stimulus_frame"):
            for name in STATS:
                value = np.load(os.path.join(path, "meta", "statistics", key, source, f"{name}.npy"))
                np.testing.assert_allclose(value, stats[name], rtol=1e-5, atol=1e-6)
    for name in NEURON_KEYS:
        value = np.load(os.path.join(path, "meta", "neurons", f"{name}.npy"), allow_pickle=False)
        assert value.shape == (recording.n_neurons,) and value.dtype.kind in "iuU"
    for name in TRIAL_KEYS:
        value = np.load(os.path.join(path, "meta", "trials", f"{name}.npy"), allow_pickle=False)
        assert value.shape == (recording.n_trials,) and value.dtype.kind in "iuU"
    np.testing.assert_array_equal(np.load(os.path.join(path, "meta", "trials", "tiers.npy")), recording.tiers)


def test_hdf5_has_what_neuralpredictors_reads(tmp_path):
    import h5py

    recording = make_recording()
    path = recordings.write_recording(str(tmp_path / "scan.h5"), recording)
    expected = expected_statistics(recording)
    with h5py.File(path) as f:
        assert f["images"].shape == (recording.n_trials, 1, 6, 8)
        for key in ("responses", "behavior", "pupil_center", "tiers"):
            assert f[key].shape[0] == recording.n_trials
        assert f["tiers"].dtype.char == "S"  # fixed-width bytes: the converter and readers decode them
        for group, keys, length in (("neurons", NEURON_KEYS, recording.n_neurons), ("item_info", TRIAL_KEYS[1:], recording.n_trials)):
            for name in keys:
                value = f[f"{group}/{name}"][...]
                assert value.shape == (length,) and value.dtype.kind in "iuS"
        for key, stats in expected.items():
            for source in ("all", "stimulus_frame"):
                for name in STATS:
                    np.testing.assert_allclose(f[f"statistics/{key}/{source}/{name}"][()], stats[name], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Bad input: each error names the file and the fix; documented treatments warn with counts.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(behavior=np.zeros((5, 3))), "one entry per trial"),
        (dict(pupil_center=np.zeros((24, 3))), "pupil_center"),
        (dict(image_ids=np.arange(24)), "No image is shown more than once"),
        (dict(tiers=np.full(24, "training")), "tiers"),
        (dict(neuron_ids=np.zeros(5, int)), "unique"),
        (dict(neuron_meta={"area": np.array(["V1"])}), "one entry per neuron"),
    ],
)
def test_malformed_recordings_are_rejected(override, message):
    with pytest.raises(RecordingError, match=message):
        make_recording(**override)


def test_nan_and_silent_neurons_are_rejected_in_memory():
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


def test_same_id_with_different_pixels_is_refused_naming_the_file(tmp_path):
    path = recordings.write_recording(str(tmp_path / "scan"), make_recording())
    oracle_trial = int(np.flatnonzero(np.load(os.path.join(path, "meta/trials/frame_image_id.npy")) == 1)[1])
    np.save(os.path.join(path, "data", "images", f"{oracle_trial}.npy"), np.zeros((1, 6, 8), np.float32))
    with pytest.raises(RecordingError, match=rf"{tmp_path}/scan: 1 image id\(s\) are shown with different pixels.*ids \[1\]"):
        recordings.read_recording(path, KEEP_SIZE)


def test_repeat_ids_colliding_with_train_images_are_refused(tmp_path):
    recording = make_recording()
    path = recordings.write_recording(str(tmp_path / "scan.h5"), recording)
    import h5py

    with h5py.File(path, "r+") as f:
        ids = f["item_info/frame_image_id"][()]
        first_train = int(np.flatnonzero(f["tiers"][()] == b"train")[0])
        images = f["images"][()]
        images[first_train] = images[np.flatnonzero(ids == 0)[0]]
        f["images"][...] = images
        ids[first_train] = 0  # a train trial now shows oracle image 0
        f["item_info/frame_image_id"][...] = ids
    with pytest.raises(RecordingError, match=r"scan\.h5: 1 image id\(s\) occur in more than one tier \(id 0 in \['test', 'train'\]\)"):
        recordings.read_recording(path, KEEP_SIZE)


def test_nan_responses_error_names_the_trial_file_or_are_dropped(tmp_path):
    path = recordings.write_recording(str(tmp_path / "scan"), make_recording())
    bad = np.load(os.path.join(path, "data/responses/3.npy"))
    bad[1] = np.inf
    np.save(os.path.join(path, "data/responses/3.npy"), bad)
    with pytest.raises(RecordingError, match=r"scan/data/responses/\{3\.npy\}: 1 trial\(s\) have NaN or infinite responses.*nonfinite=drop"):
        recordings.read_recording(path, KEEP_SIZE)
    with pytest.warns(RecordingWarning, match="dropped 1 trial"):
        recording = recordings.read_recording(path, dataclasses.replace(KEEP_SIZE, nonfinite="drop"))
    assert recording.n_trials == 23 and "dropped 1 trial" in recording.metadata["treatments"][0]


def test_dead_neurons_are_dropped_with_a_count_or_refused(tmp_path):
    recording = make_recording()
    responses = recording.responses.copy()
    responses[:, [1, 3]] = 0.0
    # The Recording itself refuses such neurons, so the files are edited by hand.
    folder = recordings.write_recording(str(tmp_path / "scan"), recording)
    for trial in range(recording.n_trials):
        np.save(os.path.join(folder, f"data/responses/{trial}.npy"), responses[trial])
    with pytest.warns(RecordingWarning, match=r"dropped 2 of 5 neuron\(s\) whose responses never vary \(unit ids \[101, 103\]\)"):
        loaded = recordings.read_recording(folder, KEEP_SIZE)
    np.testing.assert_array_equal(loaded.neuron_ids, [100, 102, 104])
    np.testing.assert_array_equal(loaded.responses, responses[:, [0, 2, 4]])
    with pytest.raises(RecordingError, match=r"scan/data/responses: 2 neuron\(s\) never vary.*\[101, 103\]"):
        recordings.read_recording(folder, dataclasses.replace(KEEP_SIZE, dead_neurons="error"))


def test_missing_image_file_is_named(tmp_path):
    path = recordings.write_recording(str(tmp_path / "scan"), make_recording())
    os.remove(os.path.join(path, "data", "images", "5.npy"))
    with pytest.raises(RecordingError, match=r"1 trial file\(s\) are missing, e\.g\. .*scan/data/images/5\.npy .*restore"):
        recordings.read_recording(path, KEEP_SIZE)


def test_unknown_tiers_are_refused_or_dropped_and_withheld_tiers_dropped(tmp_path):
    recording = make_recording()
    path = recordings.write_recording(str(tmp_path / "scan"), recording)
    tiers = recording.tiers.copy()
    tiers[:2] = "none"
    np.save(os.path.join(path, "meta/trials/tiers.npy"), tiers)
    with pytest.raises(RecordingError, match=r"scan/meta/trials/tiers\.npy holds tiers other than .*\{'none': 2\}.*unknown_tiers=drop"):
        recordings.read_recording(path, KEEP_SIZE)
    with pytest.warns(RecordingWarning, match=r"dropped 2 trial\(s\) of tiers \{'none': 2\}"):
        assert recordings.read_recording(path, dataclasses.replace(KEEP_SIZE, unknown_tiers="drop")).n_trials == 22
    # A final_test tier whose responses are withheld (all zeros), as in competition releases.
    tiers = recording.tiers.copy()
    tiers[:3] = "final_test"
    np.save(os.path.join(path, "meta/trials/tiers.npy"), tiers)
    for trial in range(3):
        np.save(os.path.join(path, f"data/responses/{trial}.npy"), np.zeros(5, np.float32))
    with pytest.warns(RecordingWarning, match=r"dropped tier 'final_test' \(3 trials\): every response is exactly 0"):
        loaded = recordings.read_recording(path, KEEP_SIZE)
    assert "final_test" not in loaded.tiers and loaded.n_trials == 21


def test_wrong_paths_and_damaged_archives_are_named(tmp_path):
    with pytest.raises(MissingDataError, match="No recording at"):
        recordings.read_recording(str(tmp_path / "absent"))
    (tmp_path / "scan.txt").write_text("x")
    with pytest.raises(RecordingError, match="Received: path="):
        recordings.read_recording(str(tmp_path / "scan.txt"))
    with pytest.raises(RecordingError, match="is not a FileTree recording.*data/responses is missing"):
        recordings.read_recording(str(tmp_path))
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(RecordingError, match=r"broken\.zip is not a readable zip archive"):
        recordings.read_recording(str(tmp_path / "broken.zip"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr("static1/images/0.npy", b"")
    with pytest.raises(RecordingError, match=r"other\.zip does not hold a FileTree recording.*Received: top-level entries \['readme\.txt', 'static1'\]"):
        recordings.read_recording(str(tmp_path / "other.zip"))
    import h5py

    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("responses", data=np.zeros((3, 2)))
    with pytest.raises(RecordingError, match=r"bad\.h5 is not a StaticImageSet.*images"):
        recordings.read_recording(str(tmp_path / "bad.h5"))
    movie = tmp_path / "movie"
    (movie / "data" / "responses").mkdir(parents=True)
    (movie / "data" / "videos").mkdir()
    with pytest.raises(RecordingError, match="movie recording"):
        recordings.read_recording(str(movie))


def test_object_arrays_and_short_meta_are_named(tmp_path):
    path = recordings.write_recording(str(tmp_path / "scan"), make_recording())
    np.save(os.path.join(path, "meta/trials/tiers.npy"), np.array(["train"] * 24, dtype=object), allow_pickle=True)
    with pytest.raises(RecordingError, match=r"scan/meta/trials/tiers\.npy cannot be read as a plain NumPy array"):
        recordings.read_recording(path, KEEP_SIZE)
    np.save(os.path.join(path, "meta/trials/tiers.npy"), make_recording().tiers)
    np.save(os.path.join(path, "meta/trials/frame_trial_ts.npy"), np.array([object()] * 24, dtype=object), allow_pickle=True)
    loaded = recordings.read_recording(path, KEEP_SIZE)  # a further unreadable meta array is skipped, and said so
    assert "frame_trial_ts" not in loaded.trial_meta
    assert "meta/trials/frame_trial_ts.npy" in loaded.metadata["unreadable_meta_skipped"][0]
    np.save(os.path.join(path, "meta/trials/tiers.npy"), np.array(["train"] * 10))
    with pytest.raises(RecordingError, match=r"tiers\.npy has 10 entries but the trial files go up to 23"):
        recordings.read_recording(path, KEEP_SIZE)


def test_ids_must_name_the_same_image_across_scans():
    first = make_recording(seed=0)
    second = make_recording(seed=1, metadata={"source": "/data/scan2"})
    with pytest.raises(RecordingError, match=r"/data/scan2 and in-memory show different images under the same id"):
        recordings.check_ids_agree_across_scans([first, second])
    recordings.check_ids_agree_across_scans([first, dataclasses.replace(first, responses=first.responses + 1.0)])


def test_select_trials_and_neurons_keep_meta_aligned():
    recording = dataclasses.replace(
        make_recording(), neuron_meta={"area": np.array(list("abcde"))}, trial_meta={"trial_idx": np.arange(24) * 10}
    )
    subset = recording.select_neurons([0, 3]).select_trials(np.arange(24) >= 4)
    assert subset.neuron_meta["area"].tolist() == ["a", "d"]
    np.testing.assert_array_equal(subset.trial_meta["trial_idx"], np.arange(4, 24) * 10)


def _hdf5_with_images(path, images):
    import h5py

    n = len(images)
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["responses"] = rng.gamma(2.0, size=(n, 4))
        f["behavior"] = rng.normal(size=(n, 2))
        f["pupil_center"] = rng.normal(size=(n, 2))
        ids = np.arange(n) % (n - 2)  # the first two images shown twice, as test images
        f["tiers"] = np.where(ids < 2, "test", "train").astype("S")
        f["item_info/image_id"] = ids
        f["neurons/unit_ids"] = np.arange(4)
    return str(path)


def _pictures(low, high, n=12):
    """n images, the last two repeating the first two (as ``_hdf5_with_images`` numbers them)."""
    pictures = np.random.default_rng(5).uniform(low, high, size=(n, 1, 36, 64)).astype(np.float32)
    pictures[n - 2:] = pictures[:2]
    return pictures


def test_floats_slightly_above_one_are_clipped_with_a_count_not_divided_by_255(tmp_path):
    # The case reported: HDF5 images in [0, 1.49] after an interpolation overshoot.
    from neuroreg_tf.neural.recordings.images import ImageRangeWarning

    pictures = _pictures(0.0, 1.0)
    pictures[2, 0, :3, :5] = 1.49
    path = _hdf5_with_images(tmp_path / "overshoot.h5", pictures)
    with pytest.warns(ImageRangeWarning, match=r"overshoot\.h5:/images: 15 of \d+ pixel values lie outside \[0, 1\]"):
        recording = recordings.read_recording(path)
    assert recording.metadata["images_clipped_pixels"] == 15
    assert "images_rescaled_from_0_255" not in recording.metadata
    expected = np.clip(pictures[:, 0], 0, 1)  # 36 x 64 already: no resize
    np.testing.assert_allclose(recording.images[..., 0], expected, atol=1e-6)


@pytest.mark.parametrize("low, high, scale, divisor", [
    (0.0, 200.0, "auto", 255.0),  # clearly 0..255
    (0.0, 0.9, "255", 255.0),  # told so: a dark 0..255 recording
    (0.0, 3.0, "unit", 1.0),  # told to clip
])
def test_0_255_floats_are_rescaled_only_when_clear_or_told(tmp_path, low, high, scale, divisor):
    import warnings

    pictures = _pictures(low, high)
    path = _hdf5_with_images(tmp_path / "images.h5", pictures)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        recording = recordings.read_recording(path, ReadOptions(images=ImageOptions(scale=scale)))
    np.testing.assert_allclose(recording.images[..., 0], np.clip(pictures[:, 0] / divisor, 0, 1), atol=1e-6)


@pytest.mark.parametrize("low, high", [(0.0, 3.0), (0.0, 9.0), (-2.0, 200.0)])
def test_ambiguous_float_ranges_are_refused_naming_the_option(tmp_path, low, high):
    path = _hdf5_with_images(tmp_path / "ambiguous.h5", _pictures(low, high))
    with pytest.raises(RecordingError, match=r"ambiguous\.h5:/images: .*--config\.images\.scale=unit.*"
                                             r"--config\.images\.scale=255.*Received: values in"):
        recordings.read_recording(path)


def test_stimulus_sets_decide_their_scale_by_the_same_rule(tmp_path):
    from neuroreg_tf.errors import InputError
    from neuroreg_tf.neural.recordings.images import ImageRangeWarning
    from neuroreg_tf.neural.stimulus_sets import open_stimulus_set

    pictures = _pictures(0.0, 1.0)[:, 0]
    pictures[0, :2, :2] = 1.3
    np.save(tmp_path / "overshoot.npy", pictures)
    with pytest.warns(ImageRangeWarning, match="4 of"):
        stimuli = open_stimulus_set(str(tmp_path / "overshoot.npy"))
    np.testing.assert_allclose(stimuli.read(0, 12)[..., 0], np.clip(pictures, 0, 1), atol=1e-6)
    np.save(tmp_path / "ambiguous.npy", pictures * 3)
    with pytest.raises(InputError, match="--config.images.scale=unit"):
        open_stimulus_set(str(tmp_path / "ambiguous.npy"))
    assert open_stimulus_set(str(tmp_path / "ambiguous.npy"), ImageOptions(scale="255")).read(0, 1).max() < 0.02


def test_a_zip_member_with_damaged_compressed_data_is_named(tmp_path):
    path, *_ = write_release_like(str(tmp_path / "release"), size=(36, 64))
    deflated = str(tmp_path / "deflated.zip")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    with zipfile.ZipFile(deflated) as archive:
        info = archive.getinfo("release/data/responses/3.npy")
    data = bytearray(open(deflated, "rb").read())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in range(start + 2, start + info.compress_size - 2):
        data[offset] ^= 0x5A
    open(deflated, "wb").write(bytes(data))
    with pytest.raises(RecordingError, match=r"deflated\.zip:release/data/responses/3\.npy is damaged or truncated"):
        recordings.read_recording(deflated)


def test_hdf5_responses_stored_as_strings_are_refused_by_name(tmp_path):
    import h5py

    path = _hdf5_with_images(tmp_path / "strings.h5", _pictures(0.0, 1.0))
    with h5py.File(path, "a") as f:
        responses = f["responses"][()]
        del f["responses"]
        f["responses"] = responses.astype("S8")
    with pytest.raises(RecordingError, match=r"strings\.h5:/responses must hold numbers; it holds \|S8 values"):
        recordings.read_recording(path)


def test_a_registered_format_is_read_written_and_accepted_by_the_build_config(tmp_path):
    # The registry's contract: one register_format call; read_recording, write_recording and
    # the build config's check of config.recordings then take its paths.
    from neuroreg_tf import cli
    from neuroreg_tf.errors import ConfigError
    from neuroreg_tf.neural.recordings import formats

    path, *_ = write_release_like(str(tmp_path / "release"), size=(36, 64))
    recording = recordings.read_recording(path)
    scan = str(tmp_path / "scan.tree")
    config = cli.load_config("build_target.py", "runlocal")
    config.recordings = scan
    written = []
    tree = formats.RecordingFormat(
        name="tree", description="a .tree folder", claims=lambda p: p.endswith(".tree"),
        read=lambda p, options: recordings.read_filetree(p, options),
        write=lambda p, rec, *, images=None: written.append(p) or recordings.write_filetree(p, rec, images=images),
    )
    formats.register_format(tree)
    try:
        assert formats.formats()[-1].name == "filetree", "the catch-all FileTree stays last"
        assert recordings.write_recording(scan, recording) and written == [scan]
        again = recordings.read_recording(scan)
        np.testing.assert_array_equal(again.responses, recording.responses)
        build_config.check_build_config(config)  # accepted
    finally:
        formats.unregister_format("tree")
    odd = tmp_path / "scan.npz"
    odd.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"A recording must be a StaticImageSet file \(\.h5/\.hdf5\) or a FileTree"):
        recordings.read_recording(str(odd))
    assert formats.find_format(scan).name == "filetree"  # unregistered: a folder, which the FileTree claims


@pytest.mark.parametrize("name", ["scan", "scan.h5"])
def test_several_image_id_arrays_must_group_the_trials_alike(tmp_path, name):
    """A release may carry more than one id array; the one read must not change which trials repeat."""
    recording = make_recording()  # frame_image_id, read last in SENSORIUM's order
    path = recordings.write_recording(str(tmp_path / name), recording)

    def add_id_array(values):
        if name.endswith(".h5"):
            import h5py

            with h5py.File(path, "a") as f:
                if "item_info/colorframeprojector_image_id" in f:
                    del f["item_info/colorframeprojector_image_id"]
                f["item_info/colorframeprojector_image_id"] = values
        else:
            np.save(os.path.join(path, "meta", "trials", "colorframeprojector_image_id.npy"), values)

    # The same images under other numbers: read (the first name in order), the same repeats.
    add_id_array(recording.image_ids * 7 + 1000)
    loaded = recordings.read_recording(path, KEEP_SIZE)
    assert loaded.image_id_name == "colorframeprojector_image_id"
    np.testing.assert_array_equal(loaded.image_ids, recording.image_ids * 7 + 1000)
    np.testing.assert_array_equal(loaded.repeated_responses(), recording.repeated_responses())
    # A grouping that differs (two repeated images merged into one id): refused, naming both arrays.
    merged = np.where(recording.image_ids == 1, 0, recording.image_ids)
    add_id_array(merged)
    with pytest.raises(RecordingError, match="colorframeprojector_image_id .* and frame_image_id .* group the trials"
                       "|two image ids that group the trials differently: colorframeprojector_image_id"):
        recordings.read_recording(path, KEEP_SIZE)
