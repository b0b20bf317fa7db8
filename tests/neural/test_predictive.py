"""Predictive-model parts against independent formulas, and training mechanics."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

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


def test_training_improves_validation_correlation_and_reports_v_and_feve():
    experiment = simulation.simulate_experiment(preset="tiny", seed=0)
    recording = experiment.recordings[0]
    messages = []
    fitted = predictive.fit_predictive_model(
        recording,
        predictive.PredictiveModelConfig(channels=4, max_epochs=3, patience=5, batch_size=32),
        log=messages.append,
    )
    assert len(fitted.history) == 3
    assert any("epoch" in m and "validation r" in m for m in messages)
    best = max(h["validation_correlation"] for h in fitted.history)
    assert best > 0.02
    assert fitted.test_correlation.shape == (recording.n_neurons,)
    assert fitted.feve.shape == (recording.n_neurons,)
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
