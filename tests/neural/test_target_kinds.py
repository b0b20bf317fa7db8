"""Every target kind: definitions against independent formulas, files, ground-truth recovery."""

import os

import numpy as np
import pytest

from neuroreg_tf import similarity, targets
from neuroreg_tf.neural import pretrained_kinds, predictive, simulation, streaming, target_kinds


def pair_r(a, b):
    """Pearson r over the i < j pairs, by NumPy (independent of the library)."""
    rows, cols = np.triu_indices(len(a), 1)
    return float(np.corrcoef(a[rows, cols], b[rows, cols])[0, 1])


@pytest.fixture(scope="module")
def tiny():
    return simulation.simulate_experiment(preset="tiny", seed=1)


def test_data_embedding_is_eq_1_and_2_on_first_trials(tiny):
    recording = tiny.recordings[0]
    scan = target_kinds.analyse_scan(recording)
    ids = np.arange(20, 60)
    embedding = target_kinds.data_embedding(scan, ids)
    repeated = np.stack([recording.responses[recording.image_ids == i] for i in scan.oracle_ids])
    signal = repeated.mean(axis=1).var(axis=0, ddof=1)
    noise = repeated.var(axis=1, ddof=1).mean(axis=0)
    weights = np.sqrt(signal / noise)
    rows = np.array([recording.responses[np.flatnonzero(recording.image_ids == i)[0]] for i in ids]) * weights
    centred = rows - rows.mean(axis=0)
    expected = centred @ centred.T / np.outer(np.linalg.norm(centred, axis=1), np.linalg.norm(centred, axis=1))
    np.testing.assert_allclose(embedding @ embedding.T, expected, atol=1e-6)


def test_average_embeddings_average_the_similarities():
    rng = np.random.default_rng(0)
    parts = [similarity.stimulus_embedding(rng.normal(size=(8, d))) for d in (5, 9, 4)]
    averaged = target_kinds.average_embeddings(parts)
    np.testing.assert_allclose(averaged @ averaged.T, np.mean([p @ p.T for p in parts], axis=0), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(averaged, axis=1), 1.0, atol=1e-6)


def test_shuffle_permutes_stimulus_identities():
    embedding = similarity.stimulus_embedding(np.random.default_rng(1).normal(size=(10, 6)))
    shuffled, permutation = target_kinds.shuffle_embedding(embedding, seed=4)
    original = embedding @ embedding.T
    np.testing.assert_allclose(shuffled @ shuffled.T, original[np.ix_(permutation, permutation)], atol=1e-12)
    np.testing.assert_allclose(np.sort(similarity.upper_triangle(shuffled @ shuffled.T)), np.sort(similarity.upper_triangle(original)), atol=1e-12)
    assert not np.array_equal(permutation, np.arange(10))


def test_random_target_has_the_requested_spread():
    embedding = target_kinds.random_embedding(600, 0.2, seed=0)
    matrix = embedding @ embedding.T
    targets.validate_similarity_matrix(np.clip(matrix, -1, 1))
    assert np.std(similarity.upper_triangle(matrix)) == pytest.approx(0.2, rel=0.1)
    with pytest.raises(ValueError, match="Received: spread=1.5"):
        target_kinds.random_embedding(10, 1.5)


def test_pair_correlation_from_embeddings_matches_full_matrices():
    rng = np.random.default_rng(2)
    first = similarity.stimulus_embedding(rng.normal(size=(40, 6)))
    second = similarity.stimulus_embedding(first[:, :4] + 0.5 * rng.normal(size=(40, 4)))
    exact = pair_r(first @ first.T, second @ second.T)
    assert target_kinds.pair_correlation_from_embeddings(first, second) == pytest.approx(exact, abs=1e-10)
    first = similarity.stimulus_embedding(rng.normal(size=(300, 6)))
    second = similarity.stimulus_embedding(first[:, :4] + 0.5 * rng.normal(size=(300, 4)))
    exact = pair_r(first @ first.T, second @ second.T)
    sampled = target_kinds.pair_correlation_from_embeddings(first, second, max_pairs=20_000, seed=1)
    assert sampled == pytest.approx(exact, abs=0.03)


def test_streamed_embedding_equals_in_memory(tmp_path):
    rng = np.random.default_rng(3)
    responses = rng.gamma(2.0, 1.0, size=(50, 7))
    images = rng.uniform(size=(50, 4, 5, 1)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, size=7)
    path = streaming.stream_embedding_target(
        str(tmp_path / "t"), n_stimuli=50, n_neurons=7, stimulus_shape=(4, 5),
        stimuli_fn=lambda a, b: images[a:b], responses_fn=lambda a, b: responses[a:b],
        weights=weights, simulated=True, chunk=16,
    )
    target = targets.load_target(path)
    assert target.kind == "neural_model" and target.simulated and target.form == "embedding"
    np.testing.assert_allclose(target.stimuli, images)
    expected = similarity.similarity_matrix(responses, weights)
    np.testing.assert_allclose(target.similarity(np.arange(50)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="Received: shape="):
        streaming.stream_embedding_target(
            str(tmp_path / "bad"), n_stimuli=50, n_neurons=7, stimulus_shape=(4, 5),
            stimuli_fn=lambda a, b: images[a:b, :3], responses_fn=lambda a, b: responses[a:b], simulated=True,
        )


def test_streamed_rows_replace_an_older_target_and_keep_stimuli_and_provenance(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(30, 4, 5, 1)).astype(np.float32)
    rows = similarity.stimulus_embedding(rng.normal(size=(30, 6)))
    path = str(tmp_path / "t")
    # An older target of matrix form in the same directory: the streamed one replaces it whole.
    targets.save_target(path, images[:, :, :, 0], similarity=np.eye(30), kind="pixel", simulated=False)
    streaming.stream_rows_target(path, n_stimuli=30, stimulus_shape=(4, 5), stimuli_fn=lambda a, b: images[a:b],
                                 rows_fn=lambda a, b: rows[a:b], dims=6, kind="shuffle", simulated=True,
                                 metadata={"permutation_seed": 7}, chunk=8)
    assert not os.path.exists(os.path.join(path, "similarity.npy"))
    target = targets.load_target(path)
    assert (target.kind, target.simulated, target.form) == ("shuffle", True, "embedding")
    assert target.stimuli.shape == (30, 4, 5, 1)
    np.testing.assert_array_equal(target.stimuli, images)
    np.testing.assert_allclose(target.similarity(np.arange(30)), rows @ rows.T, atol=1e-6)
    assert target.metadata["permutation_seed"] == 7


def test_streamed_average_names_a_wrong_chunk_and_a_zero_norm_row(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(20, 4, 5, 1)).astype(np.float32)
    responses = rng.gamma(2.0, 1.0, size=(20, 6))

    def stream(path, stimuli_fn=lambda a, b: images[a:b], responses_fn=lambda a, b: responses[a:b], **kwargs):
        return streaming.stream_averaged_embedding_target(
            str(tmp_path / path), n_stimuli=20, stimulus_shape=(4, 5), stimuli_fn=stimuli_fn,
            scans=[(responses_fn, 6, None)], simulated=True, chunk=8, **kwargs)

    with pytest.raises(ValueError, match=r"must return shape \(8, 4, 5, 1\) for rows \[8, 16\)\. Received: shape=\(8, 4, 4, 1\)"):
        stream("short", stimuli_fn=lambda a, b: images[a:b] if a == 0 else images[a:b, :, :4])
    flat = responses.copy()
    flat[13] = np.delete(flat, 13, axis=0).mean(axis=0)  # the mean of all 20 then: zero norm once centred
    with pytest.raises(ValueError, match=r"zero norm after centring\) in rows \[8, 16\)"):
        stream("flat", responses_fn=lambda a, b: flat[a:b])
    with pytest.raises(ValueError, match="projection_dims` must be positive"):
        stream("none", projection_dims=0)
    lines = []
    streaming.stream_averaged_embedding_target(
        str(tmp_path / "two"), n_stimuli=20, stimulus_shape=(4, 5), stimuli_fn=lambda a, b: images[a:b],
        scans=[(lambda a, b: responses[a:b], 6, None), (lambda a, b: responses[a:b, ::-1], 6, None)],
        simulated=True, chunk=8, log=lines.append)
    assert [line for line in lines if line.startswith("pass 1/2")] == [
        "pass 1/2, scan 1/2: mean response over stimuli", "pass 1/2, scan 2/2: mean response over stimuli"]
    one = targets.load_target(stream("one", projection_dims=1))  # one dimension is allowed: S is +-1
    np.testing.assert_allclose(np.abs(one.similarity(np.arange(20))), 1.0, atol=1e-6)


def test_finish_target_rejects_incomplete_directories(tmp_path):
    np.save(tmp_path / "stimuli.npy", np.zeros((3, 4, 4, 1), np.float32))
    with pytest.raises(targets.TargetError, match="exactly one of"):
        targets.finish_target(str(tmp_path), simulated=True)
    np.save(tmp_path / "embedding.npy", np.ones((3, 2), np.float32))
    with pytest.raises(targets.TargetError, match="unit vectors"):
        targets.finish_target(str(tmp_path), simulated=True)


def test_vgg_needs_a_weights_file_and_computes_centred_cosines(tmp_path):
    stimuli = np.random.default_rng(0).uniform(size=(4, 36, 64, 1)).astype(np.float32)
    with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
        pretrained_kinds.pretrained_embedding(stimuli, str(tmp_path / "missing.h5"))
    features = pretrained_kinds.pretrained_features(stimuli, "random")
    assert features.shape == (4, 9 * 16 * 256)
    embedding = pretrained_kinds.pretrained_embedding(stimuli, "random")
    np.testing.assert_allclose(embedding @ embedding.T, similarity.similarity_matrix(features), atol=1e-5)


def test_pretrained_layer_kind_takes_any_keras_application_and_layer():
    """The general kind: another architecture and layer give that layer's features (VGG16 block2)."""
    stimuli = np.random.default_rng(1).uniform(size=(3, 36, 64, 1)).astype(np.float32)
    features = pretrained_kinds.pretrained_features(stimuli, "random", architecture="VGG16", layer="block2_conv2",
                                                    preprocessing="vgg16")
    assert features.shape == (3, 18 * 32 * 128)  # block 2: input / 2, 128 channels
    with pytest.raises(ValueError, match="must name a layer of VGG16"):
        pretrained_kinds.pretrained_features(stimuli, "random", architecture="VGG16", layer="nope",
                                             preprocessing="vgg16")
    with pytest.raises(ValueError, match="keras.applications network"):
        pretrained_kinds.pretrained_features(stimuli, "random", architecture="NoSuchNet", preprocessing="vgg16")


def test_model_target_recovers_the_ground_truth_better_than_single_trials():
    """On simulated data S_model is closer to the noiseless similarity than S_data."""
    experiment = simulation.simulate_experiment(
        n_single=2000, n_oracle=40, n_repeats=6, n_scans=1, neurons_per_scan=100, population_size=300, seed=0
    )
    scan = target_kinds.analyse_scan(experiment.recordings[0])
    scan.predictor = predictive.fit_predictive_model(
        scan.recording, predictive.PredictiveModelConfig(max_epochs=8), log=None
    )
    ids, images, _ = scan.recording.unique_images()
    truth = similarity.stimulus_embedding(experiment.ground_truth_rates(ids))
    r_data = target_kinds.pair_correlation_from_embeddings(target_kinds.data_embedding(scan, ids), truth)
    r_model = target_kinds.pair_correlation_from_embeddings(target_kinds.model_embedding(scan, images), truth)
    print(f"r(S_data, S_truth) = {r_data:.3f}, r(S_model, S_truth) = {r_model:.3f}")
    assert r_model > r_data + 0.04


def test_streamed_scan_average_is_exact_and_projection_approximates(tmp_path):
    rng = np.random.default_rng(6)
    images = rng.uniform(size=(60, 4, 5, 1)).astype(np.float32)
    scans = [rng.gamma(2.0, 1.0, size=(60, d)) for d in (30, 50)]
    weights = [rng.uniform(0.5, 2.0, size=30), None]
    specs = [(lambda a, b, r=r: r[a:b], r.shape[1], w) for r, w in zip(scans, weights)]
    exact_path = streaming.stream_averaged_embedding_target(
        str(tmp_path / "exact"), n_stimuli=60, stimulus_shape=(4, 5), stimuli_fn=lambda a, b: images[a:b],
        scans=specs, simulated=True, chunk=25,
    )
    expected = (similarity.similarity_matrix(scans[0], weights[0]) + similarity.similarity_matrix(scans[1])) / 2
    np.testing.assert_allclose(targets.load_target(exact_path).full_matrix(), expected, atol=1e-5)
    projected = targets.load_target(
        streaming.stream_averaged_embedding_target(
            str(tmp_path / "projected"), n_stimuli=60, stimulus_shape=(4, 5), stimuli_fn=lambda a, b: images[a:b],
            scans=specs, projection_dims=4000, simulated=True, chunk=25,
        )
    )
    assert projected.embedding.shape == (60, 4000)
    difference = projected.full_matrix() - expected
    assert np.abs(similarity.upper_triangle(difference)).max() < 0.08
    assert pair_r(projected.full_matrix(), expected) > 0.98


