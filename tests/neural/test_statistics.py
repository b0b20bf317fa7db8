"""Neural statistics against independent, loop-based formulas."""

import itertools

import numpy as np
import pytest

from neuroreg_tf import similarity
from neuroreg_tf.neural import statistics


@pytest.fixture
def repeated():
    rng = np.random.default_rng(3)
    signal = rng.gamma(2.0, 1.0, size=(6, 1, 7))
    return signal + rng.normal(0.0, 0.5, size=(6, 4, 7))


def pearson(a, b):
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def test_oracle_correlation_matches_loop(repeated):
    n_images, n_repeats, n_neurons = repeated.shape
    result = statistics.oracle_correlation(repeated)
    for neuron in range(n_neurons):
        trials, others = [], []
        for image in range(n_images):
            for repeat in range(n_repeats):
                trials.append(repeated[image, repeat, neuron])
                rest = [repeated[image, t, neuron] for t in range(n_repeats) if t != repeat]
                others.append(sum(rest) / len(rest))
        assert result[neuron] == pytest.approx(pearson(trials, others), abs=1e-10)


def test_oracle_correlation_is_one_without_noise():
    signal = np.random.default_rng(0).normal(size=(5, 1, 3))
    np.testing.assert_allclose(statistics.oracle_correlation(np.repeat(signal, 4, axis=1)), 1.0)


def test_prediction_correlation_matches_corrcoef():
    rng = np.random.default_rng(1)
    responses = rng.normal(size=(30, 4))
    predictions = responses + rng.normal(size=(30, 4))
    expected = [np.corrcoef(responses[:, a], predictions[:, a])[0, 1] for a in range(4)]
    np.testing.assert_allclose(statistics.prediction_correlation(responses, predictions), expected)
    with pytest.raises(ValueError, match="Received: responses.shape"):
        statistics.prediction_correlation(responses, predictions[:, :3])


def test_feve_is_one_for_the_true_mean_and_zero_for_a_constant():
    rng = np.random.default_rng(2)
    mean = rng.gamma(2.0, 1.0, size=(50, 1, 3))
    trials = mean + rng.normal(0.0, 0.3, size=(50, 200, 3))
    feve_truth = statistics.fraction_explainable_variance_explained(trials, mean[:, 0])
    np.testing.assert_allclose(feve_truth, 1.0, atol=0.02)
    constant = np.broadcast_to(trials.mean(axis=(0, 1)), (50, 3))
    np.testing.assert_allclose(statistics.fraction_explainable_variance_explained(trials, constant), 0.0, atol=0.02)
    fraction = statistics.explainable_variance_fraction(trials)
    expected = mean[:, 0].var(axis=0) / (mean[:, 0].var(axis=0) + 0.09)
    np.testing.assert_allclose(fraction, expected, rtol=0.1)


def test_fluctuations_match_equations_4_and_5():
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(5, 1, 40))
    scans = [signal[..., rng.permutation(40)[:20]] + rng.normal(0, 0.7, (5, 3, 20)) for _ in range(3)]
    delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(scans)
    oracles = [similarity.oracle_similarity(s, similarity.snr_weights(s)) for s in scans]
    mean = np.mean(oracles, axis=0)
    expected_scan = [oracles[h][i, j] - mean[i, j] for h in range(3) for i in range(5) for j in range(i + 1, 5)]
    np.testing.assert_allclose(delta_scan, expected_scan)
    expected_repeat = []
    for h, scan in enumerate(scans):
        weights = similarity.snr_weights(scan)
        trial_s = similarity.similarity_matrix(scan.reshape(15, 20), weights)
        for i in range(5):
            for t1, t2 in itertools.combinations(range(3), 2):
                expected_repeat.append(trial_s[3 * i + t1, 3 * i + t2] - oracles[h][i, i])
    np.testing.assert_allclose(delta_repeat, expected_repeat, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 scans"):
        statistics.scan_and_repeat_fluctuations(scans[:1])
    with pytest.raises(ValueError, match="same oracle images"):
        statistics.scan_and_repeat_fluctuations([scans[0], scans[1][:4]])


def test_trial_pair_similarities_average_to_oracle_similarity(repeated):
    weights = similarity.snr_weights(repeated)
    pairs = statistics.trial_pair_similarities(repeated, weights)
    oracle = similarity.oracle_similarity(repeated, weights)
    np.testing.assert_allclose(pairs.mean(axis=1), similarity.upper_triangle(oracle), atol=1e-12)
    full = similarity.similarity_matrix(repeated.reshape(24, 7), weights)
    assert pairs[0, 4 * 1 + 2] == pytest.approx(full[0 * 4 + 1, 1 * 4 + 2])
