"""Brain alignment: the ridge readout, its leave-one-out shortcut, the noise ceiling, the data."""

import numpy as np
import pytest

from neuroreg_tf.models import resnet
from neuroreg_tf.neural import alignment, simulation

SMALL = alignment.AlignmentSettings(n_train=300, n_test=40, n_repeats=10, n_neurons=40, seed=1)
TINY_SIMULATION = dict(preset="tiny", seed=3)


def primal_ridge(features, responses, query, penalty):
    """Ridge with an unpenalised intercept by its normal equations (float64, by hand)."""
    mean_x, mean_y = features.mean(axis=0), responses.mean(axis=0)
    centred = features - mean_x
    coefficients = np.linalg.solve(centred.T @ centred + penalty * np.eye(features.shape[1]),
                                   centred.T @ (responses - mean_y))
    return (query - mean_x) @ coefficients + mean_y


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)) + 3.0
    responses = features @ rng.normal(size=(6, 3)) + rng.normal(size=(40, 3)) + 5.0
    query = rng.normal(size=(7, 6)) + 3.0
    everything = np.concatenate([features, query])
    ridge = alignment.KernelRidge(everything @ everything.T, np.arange(40), responses)
    return features, responses, query, ridge


@pytest.mark.parametrize("penalty", [1e-3, 0.1, 1.0, 10.0])
def test_the_dual_readout_predicts_as_the_primal_normal_equations(regression, penalty):
    features, responses, query, ridge = regression
    absolute = penalty * ridge.scale
    np.testing.assert_allclose(ridge.predict(np.arange(40, 47), penalty),
                               primal_ridge(features, responses, query, absolute), rtol=1e-7, atol=1e-7)
    # The scale is the mean squared norm of the centred training features.
    centred = features - features.mean(axis=0)
    assert ridge.scale == pytest.approx(np.mean(np.sum(centred**2, axis=1)))


@pytest.mark.parametrize("penalty", [0.01, 1.0, 30.0])
def test_leave_one_out_shortcut_equals_refitting_without_each_stimulus(regression, penalty):
    features, responses, _, ridge = regression
    absolute = penalty * ridge.scale  # the same absolute penalty in every refit
    expected = np.stack([
        primal_ridge(np.delete(features, i, axis=0), np.delete(responses, i, axis=0), features[i:i + 1], absolute)[0]
        for i in range(len(features))
    ])
    np.testing.assert_allclose(ridge.leave_one_out(penalty), expected, rtol=1e-7, atol=1e-7)


def test_choose_penalty_takes_the_best_leave_one_out_correlation(regression):
    _, responses, _, ridge = regression
    grid = (1e-3, 1.0, 1e3)
    scores = []
    for penalty in grid:
        predicted = ridge.leave_one_out(penalty)
        scores.append(np.mean([np.corrcoef(predicted[:, k], responses[:, k])[0, 1] for k in range(responses.shape[1])]))
    assert alignment.choose_penalty(ridge, grid) == grid[int(np.argmax(scores))]


def test_split_half_reliability_is_spearman_brown_of_even_and_odd_means():
    repeats = np.random.default_rng(1).normal(size=(30, 6, 4)) + np.arange(30)[:, None, None] * 0.1
    for neuron in range(4):
        half = np.corrcoef(repeats[:, [0, 2, 4], neuron].mean(axis=1), repeats[:, [1, 3, 5], neuron].mean(axis=1))[0, 1]
        assert alignment.split_half_reliability(repeats)[neuron] == pytest.approx(2 * half / (1 + half))


@pytest.fixture(scope="module")
def responses():
    return alignment.simulated_responses(TINY_SIMULATION, SMALL)


def test_simulated_responses_come_from_the_builds_population_on_new_stimuli(responses):
    population = simulation.experiment_population(**TINY_SIMULATION)
    assert responses.train_responses.shape == (SMALL.n_train, SMALL.n_neurons)
    assert responses.test_repeats.shape == (SMALL.n_test, SMALL.n_repeats, SMALL.n_neurons)
    # The noiseless rates are the population's drive for some 40 of its neurons, at neutral behaviour.
    drive = population.visual_drive(responses.test_stimuli)
    matches = [np.flatnonzero(np.all(np.isclose(drive.T, column), axis=1)) for column in responses.test_truth.T]
    assert all(len(m) == 1 for m in matches) and len({int(m[0]) for m in matches}) == SMALL.n_neurons
    # The stimuli are none of the build's own.
    build_stimuli = simulation.simulate_experiment(**TINY_SIMULATION).stimuli
    distances = np.abs(responses.test_stimuli[:, None] - build_stimuli[None, :]).reshape(SMALL.n_test, len(build_stimuli), -1)
    assert distances.max(axis=-1).min() > 0.01
    # Trials scatter around the rates (mean over repeats tracks them), and the same seed gives the same data.
    assert np.corrcoef(responses.test_repeats.mean(axis=1).ravel(), responses.test_truth.ravel())[0, 1] > 0.7
    again = alignment.simulated_responses(TINY_SIMULATION, SMALL)
    np.testing.assert_array_equal(again.train_responses, responses.train_responses)


def test_the_ceiling_is_what_the_noiseless_rates_themselves_reach(responses):
    """A perfect predictor (the SIMULATED neurons' noiseless rates) scores 1 once normalised."""
    reliability = alignment.split_half_reliability(responses.test_repeats)
    means = responses.test_repeats.mean(axis=1)
    r = np.array([np.corrcoef(responses.test_truth[:, k], means[:, k])[0, 1] for k in range(SMALL.n_neurons)])
    reliable = reliability >= 0.1
    assert reliable.sum() > SMALL.n_neurons // 2
    assert 0.9 < np.median(r[reliable] / np.sqrt(reliability[reliable])) < 1.1


def test_a_readout_of_the_rates_approaches_the_ceiling_and_one_of_noise_does_not():
    settings = alignment.AlignmentSettings(n_train=2000, n_test=40, n_repeats=10, n_neurons=40, seed=1)
    data = alignment.simulated_responses(TINY_SIMULATION, settings)
    population = simulation.experiment_population(**TINY_SIMULATION)
    features = [population.visual_drive(stimuli) for stimuli in (data.train_stimuli, data.test_stimuli)]
    good = alignment.readout_predictivity(features[0], data.train_responses, features[1], data.test_repeats,
                                          data.test_truth, min_reliability=0.1)
    assert good["median_r_truth"] > 0.85 and good["median_normalised"] > 0.8
    rng = np.random.default_rng(0)
    noise = alignment.readout_predictivity(rng.normal(size=(2000, 50)), data.train_responses,
                                           rng.normal(size=(40, 50)), data.test_repeats, data.test_truth,
                                           min_reliability=0.1)
    assert abs(noise["median_r"]) < 0.2 and noise["median_normalised"] < 0.3


def test_network_alignment_scores_every_tapped_layer_and_names_the_best(responses):
    classifier = resnet.ResNet18(num_classes=3, width=0.125)
    layers = resnet.paper_tap_layers(classifier)
    lines = []
    result = alignment.network_alignment(classifier, layers, responses, SMALL, progress=lines.append)
    assert list(result["layers"]) == layers and len(lines) == len(layers)
    scores = {layer: v["median_normalised"] for layer, v in result["layers"].items()}
    assert result["best_layer"] == max(scores, key=scores.get)
    assert result["alignment"] == scores[result["best_layer"]]
    assert result["settings"]["n_train"] == SMALL.n_train


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_repeats >= 2"):
        alignment.AlignmentSettings(n_repeats=1)
