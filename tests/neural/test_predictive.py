"""Predictive-model parts against independent formulas, and training mechanics."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import oracles
from neuroreg_tf.neural import predictive, simulation
from neuroreg_tf.neural.predictive import core, readouts


def test_poisson_loss_matches_formula():
    rates = np.array([[0.5, 2.0], [1.5, 3.0]], np.float32)
    responses = np.array([[0.0, 3.0], [2.0, 1.0]], np.float32)
    expected = np.mean(rates - responses * np.log(rates + 1e-8))
    assert float(predictive.poisson_loss(responses, rates)) == pytest.approx(expected, rel=1e-6)


def test_laplace_penalty_matches_scipy():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(5, 5, 1, 3)).astype(np.float32)
    laplace = np.array([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]])
    filtered = sum(
        np.sum(ndimage.correlate(kernel[:, :, 0, c].astype(np.float64), laplace, mode="constant") ** 2)
        for c in range(3)
    )
    expected = filtered / np.sum(kernel.astype(np.float64) ** 2)
    assert float(core.laplace_penalty(tf.constant(kernel))) == pytest.approx(expected, rel=1e-5)
    smooth = np.ones((5, 5, 1, 1), np.float32)
    rough = np.where(np.indices((5, 5)).sum(0) % 2 == 0, 1.0, -1.0).astype(np.float32)[..., None, None]
    assert float(core.laplace_penalty(tf.constant(rough))) > 10 * float(core.laplace_penalty(tf.constant(smooth)))


def test_translate_matches_scipy_shift_and_has_a_gradient():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    shift = np.array([[1.25, -0.5], [-2.0, 0.75]], np.float32)
    result = readouts.translate(tf.constant(features), tf.constant(shift)).numpy()
    for b in range(2):
        expected = ndimage.shift(features[b], (shift[b, 0], shift[b, 1], 0), order=1, mode="nearest")
        np.testing.assert_allclose(result[b], expected, atol=1e-5)
    shift_variable = tf.Variable(shift)
    with tf.GradientTape() as tape:
        moved = readouts.translate(tf.constant(features), shift_variable)
        loss = tf.reduce_sum(moved * tf.constant(features))
    gradient = tape.gradient(loss, shift_variable)
    assert gradient is not None and np.all(np.isfinite(gradient.numpy()))
    assert np.any(np.abs(gradient.numpy()) > 0)


@pytest.mark.parametrize("readout", ["factorized", "gaussian"])
def test_model_outputs_positive_rates_of_the_right_shape(readout):
    config = predictive.PredictiveModelConfig(channels=4, readout=readout, readout_pool=2)
    model = predictive.PredictiveModel(7, config)
    images = np.random.default_rng(0).uniform(size=(3, 12, 16, 1)).astype(np.float32)
    rates = model((images, np.zeros((3, 3), np.float32), np.zeros((3, 2), np.float32)), training=True).numpy()
    assert rates.shape == (3, 7)
    assert np.all(rates > 0)
    assert float(model.regularization()) >= 0


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="Received: readout='linear'"):
        predictive.PredictiveModel(3, predictive.PredictiveModelConfig(readout="linear"))
    with pytest.raises(ValueError, match="Received: channels=0"):
        predictive.PredictiveModelConfig(channels=0).validate()


def test_training_reports_its_validation_correlation_v_and_feve_by_their_definitions():
    experiment = simulation.simulate_experiment(preset="tiny", seed=0)
    recording = experiment.recordings[0]
    messages = []
    fitted = predictive.fit_predictive_model(
        recording,
        predictive.PredictiveModelConfig(channels=4, max_epochs=3, patience=5, batch_size=32),
        log=messages.append,
    )
    assert [h["epoch"] for h in fitted.history] == [1, 2, 3]
    for entry, message in zip(fitted.history, [m for m in messages if "epoch" in m]):
        assert f"validation r {entry['validation_correlation']:.3f}" in message
    # The best epoch's weights are kept: its validation correlation is the mean per-neuron
    # Pearson r of the final model's predictions on the validation trials.
    validation = np.flatnonzero(recording.tiers == "validation")
    predicted = fitted.predict(recording.images[validation], recording.behavior[validation], recording.pupil_center[validation])
    mean_r = np.mean([oracles.pearson(recording.responses[validation, a], predicted[:, a]) for a in range(recording.n_neurons)])
    assert max(h["validation_correlation"] for h in fitted.history) == pytest.approx(mean_r, abs=1e-5)
    # v_a: per-neuron r on the test trials; FEVE on the repeats with the repeat-averaged prediction.
    test = np.flatnonzero(recording.tiers == "test")
    predicted = fitted.predict(recording.images[test], recording.behavior[test], recording.pupil_center[test])
    for a in range(recording.n_neurons):
        assert fitted.test_correlation[a] == pytest.approx(oracles.pearson(recording.responses[test, a], predicted[:, a]), abs=1e-6)
    trials = recording.repeated_trials()
    repeats = recording.responses[trials].astype(np.float64)
    prediction = fitted.predict(
        recording.images[trials.reshape(-1)], recording.behavior[trials.reshape(-1)], recording.pupil_center[trials.reshape(-1)]
    ).reshape(trials.shape + (-1,)).mean(axis=1)
    n_images, n_repeats, _ = repeats.shape
    for a in range(recording.n_neurons):
        total = oracles.variance(repeats[:, :, a].reshape(-1))
        noise = np.mean([oracles.variance(repeats[i, :, a]) for i in range(n_images)])
        mse = np.mean([(repeats[i, t, a] - prediction[i, a]) ** 2 for i in range(n_images) for t in range(n_repeats)])
        expected = 1 - (mse - noise) / (total - noise) if total > noise else np.nan
        assert fitted.feve[a] == pytest.approx(expected, abs=1e-5, nan_ok=True)
    neutral = fitted.predict_neutral(recording.images[:5])
    explicit = fitted.predict(
        recording.images[:5],
        np.tile(fitted.behavior_mean, (5, 1)),
        np.tile(fitted.pupil_mean, (5, 1)),
    )
    np.testing.assert_allclose(neutral, explicit, rtol=1e-5)
    with pytest.raises(ValueError, match="validation"):
        bad = recording.__class__(**{**recording.__dict__, "tiers": np.where(recording.tiers == "validation", "train", recording.tiers)})
        predictive.fit_predictive_model(bad, log=None)


def simple_cell_recording(seed=3, n_neurons=16, n_single=2000, n_oracle=20, n_repeats=10, shape=(18, 32)):
    """A SIMULATED scan the model can fit: 16 simple cells (rectified Gabor filters with contrast
    normalisation, 4x the default gain), Poisson noise, no behaviour or eye movements."""
    from neuroreg_tf.data.stimuli import natural_stimuli
    from neuroreg_tf.neural.recordings import Recording

    population = simulation.make_v1_population(
        n_neurons, shape, complex_fraction=0.0, weak_fraction=0.0, wavelength_range=(4.0, 16.0), seed=seed
    )
    population.gain *= 4.0
    stimuli = natural_stimuli(n_single + n_oracle, height=shape[0], width=shape[1], seed=seed)
    ids = np.concatenate([np.arange(n_oracle, n_oracle + n_single), np.repeat(np.arange(n_oracle), n_repeats)])
    rng = np.random.default_rng(seed)
    rates = population.visual_drive(stimuli[ids])
    tiers = np.where(ids < n_oracle, "test", np.where(rng.uniform(size=ids.size) < 0.1, "validation", "train"))
    recording = Recording(
        images=stimuli[ids], responses=rng.poisson(rates), behavior=np.zeros((ids.size, 3)),
        pupil_center=np.zeros((ids.size, 2)), tiers=tiers, image_ids=ids, neuron_ids=np.arange(n_neurons),
        simulated=True,
    )
    return population, stimuli, recording, rates


def true_mean_gradient(population, images):
    """d rate / d pixel of each simulated simple cell, averaged over ``images`` (the known RF as the
    response function sees it): gain * norm * 1[u > 0] (f - mean f) minus the contrast-normalisation
    term, from ``V1Population.visual_drive``'s formula."""
    pixels = images.reshape(len(images), -1).astype(np.float64)
    contrast = pixels - pixels.mean(axis=1, keepdims=True)
    sigma = contrast.std(axis=1, keepdims=True)
    filters = population.filters[0].astype(np.float64)
    drive = contrast @ filters.T
    s = population.semi_saturation
    k = population.gain * (s + 0.15)
    gradient = (drive > 0)[:, :, None] * (k / (s + sigma))[:, :, None] * (filters - filters.mean(axis=1, keepdims=True))[None]
    gradient -= (np.maximum(drive, 0) * k / (s + sigma) ** 2)[:, :, None] * (contrast / (pixels.shape[1] * sigma))[:, None, :]
    return gradient.mean(axis=0)


def test_predictive_model_recovers_known_receptive_fields():
    population, stimuli, recording, rates = simple_cell_recording()
    fitted = predictive.fit_predictive_model(
        recording,
        predictive.PredictiveModelConfig(
            channels=8, readout_pool=2, max_epochs=15, patience=15, use_shifter=False, use_modulator=False
        ),
        log=None,
    )
    test = np.flatnonzero(recording.tiers == "test")
    # The noise ceiling: r between the true rate and the Poisson responses on the test trials.
    ceiling = np.array([oracles.pearson(rates[test, a], recording.responses[test, a]) for a in range(16)])
    # Measured here: v_a median 0.86 (ceiling median 0.91), FEVE median 0.80 (13 of 16 above 0.55);
    # each bound leaves 0.1-0.15 for other machines' rounding.
    assert np.median(fitted.test_correlation) > 0.75
    assert np.all(fitted.test_correlation <= ceiling + 0.05)
    assert np.nanmedian(fitted.feve) > 0.65 and np.sum(fitted.feve > 0.4) >= 13
    # On the oracle images the neutral prediction follows the noiseless rate (measured median 0.94).
    held_out = stimuli[:20]  # the oracle images: test tier, never trained on
    predicted = fitted.predict_neutral(held_out)
    truth = population.visual_drive(held_out)
    assert np.median([oracles.pearson(truth[:, a], predicted[:, a]) for a in range(16)]) > 0.85
    # The receptive field: the model's mean input gradient matches each neuron's known one
    # (measured cosines 0.89-0.99, median 0.97; other neurons' at most 0.5), and no other's better.
    images = tf.Variable(stimuli[:220])
    behavior = np.broadcast_to((0 - fitted.behavior_mean) / fitted.behavior_std, (220, 3)).astype(np.float32)
    pupil = np.broadcast_to((0 - fitted.pupil_mean) / fitted.pupil_std, (220, 2)).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        rates_out = fitted.model((images, behavior, pupil), training=False) * fitted.response_scale
        per_neuron = [tf.reduce_sum(rates_out[:, a]) for a in range(16)]
    model_rf = np.stack([tape.gradient(total, images).numpy().reshape(220, -1).mean(axis=0) for total in per_neuron])
    true_rf = true_mean_gradient(population, stimuli[:220])
    model_rf /= np.linalg.norm(model_rf, axis=1, keepdims=True)
    true_rf /= np.linalg.norm(true_rf, axis=1, keepdims=True)
    cosines = model_rf @ true_rf.T
    assert np.median(np.diag(cosines)) > 0.9 and np.min(np.diag(cosines)) > 0.8
    np.testing.assert_array_equal(np.argmax(cosines, axis=1), np.arange(16))
