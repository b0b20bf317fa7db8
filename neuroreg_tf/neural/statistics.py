"""Neural statistics on arrays: reliability, fluctuations, prediction quality.

Eq 1 (SNR weights), Eq 2 and Eq 3 (similarities) live in
``neuroreg_tf.similarity``; this module adds what the paper and the
predictive-model literature measure around them:

* the fluctuation of S_oracle across scans vs across repeats (Eq 4-5),
* per-neuron oracle correlation (leave-one-out over repeats),
* per-neuron correlation of predictions with data (v_a of Eq 6),
* the explainable-variance fraction and the fraction of explainable variance
  explained (FEVE) by a prediction,
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf import similarity


def _column_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / np.where(denominator > 0, denominator, 1), 0.0)


def oracle_correlation(repeated) -> np.ndarray:
    """Per-neuron leave-one-out oracle correlation.

    Each single trial is correlated (over all images and repeats) with the mean
    of the other repeats of the same image.

    Args:
        repeated: (n_images, n_repeats, n_neurons) responses to repeated images.

    Returns:
        (n_neurons,) correlations; 0 for a neuron with no variance.
    """
    repeated = similarity.check_repeated(repeated)
    n_images, n_repeats, n_neurons = repeated.shape
    leave_one_out = (repeated.sum(axis=1, keepdims=True) - repeated) / (n_repeats - 1)
    return _column_correlation(
        repeated.reshape(-1, n_neurons), leave_one_out.reshape(-1, n_neurons)
    )


def prediction_correlation(responses, predictions) -> np.ndarray:
    """Per-neuron Pearson correlation over trials, v_a of Eq 6.

    Args:
        responses: (n_trials, n_neurons) measured responses.
        predictions: (n_trials, n_neurons) predicted responses.

    Returns:
        (n_neurons,) correlations; 0 where either side has no variance.
    """
    responses = np.asarray(responses, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if responses.shape != predictions.shape or responses.ndim != 2:
        raise ValueError(
            "`responses` and `predictions` must both be (n_trials, n_neurons). Received: "
            f"responses.shape={responses.shape}, predictions.shape={predictions.shape}"
        )
    return _column_correlation(responses, predictions)


def explainable_variance_fraction(repeated) -> np.ndarray:
    """Per-neuron fraction of the response variance that is stimulus-driven.

    (Var_total - E_i[Var_t]) / Var_total over all repeated trials.
    """
    repeated = similarity.check_repeated(repeated)
    total = repeated.reshape(-1, repeated.shape[-1]).var(axis=0, ddof=1)
    noise = repeated.var(axis=1, ddof=1).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (total - noise) / np.where(total > 0, total, 1), 0.0)


def fraction_explainable_variance_explained(repeated, predictions) -> np.ndarray:
    """Per-neuron FEVE = 1 - (MSE - noise) / (Var_total - noise) on repeated trials.

    Args:
        repeated: (n_images, n_repeats, n_neurons) responses.
        predictions: predictions for the same trials, same shape (or
            (n_images, n_neurons) when the prediction does not vary over repeats).

    Returns:
        (n_neurons,) FEVE; NaN where the neuron has no explainable variance.
    """
    repeated = similarity.check_repeated(repeated)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape == (repeated.shape[0], repeated.shape[2]):
        predictions = np.broadcast_to(predictions[:, None, :], repeated.shape)
    if predictions.shape != repeated.shape:
        raise ValueError(
            "`predictions` must match `repeated` (n_images, n_repeats, n_neurons) or be "
            f"(n_images, n_neurons). Received: predictions.shape={predictions.shape}, "
            f"repeated.shape={repeated.shape}"
        )
    total = repeated.reshape(-1, repeated.shape[-1]).var(axis=0, ddof=1)
    noise = repeated.var(axis=1, ddof=1).mean(axis=0)
    mse = ((repeated - predictions) ** 2).reshape(-1, repeated.shape[-1]).mean(axis=0)
    explainable = total - noise
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(explainable > 0, 1.0 - (mse - noise) / explainable, np.nan)


def scan_and_repeat_fluctuations(repeated_per_scan, weights_per_scan=None):
    """Fluctuations of the oracle similarity across scans (Eq 4) and repeats (Eq 5).

    Args:
        repeated_per_scan: list over scans h of (n_images, n_repeats, n_neurons_h)
            responses to the same oracle images in the same order (neurons may
            differ between scans).
        weights_per_scan: optional list of (n_neurons_h,) weights (Eq 1 weights
            of each scan by default).

    Returns:
        (delta_scan, delta_repeat): 1-D arrays. delta_scan holds
        S_oracle-h_ij - E_h[S_oracle-h_ij] for every scan h and pair i < j;
        delta_repeat holds S_data-h_{i t1, i t2} - S_oracle-h_ii for every scan,
        image i and repeat pair t1 < t2.
    """
    if len(repeated_per_scan) < 2:
        raise ValueError(
            "The fluctuation across scans needs at least 2 scans. "
            f"Received: {len(repeated_per_scan)} scan(s)"
        )
    shapes = {np.shape(r)[:2] for r in repeated_per_scan}
    if len(shapes) != 1:
        raise ValueError(
            "Every scan must show the same oracle images with the same number of repeats. "
            f"Received: (n_images, n_repeats) per scan = {sorted(shapes)}"
        )
    if weights_per_scan is None:
        weights_per_scan = [similarity.snr_weights(r) for r in repeated_per_scan]
    oracles, delta_repeat = [], []
    for repeated, weights in zip(repeated_per_scan, weights_per_scan):
        repeated = similarity.check_repeated(repeated)
        n_images, n_repeats, n_neurons = repeated.shape
        oracle = similarity.oracle_similarity(repeated, weights)
        oracles.append(oracle)
        units = similarity.stimulus_embedding(repeated.reshape(-1, n_neurons), weights)
        units = units.reshape(n_images, n_repeats, n_neurons)
        within = np.einsum("itn,isn->its", units, units)
        first, second = np.triu_indices(n_repeats, k=1)
        delta_repeat.append((within[:, first, second] - np.diag(oracle)[:, None]).reshape(-1))
    oracles = np.stack(oracles)
    deviations = oracles - oracles.mean(axis=0)
    delta_scan = np.concatenate([similarity.upper_triangle(d) for d in deviations])
    return delta_scan, np.concatenate(delta_repeat)


def trial_pair_similarities(repeated, weights=None) -> np.ndarray:
    """Single-trial S_data for every oracle pair i < j and repeat pair (t_i, t_j).

    These are the values Eq 3 averages; Fig. 1D scatters them against S_oracle.

    Returns:
        (n_pairs, n_repeats**2) array, pairs in ``np.triu_indices(n_images, 1)`` order.
    """
    repeated = similarity.check_repeated(repeated)
    n_images, n_repeats, n_neurons = repeated.shape
    units = similarity.stimulus_embedding(repeated.reshape(-1, n_neurons), weights)
    trial_similarity = (units @ units.T).reshape(n_images, n_repeats, n_images, n_repeats)
    rows, cols = np.triu_indices(n_images, k=1)
    return trial_similarity[rows, :, cols, :].reshape(rows.size, -1)
