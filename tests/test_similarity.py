"""Every similarity equation against an independent, loop-based formula."""

import numpy as np
import pytest
import tensorflow as tf

import oracles
from neuroreg_tf import similarity


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_snr_weights_match_definition(rng):
    repeated = rng.gamma(2.0, size=(12, 5, 9))
    weights = similarity.snr_weights(repeated)
    for neuron in range(9):
        trial_means = [np.mean(repeated[i, :, neuron]) for i in range(12)]
        signal = np.var(trial_means, ddof=1)
        noise = np.mean([np.var(repeated[i, :, neuron], ddof=1) for i in range(12)])
        assert weights[neuron] == pytest.approx(np.sqrt(signal / noise), rel=1e-10)


def test_snr_weights_rank_reliable_neurons_higher(rng):
    signal = rng.normal(size=(30, 1, 2)) * np.array([3.0, 3.0])
    noise = rng.normal(size=(30, 8, 2)) * np.array([0.5, 5.0])
    weights = similarity.snr_weights(signal + noise)
    assert weights[0] > 3 * weights[1]


def test_similarity_matrix_matches_eq2(rng):
    responses = rng.normal(size=(15, 20))
    weights = rng.uniform(0.5, 2.0, size=20)
    np.testing.assert_allclose(
        similarity.similarity_matrix(responses, weights), oracles.centred_cosine(responses, weights), atol=1e-12
    )


def test_similarity_matrix_is_a_valid_similarity(rng):
    s = similarity.similarity_matrix(rng.normal(size=(25, 6)))
    np.testing.assert_allclose(s, s.T)
    np.testing.assert_allclose(np.diag(s), 1.0)
    assert s.min() >= -1 and s.max() <= 1


def test_embedding_reproduces_matrix(rng):
    responses = rng.normal(size=(10, 4))
    e = similarity.stimulus_embedding(responses)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0)
    np.testing.assert_allclose(e @ e.T, similarity.similarity_matrix(responses), atol=1e-12)


def test_oracle_similarity_matches_eq3_loops(rng):
    n_images, n_repeats, n_neurons = 6, 4, 11
    repeated = rng.normal(size=(n_images, n_repeats, n_neurons)) + rng.normal(size=(n_images, 1, n_neurons))
    weights = rng.uniform(0.5, 2.0, n_neurons)
    expected = oracles.oracle_similarity(repeated, weights)
    np.testing.assert_allclose(similarity.oracle_similarity(repeated, weights), expected, atol=1e-12)


@pytest.mark.parametrize(
    "function, array, message",
    [
        (similarity.snr_weights, np.ones((4, 3, 2)), "zero trial-to-trial variance"),
        (similarity.snr_weights, np.ones((4, 1, 2)), "at least 2 images and 2 repeats"),
        (similarity.snr_weights, np.ones((4, 3)), "shape \\(n_images, n_repeats, n_neurons\\)"),
        (similarity.similarity_matrix, np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 1.0]]) * [[1], [1], [0]] + [[0, 0], [0, 0], [1, 2]], "zero norm after centring"),
        (similarity.similarity_matrix, np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (similarity.similarity_matrix, np.ones((1, 5)), "at least 2"),
    ],
)
def test_degenerate_input_is_rejected_clearly(function, array, message):
    with pytest.raises(ValueError, match=message):
        function(array)


def test_two_images_with_two_repeats_are_enough(rng):
    repeated = rng.normal(size=(2, 2, 6))
    s = similarity.oracle_similarity(repeated)
    assert s.shape == (2, 2) and np.all(np.isfinite(s))
    with pytest.raises(ValueError, match="at least 2 images and 2 repeats"):
        similarity.oracle_similarity(repeated[:1])


def test_weights_of_wrong_length_are_rejected(rng):
    with pytest.raises(ValueError, match="one entry per neuron"):
        similarity.similarity_matrix(rng.normal(size=(5, 4)), np.ones(3))


# ---------------------------------------------------------------- TensorFlow side


def test_layer_similarity_equals_eq2_on_flattened_features(rng):
    features = rng.normal(size=(9, 3, 4, 5)).astype(np.float32)
    expected = oracles.centred_cosine(features.reshape(9, -1).astype(np.float64))
    np.testing.assert_allclose(similarity.layer_similarity(features).numpy(), expected, atol=1e-5)


def test_layer_similarity_with_given_mean(rng):
    features = rng.normal(size=(6, 10)).astype(np.float32)
    mean = rng.normal(size=10).astype(np.float32)
    centred = features - mean
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(similarity.layer_similarity(features, mean).numpy(), unit @ unit.T, atol=1e-5)


def test_layer_similarity_invariances(rng):
    features = rng.normal(size=(8, 12)).astype(np.float32)
    base = similarity.layer_similarity(features).numpy()
    scaled_shifted = similarity.layer_similarity(3.0 * features + 5.0).numpy()
    np.testing.assert_allclose(scaled_shifted, base, atol=1e-4)
    order = rng.permutation(8)
    permuted = similarity.layer_similarity(features[order]).numpy()
    np.testing.assert_allclose(permuted, base[np.ix_(order, order)], atol=1e-5)


def test_zero_vector_after_centring_has_zero_similarity():
    features = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    s = similarity.layer_similarity(features).numpy()
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s[2], 0.0, atol=1e-6)


def test_combine_similarities_is_softmax_weighted_sum(rng):
    layers = [rng.uniform(-1, 1, size=(4, 4)).astype(np.float32) for _ in range(3)]
    logits = np.array([0.3, -1.0, 2.0], dtype=np.float32)
    gamma = np.exp(logits) / np.exp(logits).sum()
    expected = sum(g * s for g, s in zip(gamma, layers))
    np.testing.assert_allclose(similarity.combine_similarities(layers, logits).numpy(), expected, atol=1e-6)


def _explicit_loss(s_pred, s_target, eps):
    values = []
    n = s_pred.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            p = np.clip(s_pred[i, j], -1 + eps, 1 - eps)
            t = np.clip(s_target[i, j], -1 + eps, 1 - eps)
            values.append((np.arctanh(p) - np.arctanh(t)) ** 2)
    return np.mean(values)


def test_similarity_loss_matches_eq8_over_upper_pairs(rng):
    s_pred = similarity.similarity_matrix(rng.normal(size=(7, 5)))
    s_target = similarity.similarity_matrix(rng.normal(size=(7, 5)))
    s_target[0, 1] = s_target[1, 0] = 1.0  # exercises the clamp
    loss = similarity.similarity_loss(tf.constant(s_pred, tf.float64), tf.constant(s_target, tf.float64), eps=1e-5)
    assert float(loss) == pytest.approx(_explicit_loss(s_pred, s_target, 1e-5), rel=1e-10)


def test_similarity_loss_default_clamp_is_one_minus_1e5():
    # Identical stimuli give S_pred = 1 exactly: Eq 8 is taken at 1 - 1e-5 (METHOD.md's eps).
    s_pred = tf.constant([[1.0, 1.0], [1.0, 1.0]], tf.float64)
    s_target = tf.constant([[1.0, -0.5], [-0.5, 1.0]], tf.float64)
    expected = (np.arctanh(1 - 1e-5) - np.arctanh(-0.5)) ** 2
    assert float(similarity.similarity_loss(s_pred, s_target)) == pytest.approx(expected, rel=1e-9)


def test_similarity_loss_ignores_diagonal_and_lower_triangle(rng):
    s = similarity.similarity_matrix(rng.normal(size=(5, 8)))
    modified = s.copy()
    modified[np.tril_indices(5)] = 0.123
    assert float(similarity.similarity_loss(s, s)) == pytest.approx(0.0, abs=1e-12)
    assert float(similarity.similarity_loss(modified, s)) == pytest.approx(0.0, abs=1e-12)


def test_similarity_loss_gradient_matches_finite_differences(rng):
    features = tf.constant(rng.normal(size=(6, 10)), tf.float64)
    target = tf.constant(similarity.similarity_matrix(rng.normal(size=(6, 4))), tf.float64)

    def loss_of_features(f):
        return similarity.similarity_loss(similarity.layer_similarity(f), target)

    theoretical, numerical = tf.test.compute_gradient(loss_of_features, [features], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-4, atol=1e-7)


def test_similarity_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same stimuli"):
        similarity.similarity_loss(tf.eye(4), tf.eye(5))
    with pytest.raises(ValueError, match="2-D"):
        similarity.similarity_loss(tf.ones(4), tf.ones(4))


def test_pair_correlation_is_pearson_over_upper_pairs(rng):
    a = similarity.similarity_matrix(rng.normal(size=(8, 3)))
    b = similarity.similarity_matrix(rng.normal(size=(8, 3)))
    expected = np.corrcoef(similarity.upper_triangle(a), similarity.upper_triangle(b))[0, 1]
    assert float(similarity.pair_correlation(a, b)) == pytest.approx(expected, rel=1e-6)


def _explicit_cka(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_matches_formula_and_invariances(rng):
    x = rng.normal(size=(20, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(20, 4))
    value = float(similarity.cka(tf.constant(x), tf.constant(y)))
    assert value == pytest.approx(_explicit_cka(x, y), rel=1e-8)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert float(similarity.cka(x @ rotation * 3.0, y)) == pytest.approx(value, rel=1e-8)
    assert float(similarity.cka(x, x)) == pytest.approx(1.0, rel=1e-10)


def test_cka_from_similarity_equals_cka_of_unit_vectors(rng):
    x = rng.normal(size=(15, 5))
    y = rng.normal(size=(15, 7))
    ux = x / np.linalg.norm(x, axis=1, keepdims=True)
    uy = y / np.linalg.norm(y, axis=1, keepdims=True)
    from_gram = float(similarity.cka_from_similarity(ux @ ux.T, uy @ uy.T))
    assert from_gram == pytest.approx(_explicit_cka(ux, uy), rel=1e-8)
    assert float(similarity.cka_loss(ux @ ux.T, uy @ uy.T)) == pytest.approx(np.log(1 - from_gram), rel=1e-8)


# ------------------------------------------------- messages and bounds (mutation survivors)


def test_error_messages_count_and_list_what_is_wrong(rng):
    responses = rng.normal(size=(6, 4))
    responses[2, 1] = np.nan
    responses[4, 3] = np.inf
    with pytest.raises(ValueError, match="contains 2 NaN or infinite values"):
        similarity.similarity_matrix(responses)
    with pytest.raises(ValueError, match=r"one entry per neuron, shape \(4,\)"):
        similarity.similarity_matrix(rng.normal(size=(6, 4)), np.ones(3))
    # 12 stimuli at the mean response: the message lists the first 10 of them.
    flat = np.zeros((14, 3))
    flat[12], flat[13] = [1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]
    with pytest.raises(ValueError, match=r"indices \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\)"):
        similarity.similarity_matrix(flat)
    # 12 neurons without trial-to-trial variance: the first 10 are named.
    repeated = np.repeat(rng.integers(0, 9, size=(5, 1, 13)).astype(float), 3, axis=1)
    repeated[:, :, 12] += rng.normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"12 neuron\(s\).*indices \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\.\.\."):
        similarity.snr_weights(repeated)


def test_similarity_loss_names_a_matrix_that_is_not_2d(rng):
    s = similarity.similarity_matrix(rng.normal(size=(4, 3)))
    for s_pred, s_target in ((s, s[None]), (s[None], s)):
        with pytest.raises(ValueError, match="must be 2-D"):
            similarity.similarity_loss(tf.constant(s_pred), tf.constant(s_target))


def test_matrices_that_are_not_square_are_refused_by_name(rng):
    """A (3, 4) 'similarity matrix' has no i < j pairs to compare: the loss, the pair correlation
    and upper_triangle say so instead of failing inside TensorFlow or pairing the wrong entries."""
    wide = np.clip(rng.normal(size=(3, 4)) / 3, -1, 1)
    for fn in (similarity.similarity_loss, similarity.pair_correlation):
        with pytest.raises(ValueError, match=r"must be square .*shape=\(3, 4\)"):
            fn(tf.constant(wide), tf.constant(wide))
    for matrix in (wide, wide.T, np.ones(3)):
        with pytest.raises(ValueError, match=r"Expected a square matrix .*Received: shape="):
            similarity.upper_triangle(matrix)


def test_similarity_matrix_stays_within_minus_one_after_rounding():
    # Opposite population vectors: e_i . e_j is -1 up to rounding, which can fall below -1.
    rng = np.random.default_rng(0)
    for _ in range(1000):
        v = rng.normal(size=(1, 7))
        responses = np.concatenate([v, -v])
        unit = (responses - responses.mean(0)) / np.linalg.norm(responses - responses.mean(0), axis=1, keepdims=True)
        if unit[0] @ unit[1] < -1.0:
            break
    else:
        pytest.fail("no rounding case found")
    assert similarity.similarity_matrix(responses)[0, 1] == -1.0


def test_combining_needs_one_gamma_logit_per_layer():
    layers = [tf.eye(3), tf.ones((3, 3))]
    with pytest.raises(ValueError, match=r"one gamma logit per layer similarity. Received: 2 similarities and gamma_logits of shape \(3,\)"):
        similarity.combine_similarities(layers, tf.zeros(3))
