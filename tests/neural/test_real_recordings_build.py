"""Targets from recordings as they are released: scans that saw different images, any stimulus
set (streamed) against the in-memory path and a hand computation, Fig. 1D labels, config checks."""

import dataclasses
import os

import numpy as np
import pytest

import oracles
from conftest import capturing_figures
from neuroreg_tf import cli, targets
from neuroreg_tf.errors import ConfigError, InputError
from neuroreg_tf.neural import build_config, build_targets, predictive, simulation
from neuroreg_tf.neural.recordings import ImageOptions
from neuroreg_tf.neural.stimulus_sets import open_stimulus_set

TINY_MODEL = predictive.PredictiveModelConfig(channels=4, max_epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def tiny():
    return simulation.simulate_experiment(preset="tiny", seed=2)


@pytest.fixture(scope="module")
def fitted(tiny):
    return [predictive.fit_predictive_model(r, TINY_MODEL, log=None) for r in tiny.recordings]


def other_images(recording, offset=10_000):
    """The same scan, but its images under other ids: as if it had seen other images."""
    return dataclasses.replace(recording, image_ids=recording.image_ids + offset, metadata={"source": "/data/scan_b"})


def hand_model_similarity(recordings, predictors, stimuli):
    """Eq 6 averaged over scans, by hand: w_a v_a-scaled predictions, centred, unit rows, mean of S."""
    matrices = []
    for recording, predictor in zip(recordings, predictors):
        oracle = np.unique(recording.image_ids)[np.unique(recording.image_ids, return_counts=True)[1] > 1]
        repeated = np.stack([recording.responses[recording.image_ids == i] for i in oracle]).astype(np.float64)
        weights = np.sqrt(repeated.mean(axis=1).var(axis=0, ddof=1) / repeated.var(axis=1, ddof=1).mean(axis=0))
        weights = weights * np.clip(predictor.test_correlation, 0, None)
        scaled = predictor.predict_neutral(stimuli).astype(np.float64) * weights
        centred = scaled - scaled.mean(axis=0)
        units = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        matrices.append(units @ units.T)
    return np.mean(matrices, axis=0)


def test_scans_that_saw_different_images_build_and_report_unavailable(tiny, fitted, tmp_path):
    scans = [tiny.recordings[0], other_images(tiny.recordings[1])]
    report = build_targets.build_targets(
        scans, str(tmp_path), extra_kinds=("neural_data", "oracle", "shuffle"), predictors=fitted, log=None,
    )
    primary = targets.load_target(os.path.join(str(tmp_path), "target"))
    assert primary.n_stimuli == 2 * len(tiny.stimuli)  # every image any scan saw
    assert sorted(report["targets"]) == ["neural_model", "shuffle"]
    for key in ("neural_data", "oracle", "fluctuation_std_across_scans", "fig1c_fluctuations"):
        assert "share 0" in report["unavailable"][key]
    assert report["fluctuation_std_across_scans"] is None  # unavailable, not 0
    assert all(isinstance(s["r_data_vs_oracle"], float) for s in report["scans"])  # per scan, own oracle images
    np.testing.assert_allclose(report["r_data_vs_oracle"], np.mean([s["r_data_vs_oracle"] for s in report["scans"]]))
    assert not os.path.exists(os.path.join(str(tmp_path), "targets", "neural_data"))
    with pytest.raises(InputError, match="primary target 'neural_data' cannot be built.*share 0 image"):
        build_targets.build_targets(scans, str(tmp_path / "x"), primary_kind="neural_data", extra_kinds=(), log=None)


def test_streamed_stimulus_set_equals_in_memory_and_hand_computation(tiny, fitted, tmp_path):
    in_memory = build_targets.build_targets(
        tiny.recordings, str(tmp_path / "memory"), extra_kinds=(), predictors=fitted, make_figures=False, log=None
    )
    np.save(tmp_path / "seen.npy", tiny.stimuli)
    streamed = build_targets.build_targets(
        tiny.recordings, str(tmp_path / "streamed"), extra_kinds=("shuffle", "random"), predictors=fitted,
        stimuli=open_stimulus_set(str(tmp_path / "seen.npy")), chunk=100, make_figures=False, log=None,
    )
    a = targets.load_target(in_memory["targets"]["neural_model"])
    b = targets.load_target(streamed["targets"]["neural_model"])
    np.testing.assert_allclose(b.stimuli, a.stimuli, atol=1e-6)
    index = np.arange(0, 312, 7)
    np.testing.assert_allclose(b.similarity(index), a.similarity(index), atol=1e-4)
    np.testing.assert_allclose(b.similarity(index), hand_model_similarity(tiny.recordings, fitted, tiny.stimuli)[np.ix_(index, index)], atol=1e-4)
    shuffle = targets.load_target(streamed["targets"]["shuffle"])
    permutation = np.random.default_rng(0).permutation(312)
    np.testing.assert_allclose(shuffle.similarity(index), b.similarity(permutation[index]), atol=1e-5)
    assert not os.path.exists(tmp_path / "streamed" / build_targets.PREPARED_STIMULI)


def test_target_on_images_no_scan_saw_from_a_folder_and_a_large_uint8_array(tiny, fitted, tmp_path):
    from PIL import Image

    from neuroreg_tf.data.stimuli import natural_stimuli

    new = np.round(natural_stimuli(24, height=72, width=128, seed=5)[..., 0] * 255).astype(np.uint8)
    folder = tmp_path / "new_images"
    folder.mkdir()
    for index, image in enumerate(new):
        Image.fromarray(image, mode="L").save(folder / f"img_{index:03d}.png")
    report = build_targets.build_targets(
        tiny.recordings, str(tmp_path / "out"), extra_kinds=(), predictors=fitted,
        stimuli=open_stimulus_set(str(folder), ImageOptions(size=(36, 64))), chunk=10, make_figures=False, log=None,
    )
    target = targets.load_target(report["targets"]["neural_model"])
    expected_stimuli = new.astype(np.float64).reshape(24, 36, 2, 64, 2).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(target.stimuli[..., 0], expected_stimuli, atol=1e-6)
    expected = hand_model_similarity(tiny.recordings, fitted, expected_stimuli[..., None].astype(np.float32))
    np.testing.assert_allclose(target.full_matrix(), expected, atol=1e-4)
    assert report["stimuli"]["stimuli_order"] == "sorted file names"
    names = open(tmp_path / "out" / build_targets.STIMULUS_NAMES).read().split()
    assert names == sorted(f"img_{i:03d}.png" for i in range(24))


def hand_fig1d_numbers(recording, predictor):
    """One scan's Fig. 1D by loops (Eq 1-3) and by hand (Eq 6) on its own oracle images:
    (S_oracle, single-trial S over trials, S_model, r(S_data, S_oracle), r(S_model, S_oracle))."""
    ids, counts = np.unique(recording.image_ids, return_counts=True)
    oracle = ids[counts > 1]
    repeated = np.stack([recording.responses[recording.image_ids == i] for i in oracle]).astype(np.float64)
    n_images, n_repeats, n_neurons = repeated.shape
    weights = oracles.snr_weights(repeated)
    s_oracle = oracles.oracle_similarity(repeated, weights)
    trials = oracles.centred_cosine(repeated.reshape(n_images * n_repeats, n_neurons), weights)
    oracle_values, trial_values = [], []
    for i in range(n_images):
        for j in range(i + 1, n_images):
            for ti in range(n_repeats):
                for tj in range(n_repeats):
                    oracle_values.append(s_oracle[i, j])
                    trial_values.append(trials[i * n_repeats + ti, j * n_repeats + tj])
    images = np.stack([recording.images[np.flatnonzero(recording.image_ids == i)[0]] for i in oracle])
    s_model = hand_model_similarity([recording], [predictor], images)
    r_data = oracles.pearson(oracle_values, trial_values)
    r_model = oracles.pearson(oracles.upper_pairs(s_model), oracles.upper_pairs(s_oracle))
    return s_oracle, s_model, r_data, r_model


def test_fig1d_shows_and_labels_the_reported_numbers_per_scan(tiny, fitted, tmp_path):
    with capturing_figures() as saved:
        report = build_targets.build_targets(tiny.recordings, str(tmp_path), extra_kinds=(), predictors=fitted, log=None)
    labels = report["fig1d_labels"]
    assert len(labels["panels"]) == 2
    axes = saved["fig1d_scatter.png"].axes
    for h, (panel, scan) in enumerate(zip(labels["panels"], report["scans"])):
        s_oracle, s_model, r_data, r_model = hand_fig1d_numbers(tiny.recordings[h], fitted[h])
        # float32 predictions and similarities: r agrees to ~1e-6.
        assert scan["r_data_vs_oracle"] == pytest.approx(r_data, abs=1e-6)
        assert scan["r_model_vs_oracle"] == pytest.approx(r_model, abs=1e-5)
        assert panel["title"].startswith(f"scan {h + 1}")
        assert panel["legend"] == [f"S_data, r = {r_data:.2f}", f"S_model, r = {r_model:.2f}"]
        data_points, model_points = (c.get_offsets() for c in axes[h].collections)
        assert len(data_points) == 66 * 16  # every oracle pair i < j x every repeat pair: all plotted
        assert oracles.pearson(data_points[:, 0], data_points[:, 1]) == pytest.approx(r_data, abs=1e-6)
        np.testing.assert_allclose(model_points[:, 0], oracles.upper_pairs(s_oracle), atol=1e-6)
        np.testing.assert_allclose(model_points[:, 1], oracles.upper_pairs(s_model), atol=1e-5)
        assert [t.get_text() for t in axes[h].get_legend().get_texts()] == panel["legend"]
    mean_data = np.mean([s["r_data_vs_oracle"] for s in report["scans"]])
    mean_model = np.mean([s["r_model_vs_oracle"] for s in report["scans"]])
    assert report["r_data_vs_oracle"] == pytest.approx(mean_data, abs=1e-12)
    assert report["r_model_vs_oracle"] == pytest.approx(mean_model, abs=1e-12)
    assert f"r(S_data, S_oracle) = {mean_data:.2f}" in labels["title"]
    assert f"r(S_model, S_oracle) = {mean_model:.2f}" in labels["title"]
    assert labels["title"].startswith("SIMULATED")
    assert saved["fig1d_scatter.png"]._suptitle.get_text() == labels["title"]


def test_scans_with_different_image_sizes_are_refused_naming_both(tiny):
    small = dataclasses.replace(
        tiny.recordings[1], images=tiny.recordings[1].images[:, ::2, ::2], metadata={"source": "/data/small.h5"}
    )
    with pytest.raises(InputError, match=r"same size.*--config\.images\.size=36,64.*in-memory: 36x64, /data/small\.h5: 18x32"):
        build_targets.build_targets([tiny.recordings[0], small], "/tmp/unused", extra_kinds=(), log=None)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("target.kind", "imagenet", r"config\.target\.kind: must be one of \("),
        ("target.extra_kinds", "oracle,bogus", r"config\.target\.extra_kinds: .*\['bogus'\] unknown"),
        ("simulation.preset", "huge", r"config\.simulation\.preset: must be one of"),
        ("model.max_epochs", -1, r"config\.model\.max_epochs: must be a positive integer.*Received: config\.model\.max_epochs=-1"),
        ("model.readout", "dense", r"config\.model\.readout: must be one of"),
        ("stimuli", "/no/such/images", r"config\.stimuli: no stimulus set there"),
        ("recordings", "/no/such/scan.zip", r"config\.recordings: no recording at '/no/such/scan.zip'"),
        ("images.color", "purple", r"config\.images\.color: color must be one of"),
        ("images.size", "36x", r"config\.images\.size: A size must be 'height,width'"),
        ("read.dead_neurons", "keep", r"config\.read\.dead_neurons: must be one of \('drop', 'error'\)"),
        ("streaming.projection_dims", -2, r"config\.streaming\.projection_dims"),
        ("target.seed", -1, r"config\.target\.seed: must be >= 0"),
    ],
)
def test_check_build_config_names_the_key(key, value, message):
    config = cli.load_config("build_target.py")
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
        build_config.check_build_config(config)


def test_check_build_config_refuses_ground_truth_and_foreign_kinds_with_recordings(tmp_path):
    config = cli.load_config("build_target.py")
    config.recordings = str(tmp_path)
    with pytest.raises(ConfigError, match=r"config\.target\.extra_kinds: 'ground_truth' exists only for SIMULATED data"):
        build_config.check_build_config(config)
    config = cli.load_config("build_target.py", "recordings")
    config.recordings = str(tmp_path)
    build_config.check_build_config(config)
    config.stimuli = str(tmp_path)
    config.target.kind = "neural_data"
    with pytest.raises(ConfigError, match=r"config\.target\.kind: with a stimulus set of its own \(config\.stimuli\) the "
                                          r"primary kind must be one built on it: \['neural_model', 'shuffle', 'random', 'vgg'\]"):
        build_config.check_build_config(config)
    for arg in (None, "small", "demo", "runlocal", "paper", "recordings"):
        config = cli.load_config("build_target.py", arg)
        if arg == "recordings":
            config.recordings = str(tmp_path)
        build_config.check_build_config(config)
