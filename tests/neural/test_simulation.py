"""The SIMULATED V1: design, determinism, labels and the effects it claims to model."""

import numpy as np
import pytest

from neuroreg_tf.neural import simulation, statistics


def smooth_stimuli(n, seed=0, shape=(36, 64)):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    images = ndimage.gaussian_filter(rng.normal(size=(n, *shape)), sigma=(0, 2, 2))
    images = (images - images.min()) / (images.max() - images.min())
    return images[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def experiment():
    return simulation.simulate_experiment(preset="tiny", seed=3)


def test_design_matches_the_preset(experiment):
    design = simulation.PRESETS["tiny"]
    assert len(experiment.recordings) == design["n_scans"]
    n_trials = design["n_single"] + design["n_oracle"] * design["n_repeats"]
    for recording, neurons in zip(experiment.recordings, experiment.scan_neurons):
        assert recording.simulated and "SIMULATED" in recording.metadata["label"]
        assert recording.n_trials == n_trials
        assert recording.n_neurons == design["neurons_per_scan"]
        np.testing.assert_array_equal(recording.neuron_ids, neurons)
        np.testing.assert_array_equal(recording.oracle_image_ids(), np.arange(design["n_oracle"]))
        assert recording.repeated_responses().shape == (design["n_oracle"], design["n_repeats"], design["neurons_per_scan"])
        assert set(recording.tiers[np.isin(recording.image_ids, experiment.oracle_ids)]) == {"test"}
        assert (recording.tiers == "validation").sum() == round(0.1 * design["n_single"])
        assert recording.behavior.shape == (n_trials, 3)
    # Different scans record different neurons of one population, in different trial orders.
    assert not np.array_equal(experiment.scan_neurons[0], experiment.scan_neurons[1])
    assert not np.array_equal(experiment.recordings[0].image_ids, experiment.recordings[1].image_ids)


def test_same_seed_same_experiment():
    stimuli = smooth_stimuli(312)
    first = simulation.simulate_experiment(stimuli, preset="tiny", seed=5)
    second = simulation.simulate_experiment(stimuli, preset="tiny", seed=5)
    third = simulation.simulate_experiment(stimuli, preset="tiny", seed=6)
    np.testing.assert_array_equal(first.recordings[1].responses, second.recordings[1].responses)
    assert not np.array_equal(first.recordings[1].responses, third.recordings[1].responses)


def test_shared_noise_has_mean_one_gain_and_correlates_neurons(experiment):
    population = experiment.population
    gain = population.latent_gain(np.random.default_rng(0), 200_000, np.arange(5))
    np.testing.assert_allclose(gain.mean(axis=0), 1.0, rtol=0.03)
    log_gain = np.log(gain)
    loadings = population.latent_loadings[:, :5]
    np.testing.assert_allclose(np.cov(log_gain.T), loadings.T @ loadings, atol=0.01)


def test_neutral_rates_match_an_independent_gabor_formula():
    population = simulation.make_v1_population(6, (20, 30), seed=1)
    images = smooth_stimuli(5, shape=(20, 30))
    pixels = images.reshape(5, -1).astype(np.float64)
    contrast = pixels - pixels.mean(axis=1, keepdims=True)
    expected = np.empty((5, 6))
    for a in range(6):
        even = contrast @ population.filters[0, a]
        odd = contrast @ population.filters[1, a]
        drive = np.sqrt(even**2 + odd**2) if population.is_complex[a] else np.maximum(even, 0)
        rms = contrast.std(axis=1)
        c50 = population.semi_saturation
        expected[:, a] = population.baseline[a] + population.gain[a] * drive * (c50 + 0.15) / (c50 + rms)
    np.testing.assert_allclose(population.visual_drive(images), expected, rtol=1e-4)


def test_shift_images_moves_content():
    image = np.zeros((1, 10, 12, 1), np.float32)
    image[0, 4, 5, 0] = 1.0
    shifted = simulation.shift_images(image, np.array([[2.0, -3.0]]))
    assert shifted[0, 6, 2, 0] == pytest.approx(1.0)
    assert shifted.sum() == pytest.approx(1.0)


def test_noise_is_overdispersed_with_the_stated_variance():
    rng = np.random.default_rng(0)
    rates = np.full((200_000, 1), 4.0)
    counts = simulation.noisy_trials(rates, rng, dispersion=2.0)
    assert counts.mean() == pytest.approx(4.0, rel=0.02)
    assert counts.var() == pytest.approx(4.0 + 16.0 / 2.0, rel=0.03)


def test_reliability_is_heterogeneous_and_mouse_like(experiment):
    correlation = statistics.oracle_correlation(experiment.recordings[0].repeated_responses())
    assert 0.05 < np.median(correlation) < 0.5
    assert np.percentile(correlation, 90) - np.percentile(correlation, 10) > 0.15
    wavelengths = experiment.population.wavelength
    assert wavelengths.min() >= 6.0 and wavelengths.max() <= 32.0


def test_similarity_is_more_stable_across_scans_than_across_repeats():
    experiment = simulation.simulate_experiment(
        smooth_stimuli(330), n_single=300, n_oracle=30, n_repeats=6, n_scans=3, neurons_per_scan=120,
        population_size=240, seed=2,
    )
    delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(
        [r.repeated_responses() for r in experiment.recordings]
    )
    assert np.std(delta_scan) < 0.5 * np.std(delta_repeat)


def test_behaviour_modulates_responses(experiment):
    recording = experiment.recordings[0]
    running = recording.behavior[:, recording.behavior_names.index("running_speed")]
    fast = running > np.percentile(running, 75)
    slow = running <= np.percentile(running, 25)
    rates = experiment.trial_rates[0]
    neutral = experiment.ground_truth_rates(recording.image_ids, experiment.scan_neurons[0])
    gain = rates / neutral
    assert gain[fast].mean() > gain[slow].mean() * 1.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="huge"), "preset"),
        (dict(n_oracle=1), "2 oracle images"),
        (dict(neurons_per_scan=500, population_size=100), "neurons_per_scan"),
        (dict(stimuli=np.zeros((5, 36, 64))), "n_single \\+ n_oracle"),
    ],
)
def test_bad_designs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulation.simulate_experiment(**kwargs)


def _split_half_reliability(recording) -> float:
    """Mean over neurons of r(mean of even repeats, mean of odd repeats) on the oracle images."""
    repeated = recording.repeated_responses()  # (images, repeats, neurons)
    even, odd = repeated[:, 0::2].mean(axis=1), repeated[:, 1::2].mean(axis=1)
    values = []
    for neuron in range(repeated.shape[2]):
        if even[:, neuron].std() > 0 and odd[:, neuron].std() > 0:
            values.append(np.corrcoef(even[:, neuron], odd[:, neuron])[0, 1])
    return float(np.mean(values))


def test_latent_strength_sets_the_shared_noise_loadings_and_zero_removes_them():
    quiet = simulation.simulate_experiment(preset="tiny", seed=2, latent_strength=0.0)
    assert not quiet.population.latent_loadings.any()
    gain = quiet.population.latent_gain(np.random.default_rng(0), 50, np.arange(10))
    np.testing.assert_array_equal(gain, 1.0)  # no shared fluctuation at all
    loud = simulation.simulate_experiment(preset="tiny", seed=2, latent_strength=1.0)
    assert abs(loud.population.latent_loadings.std() - 1.0) < 0.1
    assert loud.parameters["latent_strength"] == 1.0
    # Same seed, same population otherwise: only the noise changed.
    np.testing.assert_array_equal(quiet.population.gain, loud.population.gain)
    np.testing.assert_array_equal(quiet.trial_rates[0], loud.trial_rates[0])
    with pytest.raises(ValueError, match="latent_strength"):
        simulation.simulate_experiment(preset="tiny", latent_strength=-0.1)


def test_the_paper_noise_settings_make_repeats_less_reliable():
    from neuroreg_tf import cli

    settings = cli.load_config("build_target.py", "paper_noise").simulation
    default = simulation.simulate_experiment(preset="small", seed=1)
    noisy = simulation.simulate_experiment(preset="small", seed=1, rate_scale=settings.rate_scale,
                                           latent_strength=settings.latent_strength)
    for calm, loud in zip(default.recordings, noisy.recordings):
        assert _split_half_reliability(loud) < 0.6 * _split_half_reliability(calm)


def test_design_arguments_given_with_a_preset_override_it():
    """The ablations' neurons_per_scan / n_scans must change the build they name (they once did not)."""
    from neuroreg_tf import cli
    from neuroreg_tf.neural import build_config

    section = cli.load_config("build_target.py", "runlocal").simulation
    section.neurons_per_scan, section.n_scans = 30, 1
    experiment = simulation.simulate_experiment(**build_config.simulation_arguments(section))
    assert len(experiment.recordings) == 1
    assert experiment.recordings[0].n_neurons == 30
    grown = simulation.simulate_experiment(preset="tiny", neurons_per_scan=300)
    assert grown.recordings[0].n_neurons == 300 and grown.population.n_neurons == 600
    tiny = simulation.PRESETS["tiny"]
    plain = simulation.simulate_experiment(preset="tiny")
    assert (len(plain.recordings), plain.recordings[0].n_neurons) == (tiny["n_scans"], tiny["neurons_per_scan"])


def test_experiment_population_is_the_population_the_scans_record():
    arguments = dict(preset="tiny", seed=4, rate_scale=0.5, latent_strength=0.7, complex_fraction=0.3)
    experiment = simulation.simulate_experiment(**arguments)
    population = simulation.experiment_population(**arguments)
    for field in ("filters", "gain", "baseline", "dispersion", "latent_loadings", "is_complex"):
        np.testing.assert_array_equal(getattr(population, field), getattr(experiment.population, field))
    other = simulation.experiment_population(**{**arguments, "seed": 5})
    assert not np.array_equal(other.gain, population.gain)
