"""Fitting one scan's predictive model: standardised inputs, Poisson loss, early stopping."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from neuroreg_tf import determinism
from neuroreg_tf.quiet import quiet_tensorflow
from neuroreg_tf.neural import statistics
from neuroreg_tf.neural.predictive.config import PredictiveModelConfig
from neuroreg_tf.neural.predictive.evaluation import evaluate_predictor
from neuroreg_tf.neural.predictive.model import PredictiveModel
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
        inputs = self._inputs(images, behavior, pupil_center)
        return predict_in_batches(self.model, inputs, batch_size) * self.response_scale

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


class ValidationCorrelation(keras.callbacks.Callback):
    """Adds ``val_correlation`` to each epoch's logs: the mean per-neuron correlation between the
    model's predictions and the responses of the validation trials (what early stopping watches).

    Args:
        inputs: the validation trials' (images, behavior, pupil_center), standardised.
        responses: their responses, (n_trials, n_neurons), in any per-neuron scale.
        batch_size: trials per forward pass.
    """

    def __init__(self, inputs, responses, batch_size: int = 512):
        super().__init__()
        self.inputs = inputs
        self.responses = responses
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        predicted = predict_in_batches(self.model, self.inputs, self.batch_size)
        logs = logs if logs is not None else {}
        logs["val_correlation"] = float(
            np.mean(statistics.prediction_correlation(self.responses, predicted))
        )


def predict_in_batches(model: keras.Model, inputs, batch_size: int = 256) -> np.ndarray:
    """``model(inputs, training=False)`` over batches of the (images, behavior, pupil) arrays."""
    count = len(inputs[0])
    return np.concatenate([
        model(tuple(array[start:start + batch_size] for array in inputs), training=False).numpy()
        for start in range(0, count, batch_size)
    ])


class _EpochLog(keras.callbacks.Callback):
    """One progress line per epoch: loss, validation r, a star when it improved, seconds."""

    def __init__(self, log):
        super().__init__()
        self.log = log
        self.best = -np.inf

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        correlation = logs["val_correlation"]
        improved = correlation > self.best
        self.best = max(self.best, correlation)
        self.log(
            f"  epoch {epoch + 1:3d}  poisson loss {logs['loss']:.4f}  validation r {correlation:.3f}"
            f"{'  *' if improved else ''}  ({time.time() - self.started:.1f}s)"
        )


def fit_predictive_model(
    recording: Recording,
    config: PredictiveModelConfig | None = None,
    *,
    log: Callable[[str], Any] | None = print,
) -> FittedPredictor:
    """Trains a predictive model on one scan's 'train' trials with Keras ``fit``.

    The trials stream through ``tf.data`` (reshuffled each epoch from ``config.seed``); the
    objective is the Poisson loss plus the model's penalties (``PredictiveModel.compute_loss``);
    ``ValidationCorrelation`` logs the mean per-neuron correlation on the 'validation' trials
    and Keras' ``EarlyStopping`` stops after ``config.patience`` epochs without a better one,
    restoring the best weights. Afterwards v_a (test correlation) and FEVE are computed on the
    'test' trials (the oracle repeats). ``determinism.enable()`` is on, so the same recording
    and config give the same weights, bit for bit, in any process on the same machine.

    Args:
        recording: the scan; needs 'train' and 'validation' trials.
        config: hyper-parameters (defaults if None).
        log: progress sink, e.g. ``print``; None: silent.

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
    determinism.enable()
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
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), jit_compile=config.jit_compile)
    trials = (
        tf.data.Dataset.from_tensor_slices(((images[train], behavior[train], pupil[train]), scaled[train]))
        .shuffle(train.size, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_inputs = (images[validation], behavior[validation], pupil[validation])
    history = model.fit(
        trials,
        epochs=config.max_epochs,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles (seeded)
        callbacks=[
            ValidationCorrelation(validation_inputs, recording.responses[validation]),
            _EpochLog(log),
            keras.callbacks.EarlyStopping(
                monitor="val_correlation", mode="max", patience=config.patience,
                restore_best_weights=True,
            ),
        ],
    )
    fitted.history = [
        {"epoch": epoch + 1, "loss": float(loss), "validation_correlation": float(correlation)}
        for epoch, (loss, correlation) in enumerate(
            zip(history.history["loss"], history.history["val_correlation"])
        )
    ]
    if len(fitted.history) < config.max_epochs:
        log(f"  early stopping: no better validation correlation for {config.patience} epochs")
    evaluate_predictor(fitted, recording)
    log(
        f"  test correlation v_a: mean {np.mean(fitted.test_correlation):.3f}; FEVE: median "
        f"{np.nanmedian(fitted.feve):.3f}"
    )
    return fitted


@dataclasses.dataclass
class _FitResult:
    """What a worker process sends back: everything a ``FittedPredictor`` holds, as arrays."""

    weights: list
    response_scale: np.ndarray
    behavior_mean: np.ndarray
    behavior_std: np.ndarray
    pupil_mean: np.ndarray
    pupil_std: np.ndarray
    history: list
    test_correlation: np.ndarray
    feve: np.ndarray
    neuron_ids: np.ndarray


def _fit_in_worker(job) -> _FitResult:
    """Runs in a fresh, single-threaded process: fits one scan's model (see ``fit_predictive_models``)."""
    index, total, recording, config = job
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    fitted = fit_predictive_model(
        recording, config, log=lambda message: print(f"scan {index + 1}/{total}:{message}", flush=True)
    )
    return _FitResult(
        weights=fitted.model.get_weights(),
        **{field: getattr(fitted, field) for field in (
            "response_scale", "behavior_mean", "behavior_std", "pupil_mean", "pupil_std",
            "history", "test_correlation", "feve", "neuron_ids",
        )},
    )


def _rebuild(result: _FitResult, recording: Recording, config: PredictiveModelConfig) -> FittedPredictor:
    model = PredictiveModel(recording.n_neurons, config)
    images, behavior, pupil = recording.images[:1], recording.behavior[:1], recording.pupil_center[:1]
    model((images.astype(np.float32), behavior.astype(np.float32), pupil.astype(np.float32)), training=False)
    model.set_weights(result.weights)
    return FittedPredictor(model=model, **{
        field: getattr(result, field) for field in (
            "response_scale", "behavior_mean", "behavior_std", "pupil_mean", "pupil_std",
            "history", "test_correlation", "feve", "neuron_ids",
        )
    })


def fit_predictive_models(
    recordings,
    config: PredictiveModelConfig | None = None,
    *,
    workers: int | None = None,
    log: Callable[[str], Any] | None = print,
) -> list[FittedPredictor]:
    """Fits one predictive model per scan, each in its own single-threaded process.

    Why processes: fitting in one multi-threaded TensorFlow process is not reproducible on CPU.
    Even with op determinism on (``determinism.enable``), the same fit in two fresh processes
    drifted apart in the last bits within a few steps unless TensorFlow ran on one inter-op and
    one intra-op thread (then 5 of 5 runs agreed). So each scan's model is fitted in a fresh
    process with one thread, and ``workers`` processes run at once to use the cores: the fitted
    models, and the targets built from them, are the same bit for bit on every run.

    Args:
        recordings: the scans.
        config: hyper-parameters (defaults if None).
        workers: processes at once; None: one per scan, at most ``2 * os.cpu_count()``.
            0: fit in this process instead, one scan after another (faster to start, not
            reproducible bit for bit).
        log: progress sink; None: silent (the workers print their epoch lines themselves).

    Returns:
        One ``FittedPredictor`` per scan, in order.
    """
    import multiprocessing
    import os

    config = config or PredictiveModelConfig()
    config.validate()
    log = log or (lambda message: None)
    recordings = list(recordings)
    if workers == 0:
        return [fit_predictive_model(r, config, log=log) for r in recordings]
    workers = workers or min(len(recordings), 2 * (os.cpu_count() or 1))
    log(f"fitting {len(recordings)} predictive model(s), {workers} single-threaded process(es) at once")
    jobs = [(index, len(recordings), recording, config) for index, recording in enumerate(recordings)]
    # The initializer imports TensorFlow quietly before the task's module (which imports it) loads.
    with multiprocessing.get_context("spawn").Pool(processes=workers, initializer=quiet_tensorflow) as pool:
        results = pool.map(_fit_in_worker, jobs, chunksize=1)
    return [_rebuild(result, recording, config) for result, recording in zip(results, recordings)]
