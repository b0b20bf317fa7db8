"""Neural statistics against independent, loop-based formulas."""

import numpy as np
import pytest

import oracles
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


def test_explainable_variance_and_feve_match_loops(repeated):
    n_images, n_repeats, n_neurons = repeated.shape
    predictions = repeated.mean(axis=1) + np.random.default_rng(8).normal(0.0, 0.4, size=(n_images, n_neurons))
    fraction = statistics.explainable_variance_fraction(repeated)
    feve = statistics.fraction_explainable_variance_explained(repeated, predictions)
    per_trial = np.repeat(predictions[:, None, :], n_repeats, axis=1) + 0.1
    feve_per_trial = statistics.fraction_explainable_variance_explained(repeated, per_trial)
    for a in range(n_neurons):
        trials = [repeated[i, t, a] for i in range(n_images) for t in range(n_repeats)]
        total = oracles.variance(trials)
        noise = sum(oracles.variance(repeated[i, :, a]) for i in range(n_images)) / n_images
        assert fraction[a] == pytest.approx((total - noise) / total, rel=1e-10)
        mse = sum((repeated[i, t, a] - predictions[i, a]) ** 2 for i in range(n_images) for t in range(n_repeats))
        mse /= n_images * n_repeats
        assert feve[a] == pytest.approx(1 - (mse - noise) / (total - noise), rel=1e-10)
        mse = sum((repeated[i, t, a] - per_trial[i, t, a]) ** 2 for i in range(n_images) for t in range(n_repeats))
        mse /= n_images * n_repeats
        assert feve_per_trial[a] == pytest.approx(1 - (mse - noise) / (total - noise), rel=1e-10)
    with pytest.raises(ValueError, match="predictions.shape=\\(6, 5\\)"):
        statistics.fraction_explainable_variance_explained(repeated, predictions[:, :5])


def test_degenerate_neurons_give_the_documented_values():
    """A constant neuron: correlations 0, explainable fraction 0; no explainable variance: FEVE NaN."""
    rng = np.random.default_rng(6)
    repeated = rng.normal(size=(5, 3, 3))
    repeated[:, :, 1] = 2.0  # constant
    repeated[:, :, 2] = rng.normal(size=(1, 3))  # the same sequence for every image: no signal
    np.testing.assert_array_equal(statistics.oracle_correlation(repeated)[1], 0.0)
    np.testing.assert_array_equal(statistics.explainable_variance_fraction(repeated)[1], 0.0)
    feve = statistics.fraction_explainable_variance_explained(repeated, repeated.mean(axis=1))
    assert np.isnan(feve[1]) and np.isnan(feve[2]) and np.isfinite(feve[0])
    responses = rng.normal(size=(8, 2))
    predictions = np.stack([np.full(8, 3.0), rng.normal(size=8)], axis=1)
    v = statistics.prediction_correlation(responses, predictions)
    assert v[0] == 0.0 and v[1] == pytest.approx(oracles.pearson(responses[:, 1], predictions[:, 1]), rel=1e-10)


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
    expected_scan, expected_repeat = oracles.fluctuations(scans, [oracles.snr_weights(s) for s in scans])
    np.testing.assert_allclose(delta_scan, expected_scan, rtol=0, atol=1e-12)
    np.testing.assert_allclose(delta_repeat, expected_repeat, rtol=0, atol=1e-12)
    # Given weights are used as given (here: none for the first scan's 20 neurons but uniform 2).
    weights = [np.full(20, 2.0), rng.uniform(0.5, 2.0, 20), rng.uniform(0.5, 2.0, 20)]
    given_scan, given_repeat = statistics.scan_and_repeat_fluctuations(scans, weights)
    expected_scan, expected_repeat = oracles.fluctuations(scans, weights)
    np.testing.assert_allclose(given_scan, expected_scan, rtol=0, atol=1e-12)
    np.testing.assert_allclose(given_repeat, expected_repeat, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 scans"):
        statistics.scan_and_repeat_fluctuations(scans[:1])
    with pytest.raises(ValueError, match="same oracle images"):
        statistics.scan_and_repeat_fluctuations([scans[0], scans[1][:4]])


def test_trial_pair_similarities_are_the_single_trial_values_of_eq_3(repeated):
    n_images, n_repeats, n_neurons = repeated.shape
    weights = oracles.snr_weights(repeated)
    pairs = statistics.trial_pair_similarities(repeated, weights)
    trials = oracles.centred_cosine(repeated.reshape(n_images * n_repeats, n_neurons), weights)
    row = 0
    for i in range(n_images):
        for j in range(i + 1, n_images):
            expected = [trials[i * n_repeats + ti, j * n_repeats + tj] for ti in range(n_repeats) for tj in range(n_repeats)]
            np.testing.assert_allclose(pairs[row], expected, rtol=0, atol=1e-12)
            row += 1
    assert row == len(pairs)
    unweighted = statistics.trial_pair_similarities(repeated)
    trials = oracles.centred_cosine(repeated.reshape(n_images * n_repeats, n_neurons))
    assert unweighted[0, 1] == pytest.approx(trials[0, 1 * n_repeats + 1], abs=1e-12)


def test_oracle_correlation_with_two_repeats_correlates_each_trial_with_the_other():
    rng = np.random.default_rng(8)
    repeated = rng.gamma(2.0, 1.0, size=(9, 1, 3)) + rng.normal(0.0, 0.5, size=(9, 2, 3))
    for neuron in range(3):
        trials = repeated[:, :, neuron].reshape(-1)
        others = repeated[:, ::-1, neuron].reshape(-1)
        assert statistics.oracle_correlation(repeated)[neuron] == pytest.approx(oracles.pearson(trials, others), rel=1e-10)


def test_correlations_do_not_depend_on_the_response_units():
    # Responses in small units (all sums of squares below 1) give the same correlations.
    rng = np.random.default_rng(9)
    responses, predictions = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    repeated = rng.gamma(2.0, 1.0, size=(6, 1, 3)) + rng.normal(0.0, 0.5, size=(6, 4, 3))
    np.testing.assert_allclose(
        statistics.prediction_correlation(responses * 1e-3, predictions * 1e-3),
        [oracles.pearson(responses[:, a], predictions[:, a]) for a in range(3)], rtol=1e-10,
    )
    np.testing.assert_allclose(
        statistics.oracle_correlation(repeated * 1e-3), statistics.oracle_correlation(repeated), rtol=1e-10
    )


def test_feve_is_nan_without_explainable_variance_even_for_a_wrong_prediction():
    repeated = np.full((4, 3, 2), 2.0)
    rng = np.random.default_rng(1)
    repeated[:, :, 1] += 3 * rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(4, 3))
    wrong = np.full((4, 2), 5.0)
    feve = statistics.fraction_explainable_variance_explained(repeated, wrong)
    assert np.isnan(feve[0]) and np.isfinite(feve[1])


def test_fluctuations_accept_scans_of_different_sizes_but_not_different_repeats():
    rng = np.random.default_rng(10)
    signal = rng.normal(size=(5, 1, 40))
    scans = [signal[..., :20] + rng.normal(0, 0.7, (5, 3, 20)), signal[..., 20:35] + rng.normal(0, 0.7, (5, 3, 15))]
    delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(scans)
    expected_scan, expected_repeat = oracles.fluctuations(scans, [oracles.snr_weights(s) for s in scans])
    np.testing.assert_allclose(delta_scan, expected_scan, rtol=0, atol=1e-12)
    np.testing.assert_allclose(delta_repeat, expected_repeat, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(n_images, n_repeats\) per scan = \[\(5, 2\), \(5, 3\)\]"):
        statistics.scan_and_repeat_fluctuations([scans[0], scans[1][:, :2]])
