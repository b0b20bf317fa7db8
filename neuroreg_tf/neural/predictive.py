"""The predictive model ("denoiser") of neural responses, in Keras.

The design follows the field's system-identification models (Sinz et al. 2018,
Walker et al. 2019; sinzlab/neuralpredictors), composed of swappable parts:

* core: 3 convolutional layers with skip connections (every layer sees the
  outputs of all earlier layers; the features are all layers concatenated),
  batch norm and ELU; a Laplace smoothness penalty on the first layer's kernels;
* readout, one per neuron: ``"factorized"`` (spatial mask x feature weights)
  or ``"gaussian"`` (features sampled at a learned location, jittered during
  training);
* shifter: an MLP from the pupil centre to a shift of the readout position
  (the image moves on the retina with the eye);
* modulator: an MLP from behaviour to a per-neuron multiplicative gain;
* output ELU(x) + 1 (positive rates), Poisson loss, Adam, early stopping on
  the validation correlation with the best weights restored.

Behaviour and pupil centre are standardised with the training statistics, so
"neutral" behaviour and eye position (their means) are zeros; that is how
``predict_neutral`` makes the predictions of Eq 6.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import keras

from neuroreg_tf.neural import statistics
from neuroreg_tf.neural.recordings import Recording

READOUTS = ("factorized", "gaussian")


@dataclasses.dataclass
class PredictiveModelConfig:
    """Hyper-parameters of the predictive model and its training.

    Attributes:
      channels: feature channels per core layer.
      input_kernel: first-layer kernel size.
      hidden_kernel: kernel size of layers 2 and 3.
      readout: 'factorized' or 'gaussian'.
      readout_pool: average-pooling of the core features before a factorized
        readout (1: none); cuts readout cost by its square.
      laplace_weight: Laplace smoothness penalty on the first layer.
      readout_l1: L1 penalty on the factorized readout weights.
      use_shifter: learn pupil centre -> readout shift.
      use_modulator: learn behaviour -> gain.
      learning_rate: Adam learning rate.
      batch_size: trials per step.
      max_epochs: upper bound on epochs.
      patience: epochs without a better validation correlation before stopping.
      seed: initialisation and shuffling seed.
    """

    channels: int = 12
    input_kernel: int = 9
    hidden_kernel: int = 3
    readout: str = "factorized"
    readout_pool: int = 4
    laplace_weight: float = 0.1
    readout_l1: float = 0.05
    use_shifter: bool = True
    use_modulator: bool = True
    learning_rate: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 20
    patience: int = 3
    seed: int = 0

    def validate(self) -> None:
        if self.readout not in READOUTS:
            raise ValueError(f"`readout` must be one of {READOUTS}. Received: readout={self.readout!r}")
        for name in ("channels", "input_kernel", "hidden_kernel", "readout_pool", "batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={getattr(self, name)}")


_LAPLACE = np.array([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]], np.float32)


def laplace_penalty(kernel: tf.Tensor) -> tf.Tensor:
    """sum(Laplace(kernel)^2) / sum(kernel^2) over a (k, k, in, out) kernel."""
    k, _, n_in, n_out = kernel.shape
    planes = tf.reshape(tf.transpose(kernel, [2, 3, 0, 1]), [n_in * n_out, k, k, 1])
    filtered = tf.nn.conv2d(planes, _LAPLACE[:, :, None, None], strides=1, padding="SAME")
    return tf.reduce_sum(tf.square(filtered)) / (tf.reduce_sum(tf.square(kernel)) + 1e-8)


class Core(keras.layers.Layer):
    """3 conv layers with dense skip connections; output = all layers concatenated."""

    def __init__(self, channels, input_kernel, hidden_kernel, seed=0, **kwargs):
        super().__init__(**kwargs)
        initializer = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
        self.convs = [
            keras.layers.Conv2D(channels, input_kernel, padding="same", kernel_initializer=initializer(0), name="conv1"),
            keras.layers.Conv2D(channels, hidden_kernel, padding="same", kernel_initializer=initializer(1), name="conv2"),
            keras.layers.Conv2D(channels, hidden_kernel, padding="same", kernel_initializer=initializer(2), name="conv3"),
        ]
        self.norms = [keras.layers.BatchNormalization(name=f"norm{i + 1}") for i in range(3)]

    def call(self, images, training=False):
        outputs = []
        x = images
        for conv, norm in zip(self.convs, self.norms):
            x = keras.activations.elu(norm(conv(x), training=training))
            outputs.append(x)
            x = keras.ops.concatenate(outputs, axis=-1)
        return x


def _interpolate_axis(features, positions, axis):
    """Linear interpolation of ``features`` at fractional ``positions`` along ``axis``.

    positions: (batch, size) coordinates; edges are extended (nearest).
    """
    size = features.shape[axis]
    lower = tf.floor(positions)
    fraction = positions - lower
    index0 = tf.cast(tf.clip_by_value(lower, 0, size - 1), tf.int32)
    index1 = tf.cast(tf.clip_by_value(lower + 1, 0, size - 1), tf.int32)
    first = tf.gather(features, index0, axis=axis, batch_dims=1)
    second = tf.gather(features, index1, axis=axis, batch_dims=1)
    shape = [-1, 1, 1, 1]
    shape[axis] = size
    fraction = tf.reshape(fraction, shape)
    return first * (1.0 - fraction) + second * fraction


def translate(features: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """Moves (batch, h, w, c) feature maps by ``shift`` (batch, 2) pixels (row, col).

    Bilinear and differentiable in ``shift`` (so a shifter can learn it);
    output[y, x] = input[y - shift_row, x - shift_col], edges extended.
    """
    height, width = features.shape[1], features.shape[2]
    rows = tf.range(height, dtype=features.dtype)[None] - shift[:, 0:1]
    cols = tf.range(width, dtype=features.dtype)[None] - shift[:, 1:2]
    return _interpolate_axis(_interpolate_axis(features, rows, 1), cols, 2)


class FactorizedReadout(keras.layers.Layer):
    """Per-neuron spatial mask x feature weights, with an optional image-plane shift."""

    def __init__(self, n_neurons, pool, l1, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.n_neurons = n_neurons
        self.pool = pool
        self.l1 = l1
        self.seed = seed

    def build(self, feature_shape):
        height = -(-feature_shape[1] // self.pool)
        width = -(-feature_shape[2] // self.pool)
        self.spatial = self.add_weight(
            shape=(self.n_neurons, height, width),
            initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=self.seed),
            name="spatial",
        )
        self.features = self.add_weight(
            shape=(self.n_neurons, feature_shape[-1]),
            initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=self.seed + 1),
            name="features",
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer="zeros", name="bias")

    def penalty(self):
        return self.l1 * (tf.reduce_mean(tf.abs(self.spatial)) + tf.reduce_mean(tf.abs(self.features)))

    def call(self, features, shift=None, training=False):
        if shift is not None:
            features = translate(features, shift)
        if self.pool > 1:
            features = tf.nn.avg_pool2d(features, self.pool, self.pool, padding="SAME")
        spatial_out = tf.einsum("bhwc,nhw->bnc", features, self.spatial)
        return tf.reduce_sum(spatial_out * self.features[None], axis=-1) + self.bias


class GaussianReadout(keras.layers.Layer):
    """Per-neuron point readout at a learned position mu, jittered by sigma in training."""

    def __init__(self, n_neurons, seed=0, init_mu_range=0.5, init_sigma=0.3, **kwargs):
        super().__init__(**kwargs)
        self.n_neurons = n_neurons
        self.seed = seed
        self.init_mu_range = init_mu_range
        self.init_sigma = init_sigma
        self.generator = tf.random.Generator.from_seed(seed)

    def build(self, feature_shape):
        self.mu = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.RandomUniform(-self.init_mu_range, self.init_mu_range, seed=self.seed),
            name="mu",
        )
        self.log_sigma = self.add_weight(
            shape=(self.n_neurons, 1), initializer=keras.initializers.Constant(np.log(self.init_sigma)), name="log_sigma"
        )
        self.features = self.add_weight(
            shape=(self.n_neurons, feature_shape[-1]),
            initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=self.seed + 1),
            name="features",
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer="zeros", name="bias")

    def penalty(self):
        return 0.0

    def call(self, features, shift=None, training=False):
        batch = tf.shape(features)[0]
        height, width = features.shape[1], features.shape[2]
        position = tf.tile(self.mu[None], [batch, 1, 1])
        if training:
            position += tf.exp(self.log_sigma)[None] * self.generator.normal(tf.shape(position))
        if shift is not None:
            # shift is (batch, 2) in pixels (row, col): convert to [-1, 1] units.
            scale = tf.constant([2.0 / max(height - 1, 1), 2.0 / max(width - 1, 1)])
            position += (shift * scale)[:, None, :]
        position = tf.clip_by_value(position, -1.0, 1.0)
        rows = (position[..., 0] + 1.0) * 0.5 * (height - 1)
        cols = (position[..., 1] + 1.0) * 0.5 * (width - 1)
        row0 = tf.clip_by_value(tf.floor(rows), 0.0, height - 2.0)
        col0 = tf.clip_by_value(tf.floor(cols), 0.0, width - 2.0)
        row_frac = (rows - row0)[..., None]
        col_frac = (cols - col0)[..., None]
        flat = tf.reshape(features, [batch, height * width, -1])

        def gather(r, c):
            index = tf.cast(r, tf.int32) * width + tf.cast(c, tf.int32)
            return tf.gather(flat, index, batch_dims=1)

        sampled = (
            gather(row0, col0) * (1 - row_frac) * (1 - col_frac)
            + gather(row0, col0 + 1) * (1 - row_frac) * col_frac
            + gather(row0 + 1, col0) * row_frac * (1 - col_frac)
            + gather(row0 + 1, col0 + 1) * row_frac * col_frac
        )
        return tf.reduce_sum(sampled * self.features[None], axis=-1) + self.bias


class PredictiveModel(keras.Model):
    """Core + readout + shifter + modulator -> ELU + 1 rates, one scan's neurons."""

    def __init__(self, n_neurons: int, config: PredictiveModelConfig, **kwargs):
        super().__init__(**kwargs)
        config.validate()
        self.config = config
        self.core = Core(config.channels, config.input_kernel, config.hidden_kernel, seed=config.seed, name="core")
        if config.readout == "factorized":
            self.readout = FactorizedReadout(n_neurons, config.readout_pool, config.readout_l1, seed=config.seed, name="readout")
        else:
            self.readout = GaussianReadout(n_neurons, seed=config.seed, name="readout")
        init = lambda i: keras.initializers.GlorotUniform(seed=config.seed + 10 + i)  # noqa: E731
        self.shifter = (
            keras.Sequential(
                [
                    keras.layers.Dense(8, activation="tanh", kernel_initializer=init(0)),
                    keras.layers.Dense(2, kernel_initializer="zeros"),
                ],
                name="shifter",
            )
            if config.use_shifter
            else None
        )
        self.modulator = (
            keras.Sequential(
                [
                    keras.layers.Dense(16, activation="elu", kernel_initializer=init(1)),
                    keras.layers.Dense(n_neurons, kernel_initializer="zeros"),
                ],
                name="modulator",
            )
            if config.use_modulator
            else None
        )

    def call(self, inputs, training=False):
        images, behavior, pupil_center = inputs
        features = self.core(images, training=training)
        shift = self.shifter(pupil_center) if self.shifter is not None else None
        drive = self.readout(features, shift=shift, training=training)
        if self.modulator is not None:
            drive = drive + self.modulator(behavior)  # log-gain: exp(m) multiplies ELU+1 approximately
        return keras.activations.elu(drive) + 1.0

    def regularization(self) -> tf.Tensor:
        return self.config.laplace_weight * laplace_penalty(self.core.convs[0].kernel) + self.readout.penalty()


def poisson_loss(responses, rates, eps=1e-8):
    """Mean Poisson negative log-likelihood (up to a constant): rate - y log(rate)."""
    return tf.reduce_mean(rates - responses * tf.math.log(rates + eps))


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


def evaluate_predictor(fitted: FittedPredictor, recording: Recording) -> None:
    """Sets ``test_correlation`` (v_a) and ``feve`` from the 'test' trials.

    v_a is the per-neuron correlation between prediction and single trials on
    the test tier (the repeats); FEVE compares the prediction averaged over
    each oracle image's repeats with the repeats' responses.
    """
    test = np.flatnonzero(recording.tiers == "test")
    if test.size < 2:
        raise ValueError(f"Evaluation needs 'test' trials. Received: {test.size} test trials")
    predicted = fitted.predict(recording.images[test], recording.behavior[test], recording.pupil_center[test])
    fitted.test_correlation = statistics.prediction_correlation(recording.responses[test], predicted)
    trials = recording.repeated_trials()
    predicted_repeats = fitted.predict(
        recording.images[trials.reshape(-1)],
        recording.behavior[trials.reshape(-1)],
        recording.pupil_center[trials.reshape(-1)],
    ).reshape(trials.shape + (-1,))
    # The image-driven part of the prediction: averaged over the repeats, so
    # that per-trial behaviour (which also drives the across-repeat "noise")
    # cannot push FEVE above 1.
    fitted.feve = statistics.fraction_explainable_variance_explained(
        recording.responses[trials], predicted_repeats.mean(axis=1)
    )
