"""Representational similarity, as defined by Li et al. (NeurIPS 2019).

Two halves, one definition each:

* NumPy, for building targets offline from recordings: SNR weights (Eq 1),
  the centred-cosine similarity of population responses (Eq 2), its unit-vector
  embedding (S = E E^T) and the oracle similarity over repeats (Eq 3). These
  validate their input and raise ``ValueError`` on degenerate data.
* TensorFlow, for the training graph: the centred-cosine similarity of a
  layer's features (Eq 9), the softmax-weighted combination of layers (Eq 10),
  the clamped-arctanh similarity loss over i < j pairs (Eq 8), and linear CKA.
  These never raise on values inside a graph; their degenerate cases are
  documented (a zero vector after centring has similarity 0 to everything).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

ARCTANH_EPS = 1e-5
_NORM_EPS = 1e-12


# ----------------------------------------------------------------------------
# NumPy: neural side (offline).
# ----------------------------------------------------------------------------


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"`{name}` contains {bad} NaN or infinite values. Remove or impute "
            "the affected trials/neurons before computing similarities."
        )


def check_repeated(repeated, name: str = "repeated") -> np.ndarray:
    """``repeated`` as float64 (n_images, n_repeats, n_neurons), at least 2 x 2, finite.

    Raises:
        ValueError: naming the received shape, or the count of non-finite values.
    """
    repeated = np.asarray(repeated, dtype=np.float64)
    if repeated.ndim != 3:
        raise ValueError(
            f"`{name}` must have shape (n_images, n_repeats, n_neurons). "
            f"Received: {name}.shape={repeated.shape}"
        )
    n_images, n_repeats, _ = repeated.shape
    if n_images < 2 or n_repeats < 2:
        raise ValueError(
            f"`{name}` needs at least 2 images and 2 repeats per image to "
            f"separate signal from noise. Received: {name}.shape={repeated.shape}"
        )
    _check_finite(repeated, name)
    return repeated


def signal_and_noise_variance(repeated) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron signal and noise variance from repeated presentations.

    Args:
        repeated: responses of shape (n_images, n_repeats, n_neurons).

    Returns:
        (signal, noise), each of shape (n_neurons,): signal = Var_i(E_t[r_ait])
        and noise = E_i(Var_t[r_ait]), both with the unbiased (ddof=1) estimator.
    """
    repeated = check_repeated(repeated)
    signal = repeated.mean(axis=1).var(axis=0, ddof=1)
    noise = repeated.var(axis=1, ddof=1).mean(axis=0)
    return signal, noise


def snr_weights(repeated) -> np.ndarray:
    """Signal-to-noise weight of each neuron, w_a = sigma_a / eta_a (Eq 1).

    Args:
        repeated: responses to the repeated ("oracle") images, shaped
            (n_images, n_repeats, n_neurons).

    Returns:
        Array of shape (n_neurons,).

    Raises:
        ValueError: on NaN/inf, fewer than 2 images or repeats, or a neuron with
            zero noise variance (its weight would be infinite).
    """
    signal, noise = signal_and_noise_variance(repeated)
    silent = np.flatnonzero(noise <= 0)
    if silent.size:
        raise ValueError(
            f"{silent.size} neuron(s) have zero trial-to-trial variance on the "
            f"repeated images (indices {silent[:10].tolist()}...), so their SNR "
            "weight is undefined. Drop these neurons (they are usually dead or "
            "saturated units) before computing weights."
        )
    return np.sqrt(signal / noise)


def _weighted(responses: np.ndarray, weights) -> np.ndarray:
    if weights is None:
        return responses
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (responses.shape[-1],):
        raise ValueError(
            f"`weights` must have one entry per neuron, shape ({responses.shape[-1]},). "
            f"Received: weights.shape={weights.shape}"
        )
    _check_finite(weights, "weights")
    return responses * weights


def _unit_rows(centred: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    zero = np.flatnonzero(norms.reshape(-1) <= _NORM_EPS)
    if zero.size:
        raise ValueError(
            f"{zero.size} {what} have a population response equal to the mean "
            f"response (zero norm after centring; indices {zero[:10].tolist()}), "
            "so their cosine similarity is undefined. Remove duplicated or blank "
            "stimuli, or check that the responses are not constant."
        )
    return centred / norms


def stimulus_embedding(responses, weights=None) -> np.ndarray:
    """Centred unit vectors e_i of Eq 2, so that S = E @ E.T.

    Args:
        responses: (n_stimuli, n_neurons) population responses.
        weights: optional (n_neurons,) per-neuron scaling (e.g. SNR weights).

    Returns:
        Array E of shape (n_stimuli, n_neurons) with unit-norm rows.
    """
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 2 or responses.shape[0] < 2:
        raise ValueError(
            "`responses` must have shape (n_stimuli, n_neurons) with at least 2 "
            f"stimuli. Received: responses.shape={responses.shape}"
        )
    _check_finite(responses, "responses")
    scaled = _weighted(responses, weights)
    return _unit_rows(scaled - scaled.mean(axis=0), "stimuli")


def similarity_matrix(responses, weights=None) -> np.ndarray:
    """Representational similarity S_ij = e_i . e_j (Eq 2).

    Each neuron is optionally scaled by ``weights``; responses are centred over
    stimuli and each stimulus's population vector is unit-normalised.

    Args:
        responses: (n_stimuli, n_neurons) population responses.
        weights: optional (n_neurons,) per-neuron scaling (e.g. SNR weights).

    Returns:
        Symmetric (n_stimuli, n_stimuli) matrix in [-1, 1] with unit diagonal.
    """
    embedding = stimulus_embedding(responses, weights)
    return np.clip(embedding @ embedding.T, -1.0, 1.0)


def oracle_similarity(repeated, weights=None) -> np.ndarray:
    """Oracle similarity over repeated presentations (Eq 3).

    Every repeat of every image is its own stimulus for Eq 2 (centred over all
    image-repeat pairs); S_oracle_ij averages S over all repeat combinations
    (t_i, t_j), excluding the trivial t_i == t_j pairs on the diagonal, whose
    value is therefore the mean similarity between different repeats of an
    image (a reliability, not 1).

    Args:
        repeated: (n_images, n_repeats, n_neurons) responses.
        weights: optional (n_neurons,) per-neuron scaling.

    Returns:
        Symmetric (n_images, n_images) matrix.
    """
    repeated = check_repeated(repeated)
    n_images, n_repeats, n_neurons = repeated.shape
    trials = stimulus_embedding(repeated.reshape(n_images * n_repeats, n_neurons), weights)
    mean_unit = trials.reshape(n_images, n_repeats, n_neurons).mean(axis=1)
    oracle = mean_unit @ mean_unit.T
    squared_norm = np.einsum("in,in->i", mean_unit, mean_unit)
    np.fill_diagonal(oracle, (n_repeats * squared_norm - 1.0) / (n_repeats - 1))
    return oracle


def upper_triangle(matrix) -> np.ndarray:
    """The i < j entries of a square matrix, row-major."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            "Expected a square matrix (one row and one column per stimulus). "
            f"Received: shape={matrix.shape}"
        )
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return matrix[rows, cols]


# ----------------------------------------------------------------------------
# TensorFlow: training graph.
# ----------------------------------------------------------------------------


def flatten_features(features: tf.Tensor) -> tf.Tensor:
    """Flattens (batch, ...) features to (batch, dims)."""
    features = tf.convert_to_tensor(features)
    return tf.reshape(features, [tf.shape(features)[0], -1])


def layer_similarity(features, mean=None) -> tf.Tensor:
    """Centred cosine similarity of one layer's features (Eq 9).

    Args:
        features: (batch, ...) features of the stimuli at one layer.
        mean: the mean feature vector to centre with, shape (dims,) or
            broadcastable to the flattened features; defaults to the batch mean.

    Returns:
        (batch, batch) similarity matrix. A feature vector equal to the mean
        (zero norm after centring) has similarity 0 with every stimulus,
        itself included, instead of NaN.
    """
    flat = flatten_features(features)
    if mean is None:
        mean = tf.reduce_mean(flat, axis=0)
    centred = flat - tf.cast(tf.reshape(mean, [1, -1]), flat.dtype)
    squared_norm = tf.reduce_sum(tf.square(centred), axis=1, keepdims=True)
    unit = centred * tf.math.rsqrt(tf.maximum(squared_norm, _NORM_EPS))
    return tf.matmul(unit, unit, transpose_b=True)


def combine_similarities(similarities, gamma_logits) -> tf.Tensor:
    """S_CNN = sum_k softmax(gamma_logits)_k S_CNN-k (Eq 10): one logit per layer similarity."""
    similarities = list(similarities)
    logits_shape = tf.convert_to_tensor(gamma_logits).shape
    if logits_shape.rank != 1 or (logits_shape[0] is not None and logits_shape[0] != len(similarities)):
        raise ValueError(
            "combine_similarities needs one gamma logit per layer similarity. Received: "
            f"{len(similarities)} similarities and gamma_logits of shape {tuple(logits_shape)}"
        )
    stacked = tf.stack(similarities, axis=0)
    gamma = tf.nn.softmax(tf.cast(gamma_logits, stacked.dtype))
    return tf.tensordot(gamma, stacked, axes=1)


def _pair_mask(batch: tf.Tensor) -> tf.Tensor:
    ones = tf.ones([batch, batch], dtype=tf.bool)
    return tf.math.logical_xor(tf.linalg.band_part(ones, 0, -1), tf.linalg.band_part(ones, 0, 0))


def upper_pairs(matrix) -> tf.Tensor:
    """The i < j entries of a (batch, batch) tensor, row-major."""
    matrix = tf.convert_to_tensor(matrix)
    return tf.boolean_mask(matrix, _pair_mask(tf.shape(matrix)[0]))


def _check_pair_shapes(s_pred: tf.Tensor, s_target: tf.Tensor) -> None:
    if s_pred.shape.rank != 2 or s_target.shape.rank != 2:
        raise ValueError(
            "Similarity matrices must be 2-D (batch, batch). "
            f"Received: s_pred.shape={s_pred.shape}, s_target.shape={s_target.shape}"
        )
    if not s_pred.shape.is_compatible_with(s_target.shape):
        raise ValueError(
            "Predicted and target similarity matrices must cover the same stimuli. "
            f"Received: s_pred.shape={s_pred.shape}, s_target.shape={s_target.shape}"
        )
    if not s_pred.shape[0:1].is_compatible_with(s_pred.shape[1:2]):
        raise ValueError(
            "Similarity matrices must be square (batch, batch): one row and one column per "
            f"stimulus. Received: s_pred.shape={s_pred.shape}"
        )


def similarity_loss(s_pred, s_target, eps: float = ARCTANH_EPS) -> tf.Tensor:
    """Mean over i < j of [arctanh(S_pred_ij) - arctanh(S_target_ij)]^2 (Eq 8).

    Both similarities are clamped to [-1 + eps, 1 - eps] before arctanh, so the
    loss stays finite; the diagonal (exactly 1) is never used.

    Args:
        s_pred: (batch, batch) model similarity.
        s_target: (batch, batch) target (neural) similarity.
        eps: clamp margin.

    Returns:
        Scalar loss in the dtype of ``s_pred``.
    """
    s_pred = tf.convert_to_tensor(s_pred)
    s_target = tf.cast(tf.convert_to_tensor(s_target), s_pred.dtype)
    _check_pair_shapes(s_pred, s_target)
    bound = 1.0 - eps
    difference = tf.atanh(tf.clip_by_value(upper_pairs(s_pred), -bound, bound)) - tf.atanh(
        tf.clip_by_value(upper_pairs(s_target), -bound, bound)
    )
    return tf.reduce_mean(tf.square(difference))


def pair_correlation(s_pred, s_target) -> tf.Tensor:
    """Pearson correlation between two similarity matrices over i < j pairs."""
    s_pred = tf.convert_to_tensor(s_pred)
    s_target = tf.cast(tf.convert_to_tensor(s_target), s_pred.dtype)
    _check_pair_shapes(s_pred, s_target)
    a = upper_pairs(s_pred)
    b = upper_pairs(s_target)
    a = a - tf.reduce_mean(a)
    b = b - tf.reduce_mean(b)
    denominator = tf.sqrt(tf.reduce_sum(tf.square(a)) * tf.reduce_sum(tf.square(b)))
    return tf.math.divide_no_nan(tf.reduce_sum(a * b), denominator)


def cka(x, y) -> tf.Tensor:
    """Linear centred kernel alignment between two representations.

    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on stimulus-centred X, Y
    (Kornblith et al. 2019; the alignment loss of Dapello et al. 2023).

    Args:
        x: (n_stimuli, ...) features.
        y: (n_stimuli, ...) features or responses of the same stimuli.

    Returns:
        Scalar in [0, 1].
    """
    x = flatten_features(x)
    y = tf.cast(flatten_features(y), x.dtype)
    x = x - tf.reduce_mean(x, axis=0, keepdims=True)
    y = y - tf.reduce_mean(y, axis=0, keepdims=True)
    cross = tf.reduce_sum(tf.square(tf.matmul(y, x, transpose_a=True)))
    self_x = tf.norm(tf.matmul(x, x, transpose_a=True))
    self_y = tf.norm(tf.matmul(y, y, transpose_a=True))
    return tf.math.divide_no_nan(cross, self_x * self_y)


def cka_from_similarity(s_pred, s_target) -> tf.Tensor:
    """Linear CKA between the representations behind two Gram matrices.

    With K = X X^T and L = Y Y^T of stimulus-centred X and Y, linear CKA is
    <HKH, HLH>_F / (||HKH||_F ||HLH||_F). A cosine-similarity matrix is the
    Gram matrix of unit-normalised vectors, so this lets the CKA option use the
    same (batch, batch) targets as the arctanh loss.
    """
    s_pred = tf.convert_to_tensor(s_pred)
    s_target = tf.cast(tf.convert_to_tensor(s_target), s_pred.dtype)
    _check_pair_shapes(s_pred, s_target)

    def double_centre(gram):
        gram = gram - tf.reduce_mean(gram, axis=0, keepdims=True)
        return gram - tf.reduce_mean(gram, axis=1, keepdims=True)

    k = double_centre(s_pred)
    l = double_centre(s_target)
    return tf.math.divide_no_nan(tf.reduce_sum(k * l), tf.norm(k) * tf.norm(l))


def cka_loss(s_pred, s_target) -> tf.Tensor:
    """log(1 - CKA) between the Gram matrices (Dapello et al. 2023)."""
    return tf.math.log(tf.maximum(1.0 - cka_from_similarity(s_pred, s_target), _NORM_EPS))


# ---------------------------------------------------------------------------------------------
# Similarity losses by name (config.similarity.loss), in the style of keras.losses.get.
# ---------------------------------------------------------------------------------------------

_SIMILARITY_LOSSES: dict = {}


def register_similarity_loss(name: str, loss=None):
    """Registers ``loss(s_pred, s_target, *, eps) -> scalar`` as ``name``; usable as a decorator.

    The model (``NeuralRegularizedModel(similarity_loss=name)``), the training config's check
    and the study's conditions then accept ``name``; nothing else names it.
    """
    def register(function):
        if name in _SIMILARITY_LOSSES:
            raise ValueError(f"A similarity loss named {name!r} is registered already.")
        _SIMILARITY_LOSSES[name] = function
        return function

    return register if loss is None else register(loss)


def unregister_similarity_loss(name: str) -> None:
    """Removes the loss ``name`` (tests register and remove their own)."""
    _SIMILARITY_LOSSES.pop(name, None)


def similarity_loss_names() -> tuple[str, ...]:
    """The registered loss names, in registration order."""
    return tuple(_SIMILARITY_LOSSES)


def get_similarity_loss(name: str):
    """The loss registered as ``name``.

    Raises:
        ValueError: no such loss, listing the registered ones.
    """
    try:
        return _SIMILARITY_LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown similarity loss {name!r}; registered: {', '.join(_SIMILARITY_LOSSES)} "
            "(neuroreg_tf.similarity.register_similarity_loss adds one)."
        ) from None


register_similarity_loss("arctanh", lambda s_pred, s_target, *, eps=ARCTANH_EPS: similarity_loss(s_pred, s_target, eps))
register_similarity_loss("cka", lambda s_pred, s_target, *, eps=ARCTANH_EPS: cka_loss(s_pred, s_target))
