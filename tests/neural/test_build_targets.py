"""Building every target kind from scans: files, report, figures, errors."""

import json
import os

import numpy as np
import pytest

from neuroreg_tf import similarity, targets
from neuroreg_tf.neural import build_targets, predictive, simulation, target_kinds


@pytest.fixture(scope="module")
def tiny():
    return simulation.simulate_experiment(preset="tiny", seed=1)


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("built"))
    messages = []
    report = build_targets.build_targets(
        tiny.recordings,
        out,
        extra_kinds=("neural_data", "oracle", "shuffle", "random", "ground_truth", "vgg"),
        predictor_config=predictive.PredictiveModelConfig(channels=4, max_epochs=1, batch_size=32),
        experiment=tiny,
        vgg_weights="random",
        log=messages.append,
    )
    return out, report, messages


def test_build_targets_writes_every_kind_loadable(built, tiny):
    out, report, messages = built
    for kind in ("neural_data", "oracle", "shuffle", "random", "ground_truth", "vgg"):
        target = targets.load_target(os.path.join(out, "targets", kind))
        assert target.kind == kind and target.simulated
        assert "SIMULATED" in target.metadata["label"]
        block = target.similarity(np.array([0, 2, 5]))
        assert block.shape == (3, 3)
        np.testing.assert_allclose(np.diag(block), 1.0)
    primary = targets.load_target(os.path.join(out, "target"))
    assert primary.kind == "neural_model" and primary.n_stimuli == 312
    np.testing.assert_array_equal(primary.stimuli, tiny.stimuli)
    oracle = targets.load_target(os.path.join(out, "targets", "oracle"))
    assert oracle.n_stimuli == 12
    scans = [target_kinds.analyse_scan(r) for r in tiny.recordings]
    expected = np.mean([s.oracle_similarity for s in scans], axis=0)
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(oracle.full_matrix(), expected, atol=1e-5)
    truth = targets.load_target(os.path.join(out, "targets", "ground_truth"))
    np.testing.assert_allclose(
        truth.full_matrix(), similarity.similarity_matrix(tiny.ground_truth_rates()), atol=1e-5
    )
    shuffle = targets.load_target(os.path.join(out, "targets", "shuffle"))
    assert shuffle.metadata["permutation_seed"] == 0
    assert any("fitting 2 predictive model(s)" in m for m in messages)
    assert all(scan["epochs_trained"] >= 1 for scan in json.load(open(os.path.join(out, "target_report.json")))["scans"])


def test_report_has_the_required_keys_and_figures(built):
    out, report, _ = built
    with open(os.path.join(out, "target_report.json")) as f:
        on_disk = json.load(f)
    for key in ("kind", "n_stimuli", "simulated", "r_data_vs_oracle", "r_model_vs_oracle", "r_data_vs_truth", "r_model_vs_truth"):
        assert key in on_disk
    assert on_disk["simulated"] is True and on_disk["n_stimuli"] == 312
    assert -1 <= on_disk["r_model_vs_truth"] <= 1
    assert on_disk["fluctuation_std_across_scans"] < on_disk["fluctuation_std_across_repeats"]
    for path in on_disk["figures"]:
        assert os.path.getsize(path) > 1000


def test_build_targets_rejects_impossible_requests(tiny, tmp_path):
    with pytest.raises(ValueError, match="only for simulated"):
        build_targets.build_targets(tiny.recordings, str(tmp_path), primary_kind="neural_data", extra_kinds=("ground_truth",))
    with pytest.raises(ValueError, match="cannot be downloaded"):
        build_targets.build_targets(tiny.recordings, str(tmp_path), primary_kind="neural_data", extra_kinds=("vgg",))
    with pytest.raises(ValueError, match="Received: kinds=\\['imagenet'\\]"):
        build_targets.build_targets(tiny.recordings, str(tmp_path), primary_kind="imagenet")


def test_streamed_model_target_equals_the_in_memory_one(tmp_path, tiny):
    scans = [target_kinds.analyse_scan(r) for r in tiny.recordings]
    fitted_config = predictive.PredictiveModelConfig(channels=4, max_epochs=1, batch_size=32)
    for scan in scans:
        scan.predictor = predictive.fit_predictive_model(scan.recording, fitted_config, log=None)
    in_memory = target_kinds.average_embeddings(target_kinds.model_embedding(s, tiny.stimuli) for s in scans)
    path = target_kinds.stream_model_target(
        str(tmp_path / "streamed"), scans, lambda a, b: tiny.stimuli[a:b], len(tiny.stimuli), (36, 64),
        simulated=True, chunk=100,
    )
    streamed = targets.load_target(path)
    assert streamed.kind == "neural_model" and "SIMULATED" in streamed.metadata["label"]
    np.testing.assert_allclose(streamed.similarity(np.arange(50)), (in_memory @ in_memory.T)[:50, :50], atol=1e-4)
