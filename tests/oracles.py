"""Independent reference computations for the tests (no tests here).

Every function is written from the equations in ``/work/shared/METHOD.md`` as explicit
Python loops over neurons, images, repeats and pairs, in float64, and imports nothing from
``neuroreg_tf``: a test that takes its expected value from here does not compare the library
with itself.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def pearson(a, b) -> float:
    """Pearson correlation of two 1-D samples, by the textbook sums."""
    a = [float(v) for v in np.ravel(a)]
    b = [float(v) for v in np.ravel(b)]
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    spread_a = math.sqrt(sum((x - mean_a) ** 2 for x in a))
    spread_b = math.sqrt(sum((y - mean_b) ** 2 for y in b))
    return covariance / (spread_a * spread_b)


def variance(values, ddof: int = 1) -> float:
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - ddof)


def snr_weights(repeated) -> np.ndarray:
    """Eq 1: w_a = sqrt(Var_i(E_t r_ait) / E_i(Var_t r_ait)), unbiased variances."""
    n_images, n_repeats, n_neurons = np.shape(repeated)
    weights = np.empty(n_neurons)
    for a in range(n_neurons):
        trial_means = [sum(repeated[i][t][a] for t in range(n_repeats)) / n_repeats for i in range(n_images)]
        signal = variance(trial_means)
        noise = sum(variance([repeated[i][t][a] for t in range(n_repeats)]) for i in range(n_images)) / n_images
        weights[a] = math.sqrt(signal / noise)
    return weights


def centred_cosine(responses, weights=None) -> np.ndarray:
    """Eq 2: scale each neuron, centre over stimuli, S_ij = cosine of the centred rows."""
    responses = np.asarray(responses, dtype=np.float64)
    n_stimuli, n_neurons = responses.shape
    scale = np.ones(n_neurons) if weights is None else np.asarray(weights, dtype=np.float64)
    scaled = [[responses[i, a] * scale[a] for a in range(n_neurons)] for i in range(n_stimuli)]
    mean = [sum(scaled[i][a] for i in range(n_stimuli)) / n_stimuli for a in range(n_neurons)]
    centred = [[scaled[i][a] - mean[a] for a in range(n_neurons)] for i in range(n_stimuli)]
    norms = [math.sqrt(sum(v * v for v in row)) for row in centred]
    out = np.empty((n_stimuli, n_stimuli))
    for i in range(n_stimuli):
        for j in range(n_stimuli):
            out[i, j] = sum(x * y for x, y in zip(centred[i], centred[j])) / (norms[i] * norms[j])
    return out


def oracle_similarity(repeated, weights=None) -> np.ndarray:
    """Eq 3: every repeat its own stimulus for Eq 2, S averaged over repeat pairs (not t_i == t_j on i == j)."""
    n_images, n_repeats, n_neurons = np.shape(repeated)
    trials = centred_cosine(np.reshape(repeated, (n_images * n_repeats, n_neurons)), weights)
    out = np.empty((n_images, n_images))
    for i, j in itertools.product(range(n_images), repeat=2):
        values = [
            trials[i * n_repeats + ti, j * n_repeats + tj]
            for ti in range(n_repeats)
            for tj in range(n_repeats)
            if not (i == j and ti == tj)
        ]
        out[i, j] = sum(values) / len(values)
    return out


def upper_pairs(matrix) -> list[float]:
    """The i < j entries, row by row."""
    n = len(matrix)
    return [float(matrix[i][j]) for i in range(n) for j in range(i + 1, n)]


def fluctuations(repeated_per_scan, weights_per_scan):
    """Eq 4 and Eq 5 by loops: (delta_scan, delta_repeat) in the documented order."""
    oracles = [oracle_similarity(r, w) for r, w in zip(repeated_per_scan, weights_per_scan)]
    n_scans, n_images = len(oracles), oracles[0].shape[0]
    delta_scan = []
    for h in range(n_scans):
        for i in range(n_images):
            for j in range(i + 1, n_images):
                mean = sum(o[i, j] for o in oracles) / n_scans
                delta_scan.append(oracles[h][i, j] - mean)
    delta_repeat = []
    for h, (repeated, weights) in enumerate(zip(repeated_per_scan, weights_per_scan)):
        n_images, n_repeats, n_neurons = np.shape(repeated)
        trials = centred_cosine(np.reshape(repeated, (n_images * n_repeats, n_neurons)), weights)
        for i in range(n_images):
            for t1, t2 in itertools.combinations(range(n_repeats), 2):
                delta_repeat.append(trials[i * n_repeats + t1, i * n_repeats + t2] - oracles[h][i, i])
    return np.array(delta_scan), np.array(delta_repeat)


def softmax(logits) -> np.ndarray:
    exponentials = [math.exp(v) for v in logits]
    return np.array([e / sum(exponentials) for e in exponentials])
