"""Fitting one scan's predictive model: standardised inputs, Poisson loss, early stopping."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from neuroreg_tf.neural import statistics
from neuroreg_tf.neural.predictive.config import PredictiveModelConfig
from neuroreg_tf.neural.predictive.evaluation import evaluate_predictor
from neuroreg_tf.neural.predictive.model import PredictiveModel, poisson_loss
from neuroreg_tf.neural.recordings import Recording

@dataclasses.dataclass
class FittedPredictor:
    """A trained predictive model for one scan and its normalisation.

    Attributes:
        model: the Keras model (works on standardised inputs, scaled responses).
        response_scale: (n_neurons,) per-neuron std the responses were divided by.
        behavior_mean, behavior_std: behaviour standardisation.
        pupil_mean, pupil_std: pupil-centre standardisation.
        history: per-epoch training loss and validation correlation.
        test_correlation: (n_neurons,) v_a on the test tier.
        feve: (n_neurons,) fraction of explainable variance explained on the repeats.
        neuron_ids: the scan's neuron ids.
    """

    model: PredictiveModel
    response_scale: np.ndarray
    behavior_mean: np.ndarray
    behavior_std: np.ndarray
    pupil_mean: np.ndarray
    pupil_std: np.ndarray
    history: list[dict[str, float]]
    test_correlation: np.ndarray | None = None
    feve: np.ndarray | None = None
    neuron_ids: np.ndarray | None = None

    def _inputs(self, images, behavior, pupil_center):
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[..., None]
        behavior = (np.asarray(behavior, np.float32) - self.behavior_mean) / self.behavior_std
        pupil = (np.asarray(pupil_center, np.float32) - self.pupil_mean) / self.pupil_std
        return images, behavior.astype(np.float32), pupil.astype(np.float32)

    def predict(self, images, behavior, pupil_center, batch_size: int = 256) -> np.ndarray:
        """Predicted responses in the recording's units, (n, n_neurons)."""
        images, behavior, pupil = self._inputs(images, behavior, pupil_center)
        outputs = [
            self.model((images[s : s + batch_size], behavior[s : s + batch_size], pupil[s : s + batch_size]), training=False).numpy()
            for s in range(0, images.shape[0], batch_size)
        ]
        return np.concatenate(outputs) * self.response_scale

    def predict_neutral(self, images, batch_size: int = 256) -> np.ndarray:
        """Predictions at the mean behaviour and mean eye position (Eq 6's rho-hat)."""
        n = np.shape(images)[0]
        return self.predict(
            images,
            np.broadcast_to(self.behavior_mean, (n, self.behavior_mean.size)),
            np.broadcast_to(self.pupil_mean, (n, 2)),
            batch_size,
        )


def _standardiser(values):
    mean = values.mean(axis=0).astype(np.float32)
    std = values.std(axis=0).astype(np.float32)
    return mean, np.where(std > 0, std, 1.0).astype(np.float32)


def fit_predictive_model(
    recording: Recording,
    config: PredictiveModelConfig | None = None,
    *,
    log: Callable[[str], Any] | None = print,
) -> FittedPredictor:
    """Trains a predictive model on one scan's 'train' trials.

    Early stopping watches the mean per-neuron correlation on the 'validation'
    trials; the best weights are restored. Afterwards v_a (test correlation)
    and FEVE are computed on the 'test' trials (the oracle repeats).

    Args:
        recording: the scan; needs 'train' and 'validation' trials.
        config: hyper-parameters (defaults if None).
        log: progress sink, e.g. ``print`` or ``absl.logging.info``; None: silent.

    Returns:
        A ``FittedPredictor``.
    """
    config = config or PredictiveModelConfig()
    config.validate()
    log = log or (lambda message: None)
    train = np.flatnonzero(recording.tiers == "train")
    validation = np.flatnonzero(recording.tiers == "validation")
    if train.size < config.batch_size or validation.size < 2:
        raise ValueError(
            f"Training needs at least batch_size={config.batch_size} 'train' trials and 2 "
            f"'validation' trials. Received: {train.size} train, {validation.size} validation"
        )
    keras.utils.set_random_seed(config.seed)
    response_scale = recording.responses[train].std(axis=0).astype(np.float32)
    response_scale = np.where(response_scale > 0, response_scale, 1.0).astype(np.float32)
    behavior_mean, behavior_std = _standardiser(recording.behavior[train])
    pupil_mean, pupil_std = _standardiser(recording.pupil_center[train])
    fitted = FittedPredictor(
        model=PredictiveModel(recording.n_neurons, config),
        response_scale=response_scale,
        behavior_mean=behavior_mean,
        behavior_std=behavior_std,
        pupil_mean=pupil_mean,
        pupil_std=pupil_std,
        history=[],
        neuron_ids=recording.neuron_ids,
    )
    images, behavior, pupil = fitted._inputs(recording.images, recording.behavior, recording.pupil_center)
    scaled = (recording.responses / response_scale).astype(np.float32)
    model = fitted.model
    model((images[:2], behavior[:2], pupil[:2]))
    optimizer = keras.optimizers.Adam(config.learning_rate)

    @tf.function(reduce_retracing=True)
    def train_step(x_images, x_behavior, x_pupil, y):
        with tf.GradientTape() as tape:
            rates = model((x_images, x_behavior, x_pupil), training=True)
            loss = poisson_loss(y, rates)
            total = loss + model.regularization()
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    def validation_correlation():
        predicted = fitted.predict(images[validation], recording.behavior[validation], recording.pupil_center[validation])
        return float(np.mean(statistics.prediction_correlation(recording.responses[validation], predicted)))

    rng = np.random.default_rng(config.seed)
    best, best_weights, stale = -np.inf, None, 0
    for epoch in range(1, config.max_epochs + 1):
        start = time.time()
        order = rng.permutation(train)
        losses = []
        for s in range(0, order.size - config.batch_size + 1, config.batch_size):
            batch = np.sort(order[s : s + config.batch_size])
            losses.append(float(train_step(images[batch], behavior[batch], pupil[batch], scaled[batch])))
        correlation = validation_correlation()
        fitted.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_correlation": correlation})
        improved = correlation > best
        if improved:
            best, best_weights, stale = correlation, [w.numpy() for w in model.weights], 0
        else:
            stale += 1
        log(
            f"  epoch {epoch:3d}  poisson loss {np.mean(losses):.4f}  validation r {correlation:.3f}"
            f"{'  *' if improved else ''}  ({time.time() - start:.1f}s)"
        )
        if stale >= config.patience:
            log(f"  early stopping: no better validation correlation for {config.patience} epochs")
            break
    for weight, value in zip(model.weights, best_weights):
        weight.assign(value)
    evaluate_predictor(fitted, recording)
    log(
        f"  test correlation v_a: mean {np.mean(fitted.test_correlation):.3f}; FEVE: median "
        f"{np.nanmedian(fitted.feve):.3f}"
    )
    return fitted

