"""Brain alignment of a trained network: how well each tapped layer predicts V1 neurons.

The measure Brain-Score made standard for V1, on the SIMULATED population of a target build:
new natural-image stimuli (none of them a target stimulus or a training image) are shown to the
build's SIMULATED animal (``simulation.experiment_population``: the same neurons, gains and noise);
a ridge readout from each layer's features to single-trial responses is fitted on ``n_train``
stimuli, its penalty chosen by (exact, closed-form) leave-one-out cross-validation, and scored on ``n_test`` other stimuli, each
shown ``n_repeats`` times:

* ``r``: Pearson r per neuron between the readout's prediction and the mean over the repeats;
* ``ceiling``: the r a noiseless perfect predictor would reach against that mean, estimated from the
  repeats as in recorded data, sqrt of the Spearman-Brown corrected split-half (even / odd repeats)
  reliability;
* ``normalised``: r / ceiling, over the neurons whose reliability is at least ``min_reliability``;
* ``r_truth`` (SIMULATED only): Pearson r against the noiseless rates themselves.

Each summary is the median over neurons. A network's alignment is its best layer's median
normalised predictivity (Brain-Score's layer choice, here on held-out stimuli of the same set).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np

from neuroreg_tf.data.stimuli import natural_stimuli
from neuroreg_tf.models.resnet import feature_model
from neuroreg_tf.neural import simulation

# The readout's penalties, as multiples of the mean squared norm of the centred feature vectors.
RIDGE_GRID = tuple(10.0 ** (k / 2) for k in range(-8, 7))  # 1e-4 ... 1e3, half-decade steps


@dataclasses.dataclass(frozen=True)
class AlignmentSettings:
    """How the alignment is measured (recorded with every result; another setting is another result)."""

    n_train: int = 1000  # stimuli the readout is fitted on, one trial each
    n_test: int = 100  # stimuli it is scored on ...
    n_repeats: int = 10  # ... each shown this many times
    n_neurons: int = 200  # neurons drawn from the SIMULATED population
    min_reliability: float = 0.1  # neurons below this split-half reliability are not normalised
    seed: int = 0  # stimuli, neurons and trial noise

    def __post_init__(self):
        if self.n_train < 10 or self.n_test < 3 or self.n_repeats < 2 or self.n_neurons < 1:
            raise ValueError(
                "Need n_train >= 10, n_test >= 3, n_repeats >= 2 and n_neurons >= 1. Received: "
                f"n_train={self.n_train}, n_test={self.n_test}, n_repeats={self.n_repeats}, n_neurons={self.n_neurons}"
            )


@dataclasses.dataclass
class NeuralResponses:
    """Responses of a (SIMULATED) population to stimuli that no training used."""

    train_stimuli: np.ndarray  # (n_train, height, width, 1) in [0, 1]
    train_responses: np.ndarray  # (n_train, n_neurons), one trial each
    test_stimuli: np.ndarray  # (n_test, height, width, 1)
    test_repeats: np.ndarray  # (n_test, n_repeats, n_neurons)
    test_truth: np.ndarray | None  # (n_test, n_neurons) noiseless rates (SIMULATED only)


# Stimulus seeds far from any build's own (a build draws its stimuli with its simulation seed).
STIMULUS_SEED_OFFSET = 1_000_003


def simulated_responses(simulation_arguments: dict, settings: AlignmentSettings = AlignmentSettings()) -> NeuralResponses:
    """New stimuli shown to the SIMULATED animal ``simulate_experiment(**simulation_arguments)`` records.

    Trials have the recordings' noise (shared gain fluctuations, overdispersed counts) at neutral
    behaviour and without eye movements, so the readout sees the visual part of the responses.
    """
    population = simulation.experiment_population(**simulation_arguments)
    height, width = population.image_shape
    rng = np.random.default_rng([settings.seed, 21])
    neurons = np.sort(rng.choice(population.n_neurons, min(settings.n_neurons, population.n_neurons), replace=False))
    stimuli = natural_stimuli(settings.n_train + settings.n_test, height=height, width=width,
                              seed=STIMULUS_SEED_OFFSET + settings.seed)
    train, test = stimuli[: settings.n_train], stimuli[settings.n_train:]

    def trials(rates):
        noisy = rates * population.latent_gain(rng, rates.shape[0], neurons)
        return simulation.noisy_trials(noisy, rng, population.dispersion[neurons])

    truth = population.visual_drive(test, neurons)
    return NeuralResponses(
        train_stimuli=train,
        train_responses=trials(population.visual_drive(train, neurons)),
        test_stimuli=test,
        test_repeats=np.stack([trials(truth) for _ in range(settings.n_repeats)], axis=1),
        test_truth=truth,
    )


def _pearson_columns(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson r of each column pair; NaN where a column is constant."""
    a = first - first.mean(axis=0)
    b = second - second.mean(axis=0)
    denominator = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / denominator, np.nan)


class KernelRidge:
    """Ridge regression with an unpenalised intercept, in its dual form (cost set by the stimuli).

    ``gram`` holds the uncentred inner products of every stimulus's features (training rows
    ``train``, any others as queries); the fit centres features and responses by the training mean.
    With the centred kernel K = U diag(s) U^T, the hat matrix is 1 1^T / n + U diag(s / (s + lam)) U^T,
    so every penalty's leave-one-out predictions come from one eigendecomposition.
    """

    def __init__(self, gram: np.ndarray, train: np.ndarray, responses: np.ndarray):
        self.gram, self.train = gram, np.asarray(train)
        train_gram = gram[np.ix_(self.train, self.train)]
        self.row_means = train_gram.mean(axis=1)  # x_i . m
        self.mean_norm = float(self.row_means.mean())  # m . m
        kernel = train_gram - self.row_means[:, None] - self.row_means[None, :] + self.mean_norm
        self.scale = float(np.trace(kernel)) / len(kernel)  # penalties are multiples of it
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(kernel)
        self.responses = np.asarray(responses, np.float64)
        self.response_mean = self.responses.mean(axis=0)
        self.projected = self.eigenvectors.T @ (self.responses - self.response_mean)

    def _shrinkage(self, penalty: float) -> np.ndarray:
        return 1.0 / (self.eigenvalues + penalty * self.scale)

    def predict(self, query: np.ndarray, penalty: float) -> np.ndarray:
        """Predictions for the ``gram`` rows ``query``."""
        cross = self.gram[np.ix_(np.asarray(query), self.train)]
        kernel = cross - cross.mean(axis=1, keepdims=True) - self.row_means[None, :] + self.mean_norm
        dual = self.eigenvectors @ (self.projected * self._shrinkage(penalty)[:, None])
        return kernel @ dual + self.response_mean

    def leave_one_out(self, penalty: float) -> np.ndarray:
        """Each training stimulus's prediction by the fit without it (exact, closed form)."""
        weights = self.eigenvalues * self._shrinkage(penalty)
        fitted = self.eigenvectors @ (self.projected * weights[:, None]) + self.response_mean
        leverage = 1.0 / len(self.train) + (self.eigenvectors**2) @ weights
        return self.responses - (self.responses - fitted) / (1.0 - leverage)[:, None]


def choose_penalty(ridge: KernelRidge, grid=RIDGE_GRID) -> float:
    """The penalty of ``grid`` whose leave-one-out predictions have the best mean r over neurons."""
    scores = [np.nanmean(_pearson_columns(ridge.leave_one_out(penalty), ridge.responses)) for penalty in grid]
    return float(grid[int(np.argmax(scores))])


def ridge_predictions(train_features, train_responses, test_features) -> tuple[np.ndarray, float]:
    """Predictions for ``test_features`` of a ridge readout fitted to the training pairs, and its
    penalty (``choose_penalty``; a multiple of the mean squared centred feature norm)."""
    features = np.concatenate([np.reshape(train_features, (len(train_features), -1)),
                               np.reshape(test_features, (len(test_features), -1))]).astype(np.float32)
    gram = (features @ features.T).astype(np.float64)
    n_train = len(train_features)
    ridge = KernelRidge(gram, np.arange(n_train), train_responses)
    penalty = choose_penalty(ridge)
    return ridge.predict(np.arange(n_train, len(features)), penalty), penalty


def split_half_reliability(repeats: np.ndarray) -> np.ndarray:
    """Spearman-Brown corrected r between the means of even and odd repeats, per neuron."""
    half = _pearson_columns(repeats[:, 0::2].mean(axis=1), repeats[:, 1::2].mean(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * half / (1 + half)


def readout_predictivity(train_features, train_responses, test_features, test_repeats, test_truth=None, *,
                         min_reliability: float) -> dict[str, Any]:
    """One layer's held-out predictivity (the module docstring's measures)."""
    prediction, penalty = ridge_predictions(train_features, train_responses, test_features)
    r = _pearson_columns(prediction, test_repeats.mean(axis=1))
    reliability = split_half_reliability(test_repeats)
    reliable = reliability >= min_reliability
    result = {
        "median_r": float(np.nanmedian(r)),
        "median_normalised": float(np.nanmedian(r[reliable] / np.sqrt(reliability[reliable]))) if reliable.any() else None,
        "reliable_neurons": int(reliable.sum()),
        "penalty": penalty,
        "features": int(np.prod(np.shape(train_features)[1:])),
    }
    if test_truth is not None:
        result["median_r_truth"] = float(np.nanmedian(_pearson_columns(prediction, test_truth)))
    return result


def network_alignment(classifier: keras.Model, layers: list[str], responses: NeuralResponses,
                      settings: AlignmentSettings = AlignmentSettings(), *, batch_size: int = 256,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Each layer's held-out predictivity of the neurons in ``responses``, and the best layer."""
    taps = feature_model(classifier, layers)

    def layer_features(stimuli):
        outputs = taps.predict(stimuli, batch_size=batch_size, verbose=0)
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    train_features, test_features = layer_features(responses.train_stimuli), layer_features(responses.test_stimuli)
    per_layer = {}
    for index, layer in enumerate(layers):
        per_layer[layer] = readout_predictivity(
            train_features[index], responses.train_responses, test_features[index], responses.test_repeats,
            responses.test_truth, min_reliability=settings.min_reliability)
        if progress:
            progress(f"alignment {index + 1}/{len(layers)} {layer}: median r {per_layer[layer]['median_r']:.3f}, "
                     f"normalised {per_layer[layer]['median_normalised']}")
    scored = {layer: v["median_normalised"] for layer, v in per_layer.items() if v["median_normalised"] is not None}
    best = max(scored, key=scored.get) if scored else None
    return {
        "layers": per_layer,
        "best_layer": best,
        "alignment": scored.get(best) if best else None,
        "settings": dataclasses.asdict(settings),
    }
