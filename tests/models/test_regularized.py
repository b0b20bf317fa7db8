"""NeuralRegularizedModel: the joint step (Eq 7-10), gamma, BatchNorm, saving, errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import oracles
from conftest import JOINT_BATCH as BATCH
from conftest import SUBPROCESS_TIMEOUT_S
from neuroreg_tf import similarity
from neuroreg_tf.models import NeuralRegularizedModel, ResNet18


def _model(alpha, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), alpha=alpha, **kwargs)


# ------------------------------------------------------ tiny float64 models (helpers further down)
# These tests come first: the mutation test command (tests/mutation/regularized.toml) stops at the
# first failure, and they take seconds where the ResNet tests below take most of a minute.


def _cross_entropy(params, images, labels):
    """The tiny classifier's mean cross-entropy, float64 by hand (0 for no images)."""
    _, logits = _tiny_forward(params, images)
    losses = [np.log(np.sum(np.exp(row))) - row[label] for row, label in zip(logits, labels)]
    return float(np.mean(losses)) if losses else 0.0


def test_evaluate_adds_alpha_times_the_inference_mode_similarity_loss(float64_keras):
    """test_step: loss = task + alpha * Eq 8, both from an inference-mode pass (Dropout off), with
    the similarity metrics logged for joint data only."""
    alpha = 3.0
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(params, alpha, dropout=True)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)

    task, regularization, sim, s_cnn = _tiny_terms(params, batch)  # Dropout: identity in inference
    assert logs["task_loss"] == pytest.approx(task, rel=1e-12)
    assert logs["similarity_loss"] == pytest.approx(sim, rel=1e-12)
    assert logs["loss"] == pytest.approx(task + regularization + alpha * sim, rel=1e-12)
    r = oracles.pearson(oracles.upper_pairs(s_cnn), oracles.upper_pairs(batch["target_similarity"]))
    assert logs["similarity_r"] == pytest.approx(r, rel=1e-10)

    plain = tf.data.Dataset.from_tensors((batch["images"], batch["labels"]))
    logs = model.evaluate(plain, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "task_loss", "accuracy"}
    assert logs["loss"] == pytest.approx(task + regularization, rel=1e-12)


def test_model_similarity_is_an_inference_pass_that_leaves_the_running_mean_alone(float64_keras):
    """Called without options (as SimilarityMonitor does) it uses Dropout off and centres with the
    stored running mean, which it does not update."""
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(
        params, 1.0, dropout=True, centering="ema", stimulus_shape=(TINY_WIDTH, TINY_WIDTH)
    )
    rng = np.random.default_rng(5)
    stored = [rng.normal(scale=0.3, size=TINY_HIDDEN), rng.normal(scale=0.3, size=TINY_CLASSES)]
    for variable, value in zip(model.feature_means, stored):
        variable.assign(value)
    model.ema_initialized.assign(1.0)

    s_cnn, _ = model.model_similarity(tf.constant(batch["stimuli"]))

    np.testing.assert_allclose(s_cnn.numpy(), _tiny_terms(params, batch, means=stored)[3], rtol=0, atol=1e-12)
    for variable, value in zip(model.feature_means, stored):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_model_similarity_in_a_cross_replica_context_is_that_of_the_whole_batch(float64_keras):
    """Under a strategy's scope (no replica context) there is nothing to gather: S of the batch."""
    params, batch = _tiny_params(), _tiny_batch()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _tiny_joint_model(params, 1.0)
        assert tf.distribute.get_replica_context() is None  # what this test is about
        s_cnn, _ = model.model_similarity(tf.constant(batch["stimuli"]))
    np.testing.assert_allclose(s_cnn.numpy(), _tiny_terms(params, batch)[3], rtol=0, atol=1e-12)


def test_two_replicas_gather_every_row_in_replica_order(tmp_path):
    """all_gather_rows under MirroredStrategy over 2 logical CPU devices (a subprocess), with an
    uneven split (2 and 3 rows, more columns than rows): each replica gets all rows, in replica
    order, for one tensor or several of any rank; model_similarity of each replica's share of the
    stimuli is S_CNN of the whole stimulus batch."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    rng = np.random.default_rng(8)
    params, batch = _tiny_params(), _tiny_batch()
    inputs = {
        "split": 2,
        "wide": rng.normal(size=(5, 4)).astype(np.float32),
        "deep": rng.normal(size=(5, 2, 3)).astype(np.float32),
        "stimuli": batch["stimuli"],
        **params,
    }
    np.savez(tmp_path / "in.npz", **inputs)
    script = os.path.join(REPO_ROOT, "tests", "training", "two_replicas.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.run([sys.executable, script, tmp_path / "in.npz", tmp_path / "out.npz"],
                             env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert process.returncode == 0, process.stderr[-4000:]
    out = np.load(tmp_path / "out.npz")

    s_cnn = _tiny_terms(params, batch)[3]
    for replica in (0, 1):
        np.testing.assert_array_equal(out[f"wide_{replica}"], inputs["wide"])
        np.testing.assert_array_equal(out[f"deep_{replica}"], inputs["deep"])
        np.testing.assert_array_equal(out[f"alone_{replica}"], inputs["wide"])
        np.testing.assert_allclose(out[f"s_cnn_{replica}"], s_cnn, rtol=0, atol=1e-12)


def test_running_mean_starts_at_the_first_batch_mean_then_decays_by_the_momentum(float64_keras):
    """EMA centring from a fresh model: step 1 sets every layer's running mean to the stimulus
    batch mean, step 2 takes 0.9 m + 0.1 batch mean; the "started" flag is state, not a weight.
    stimulus_bn="train" (the same numbers as "batch_stats" here: no BatchNorm) and alpha = 0.5
    (a weight below 1 still enters the step)."""
    alpha = 0.5
    params = _tiny_params()
    first, second = _tiny_batch(seed=0), _tiny_batch(seed=1)
    model = _tiny_joint_model(
        params, alpha, centering="ema", stimulus_shape=(TINY_WIDTH, TINY_WIDTH), stimulus_bn="train"
    )
    _, after, logs = _one_sgd_step(model, first)

    first_means = [features.mean(axis=0) for features in _tiny_forward(params, first["stimuli"])]
    for variable, value in zip(model.feature_means, first_means):
        np.testing.assert_allclose(variable.numpy(), value, rtol=0, atol=1e-12)
    assert float(model.ema_initialized.numpy()) == 1.0
    task, regularization, sim, _ = _tiny_terms(params, first, means=first_means)
    assert logs["loss"] == pytest.approx(task + regularization + alpha * sim, rel=1e-12)

    _one_sgd_step(model, second)
    second_means = [features.mean(axis=0) for features in _tiny_forward(after, second["stimuli"])]
    for variable, m1, m2 in zip(model.feature_means, first_means, second_means):
        np.testing.assert_allclose(variable.numpy(), 0.9 * m1 + 0.1 * m2, rtol=0, atol=1e-12)
    assert float(model.ema_initialized.numpy()) == 1.0


def test_wrapping_a_trained_classifier_for_ema_centring_leaves_its_weights_alone():
    """The constructor's shape probe runs in inference mode: BatchNorm's moving averages stay."""
    inputs = keras.Input((TINY_WIDTH, TINY_WIDTH, 1))
    hidden = keras.layers.Dense(TINY_HIDDEN, name="hidden")(keras.layers.Flatten()(inputs))
    normalised = keras.layers.BatchNormalization(name="bn")(hidden)
    logits = keras.layers.Dense(TINY_CLASSES, name="logits")(normalised)
    classifier = keras.Model(inputs, logits)
    rng = np.random.default_rng(2)
    classifier.set_weights([rng.uniform(0.5, 1.5, size=w.shape) for w in classifier.get_weights()])
    before = [w.copy() for w in classifier.get_weights()]

    model = NeuralRegularizedModel(
        classifier, tap_layers=["bn", "logits"], centering="ema", stimulus_shape=(TINY_WIDTH, TINY_WIDTH)
    )

    assert [v.shape for v in model.feature_means] == [(TINY_HIDDEN,), (TINY_CLASSES,)]
    for ours, theirs in zip(classifier.get_weights(), before):
        np.testing.assert_array_equal(ours, theirs)


def test_default_alpha_is_the_papers_20(float64_keras):
    """METHOD.md, Eq 7: alpha = 20 in the paper's main text, the model's default."""
    params, batch = _tiny_params(), _tiny_batch()
    classifier = _tiny_joint_model(params, 1.0).classifier
    model = NeuralRegularizedModel(classifier, tap_layers=["hidden", "logits"])
    model.gamma_logits.assign(params["g"])
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    task, regularization, sim, _ = _tiny_terms(params, batch)
    assert logs["loss"] == pytest.approx(task + regularization + 20.0 * sim, rel=1e-12)


def test_alpha_zero_trains_on_image_label_pairs_and_on_dicts_without_stimuli(float64_keras):
    """The None control needs no stimuli: (images, labels) tuples and dicts of images and labels
    train the classifier on its task loss, and no similarity metric is logged."""
    params, batch = _tiny_params(), _tiny_batch()
    task, regularization, _, _ = _tiny_terms(params, batch)
    for data in ((batch["images"], batch["labels"]), {"images": batch["images"], "labels": batch["labels"]}):
        model = _tiny_joint_model(params, 0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        logs = {k: v[0] for k, v in model.fit(tf.data.Dataset.from_tensors(data), verbose=0).history.items()}
        assert set(logs) == {"loss", "task_loss", "accuracy"}
        assert logs["task_loss"] == pytest.approx(task, rel=1e-12)
        assert logs["loss"] == pytest.approx(task + regularization, rel=1e-12)


def test_training_data_in_other_forms_is_refused_with_the_accepted_forms(float64_keras):
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(params, 0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    for data in ((batch["images"],), batch["images"]):
        with pytest.raises(ValueError, match="Expected a dict with keys"):
            model.fit(tf.data.Dataset.from_tensors(data), verbose=0)
    with pytest.raises(ValueError, match=r"Training data must be dicts with keys .* Received keys: \['images'\]"):
        model.fit(tf.data.Dataset.from_tensors({"images": batch["images"]}), verbose=0)


def test_a_weight_slot_left_empty_is_the_same_as_no_weights(float64_keras):
    """Keras' (x, y, sample_weight) convention with sample_weight=None means "no weights": the
    step takes it like (images, labels)."""
    params, batch = _tiny_params(), _tiny_batch()
    task, regularization, _, _ = _tiny_terms(params, batch)
    model = _tiny_joint_model(params, 0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.test_step((tf.constant(batch["images"]), tf.constant(batch["labels"]), None))
    assert float(logs["task_loss"]) == pytest.approx(task, rel=1e-12)
    assert float(logs["loss"]) == pytest.approx(task + regularization, rel=1e-12)


def test_sample_weights_and_class_weights_are_refused_not_ignored(float64_keras):
    """Eq 7 weights every image equally: weights given with the data (or as fit's class_weight)
    must stop training with a message, not be dropped silently."""
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(params, 0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    weights = np.linspace(0.5, 2.0, len(batch["labels"]))
    weighted = tf.data.Dataset.from_tensors((batch["images"], batch["labels"], weights))
    with pytest.raises(ValueError, match="Sample weights .* are not supported"):
        model.fit(weighted, verbose=0)
    with pytest.raises(ValueError, match="Sample weights .* are not supported"):
        model.fit(batch["images"], batch["labels"], class_weight={0: 2.0, 1: 1.0, 2: 1.0}, verbose=0)


def test_task_loss_is_the_batch_mean_for_one_image_and_zero_for_none(float64_keras):
    """The task loss divides by the number of images (at least 1): one image gives its own
    cross-entropy, an empty batch 0, not NaN."""
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(params, 0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    for count in (1, 0):
        images, labels = batch["images"][:count], batch["labels"][:count]
        logs = model.evaluate(tf.data.Dataset.from_tensors((images, labels)), verbose=0, return_dict=True)
        assert logs["task_loss"] == pytest.approx(_cross_entropy(params, images, labels), rel=1e-12, abs=0)


def _uniform_gamma_similarity(model, stimuli):
    """S_CNN in float64 by hand: batch-mean-centred cosine per tap, averaged (gamma at its uniform start)."""
    per_layer = []
    for output in model.tap_model(stimuli, training=True):
        flat = output.numpy().reshape(BATCH, -1).astype(np.float64)
        centred = flat - flat.mean(axis=0)
        unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        per_layer.append(unit @ unit.T)
    return np.mean(per_layer, axis=0)


def test_train_step_loss_is_task_plus_alpha_times_eq8(training_data):
    alpha = 5.0
    model = _model(alpha)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = next(iter(training_data))
    one_batch = tf.data.Dataset.from_tensors(batch)
    logs = {k: v[0] for k, v in model.fit(one_batch, epochs=1, verbose=0).history.items()}

    # With a zero learning rate the weights are unchanged; BatchNorm in training
    # mode (what the step used) normalises with the batch's own statistics.
    logits = model.classifier(batch["images"], training=True)
    task = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(batch["labels"], logits)
    s_cnn = _uniform_gamma_similarity(model, batch["stimuli"])
    target = batch["target_similarity"].numpy().astype(np.float64)
    rows, cols = np.triu_indices(BATCH, k=1)
    clamp = lambda s: np.clip(s, -1 + 1e-5, 1 - 1e-5)
    sim = np.mean((np.arctanh(clamp(s_cnn[rows, cols])) - np.arctanh(clamp(target[rows, cols]))) ** 2)

    assert logs["similarity_loss"] == pytest.approx(sim, rel=2e-3)
    assert logs["task_loss"] == pytest.approx(float(task), rel=1e-4)
    assert logs["loss"] == pytest.approx(float(task) + alpha * sim, rel=1e-3)
    assert logs["similarity_r"] == pytest.approx(np.corrcoef(s_cnn[rows, cols], target[rows, cols])[0, 1], abs=2e-3)


def test_gamma_is_trained_and_stays_a_distribution(training_data):
    model = _model(20.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    np.testing.assert_allclose(model.gamma().numpy(), 0.2)
    model.fit(training_data, epochs=1, verbose=0)
    gamma = model.gamma().numpy()
    assert gamma.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(gamma - 0.2).max() > 1e-4


def test_alpha_zero_trains_exactly_like_the_plain_classifier(training_data, classification):
    regularized = _model(0.0, seed=5)
    plain = keras.models.clone_model(regularized.classifier)
    plain.set_weights(regularized.classifier.get_weights())
    regularized.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    plain.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logs = regularized.fit(training_data, epochs=2, verbose=0).history
    plain.fit(classification, epochs=2, verbose=0)
    for ours, theirs in zip(regularized.classifier.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert "similarity_r" in logs  # still monitored, outside the gradient


def test_alpha_positive_needs_stimuli(classification):
    model = _model(1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="needs stimulus batches"):
        model.fit(classification, epochs=1, verbose=0)


@pytest.mark.parametrize("centering", ["batch", "ema"])
def test_keras_file_round_trip_keeps_predictions_and_optimizer(tmp_path, training_data, centering):
    model = _model(10.0, centering=centering, stimulus_shape=(36, 64))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(training_data.take(2), epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = next(iter(training_data))["images"]
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    np.testing.assert_array_equal(loaded.gamma().numpy(), model.gamma().numpy())
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    assert (loaded.alpha, loaded.centering, loaded.tap_layers) == (10.0, centering, model.tap_layers)
    if centering == "ema":
        assert float(np.abs(model.feature_means[0].numpy()).sum()) > 0
        np.testing.assert_array_equal(loaded.feature_means[0].numpy(), model.feature_means[0].numpy())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1.0}, "non-negative"),
        ({"centering": "median"}, "centering"),
        ({"centering": "ema"}, "stimulus_shape"),
        ({"similarity_loss": "mse"}, "similarity_loss"),
        ({"stimulus_bn": "frozen"}, "stimulus_bn"),
        ({"tap_layers": ["stage7_block1_out"]}, "Unknown layer name"),
    ],
)
def test_bad_model_settings_give_clear_errors(kwargs, message):
    kwargs.setdefault("alpha", 1.0)
    with pytest.raises(ValueError, match=message):
        NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), **kwargs)


def _moving_averages(classifier):
    return [
        v.numpy()
        for layer in classifier.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]


@pytest.mark.parametrize("mode, same_as_classification_only", [("batch_stats", True), ("train", False)])
def test_batch_norm_moving_averages_and_the_stimulus_pass(training_data, mode, same_as_classification_only):
    model = _model(5.0, seed=2, stimulus_bn=mode)
    reference = keras.models.clone_model(model.classifier)
    reference.set_weights(model.classifier.get_weights())
    batch = next(iter(training_data))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    reference(batch["images"], training=True)  # what the classification pass alone does
    pairs = list(zip(_moving_averages(model.classifier), _moving_averages(reference)))
    matches = all(np.allclose(ours, theirs, atol=1e-6) for ours, theirs in pairs)
    assert matches == same_as_classification_only


# ------------------------------------------------- the joint step's gradient, against float64 by hand

TINY_WIDTH = 3  # 3 x 3 grayscale images and stimuli
TINY_HIDDEN = 4
TINY_CLASSES = 3
TINY_L2 = 2.0**-7  # exact in float32, the precision Keras keeps a regularizer's factor in
ARCTANH_EPS = 1e-5


@pytest.fixture
def float64_keras():
    """Builds the models of a test in float64, so its gradient can be compared at 1e-8."""
    from keras.src.backend.common import global_state

    # Keras pins its global dtype policy the first time a layer is built; set both, restore both.
    previous_floatx, previous_policy = keras.config.floatx(), global_state.get_global_attribute("dtype_policy")
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous_floatx)
    global_state.set_global_attribute("dtype_policy", previous_policy)


def _tiny_joint_model(params, alpha, dropout=False, **kwargs):
    """A Dense(tanh) -> Dense classifier tapped at both layers, with an L2 kernel penalty.

    ``dropout``: Dropout(0.5) on the pixels, so that training mode changes every tap.
    """
    inputs = keras.Input((TINY_WIDTH, TINY_WIDTH, 1))
    flat = keras.layers.Flatten()(inputs)
    if dropout:
        flat = keras.layers.Dropout(0.5, seed=3)(flat)
    hidden = keras.layers.Dense(
        TINY_HIDDEN, activation="tanh", kernel_regularizer=keras.regularizers.L2(TINY_L2), name="hidden"
    )(flat)
    logits = keras.layers.Dense(TINY_CLASSES, name="logits")(hidden)
    classifier = keras.Model(inputs, logits)
    classifier.get_layer("hidden").set_weights([params["w1"], params["b1"]])
    classifier.get_layer("logits").set_weights([params["w2"], params["b2"]])
    model = NeuralRegularizedModel(classifier, tap_layers=["hidden", "logits"], alpha=alpha, **kwargs)
    model.gamma_logits.assign(params["g"])
    return model


def _tiny_forward(params, images):
    """(hidden, logits) of the tiny classifier, float64, one image at a time."""
    hidden, logits = [], []
    for image in images:
        pixels = np.asarray(image, np.float64).reshape(-1)
        h = np.tanh(pixels @ params["w1"] + params["b1"])
        hidden.append(h)
        logits.append(h @ params["w2"] + params["b2"])
    return np.array(hidden), np.array(logits)


def _tiny_terms(params, batch, means=None):
    """Eq 7-10 by hand: (task, regularisation, similarity loss, S_CNN) in float64.

    ``means``: per tapped layer, the fixed vector to centre with (EMA centring); None: the
    stimulus batch's own mean, differentiated like everything else (batch centring).
    """
    _, logits = _tiny_forward(params, batch["images"])
    task = np.mean([
        np.log(np.sum(np.exp(row))) - row[label] for row, label in zip(logits, batch["labels"])
    ])
    regularization = TINY_L2 * np.sum(params["w1"] ** 2)
    taps = _tiny_forward(params, batch["stimuli"])
    n = len(batch["stimuli"])
    gamma = oracles.softmax(params["g"])
    s_cnn = np.zeros((n, n))
    for k, features in enumerate(taps):
        centre = features.mean(axis=0) if means is None else means[k]
        centred = features - centre
        for i in range(n):
            for j in range(n):
                cosine = centred[i] @ centred[j] / np.sqrt((centred[i] @ centred[i]) * (centred[j] @ centred[j]))
                s_cnn[i, j] += gamma[k] * cosine
    target = np.asarray(batch["target_similarity"], np.float64)
    clamp = lambda s: min(max(s, -1 + ARCTANH_EPS), 1 - ARCTANH_EPS)  # noqa: E731
    squares = [
        (np.arctanh(clamp(s_cnn[i, j])) - np.arctanh(clamp(target[i, j]))) ** 2
        for i in range(n)
        for j in range(i + 1, n)
    ]
    return task, regularization, float(np.mean(squares)), s_cnn


def _finite_difference_gradient(params, objective, step=1e-6):
    """Central differences of ``objective(params)`` in float64, one coordinate at a time."""
    gradient = {}
    for name, value in params.items():
        gradient[name] = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = {key: array.copy() for key, array in params.items()}
            shifted[name][index] = value[index] + step
            up = objective(shifted)
            shifted[name][index] = value[index] - step
            gradient[name][index] = (up - objective(shifted)) / (2 * step)
    return gradient


def _tiny_batch(seed=0, n_images=5, n_stimuli=6):
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=(n_stimuli, 3))
    embedding -= embedding.mean(axis=0)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    target = np.clip(embedding @ embedding.T, -1, 1)
    np.fill_diagonal(target, 1.0)
    return {
        "images": rng.uniform(size=(n_images, TINY_WIDTH, TINY_WIDTH, 1)),
        "labels": rng.integers(0, TINY_CLASSES, n_images),
        "stimuli": rng.uniform(size=(n_stimuli, TINY_WIDTH, TINY_WIDTH, 1)),
        # Targets are stored as float32; the oracle uses the same float32 values.
        "target_similarity": target.astype(np.float32),
    }


def _tiny_params(seed=1):
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(TINY_WIDTH * TINY_WIDTH, TINY_HIDDEN)),
        "b1": rng.normal(scale=0.1, size=TINY_HIDDEN),
        "w2": rng.normal(size=(TINY_HIDDEN, TINY_CLASSES)),
        "b2": rng.normal(scale=0.1, size=TINY_CLASSES),
        "g": np.array([0.4, -0.3]),  # unequal layer weights gamma, so the softmax is exercised
    }


def _one_sgd_step(model, batch):
    """One ``fit`` step with SGD(learning rate 1): the update is minus the gradient, exactly."""
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = {
        "w1": model.classifier.get_layer("hidden").kernel.numpy(),
        "b1": model.classifier.get_layer("hidden").bias.numpy(),
        "w2": model.classifier.get_layer("logits").kernel.numpy(),
        "b2": model.classifier.get_layer("logits").bias.numpy(),
        "g": model.gamma_logits.numpy(),
    }
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    after = {
        "w1": model.classifier.get_layer("hidden").kernel.numpy(),
        "b1": model.classifier.get_layer("hidden").bias.numpy(),
        "w2": model.classifier.get_layer("logits").kernel.numpy(),
        "b2": model.classifier.get_layer("logits").bias.numpy(),
        "g": model.gamma_logits.numpy(),
    }
    gradient = {name: before[name] - after[name] for name in before}
    return gradient, after, {key: values[0] for key, values in history.items()}


# Central differences with step 1e-6 on an objective of order 1 are exact to ~1e-9 in float64
# (truncation ~1e-12, rounding ~1e-10); the float64 Keras gradient to ~1e-14. 1e-8 leaves
# margin while any change of a term's weight (alpha, 1/replicas, a gamma, the clamp) moves the
# gradient by more than 1e-3.
GRADIENT_ATOL = 1e-8


@pytest.mark.parametrize("replicas", [1, 2])
def test_joint_step_gradient_is_eq_7_to_10_by_hand(float64_keras, monkeypatch, replicas):
    """The update of one train_step is the float64 gradient of task + (reg + alpha * Eq 8) / R.

    With R replicas each replica's objective is its share of the task loss plus the
    regularisation and alpha * L_sim divided by R (the module docstring), so that the summed
    gradients equal one device's; ``replicas.num_replicas`` is set to 2 to check that scaling in-process.
    """
    from neuroreg_tf.models import regularized

    monkeypatch.setattr(regularized.replicas, "num_replicas", lambda: replicas)
    alpha = 3.0
    params, batch = _tiny_params(), _tiny_batch()
    gradient, _, logs = _one_sgd_step(_tiny_joint_model(params, alpha), batch)

    def objective(p):
        task, regularization, sim, _ = _tiny_terms(p, batch)
        return task + (regularization + alpha * sim) / replicas

    expected = _finite_difference_gradient(params, objective)
    for name in params:
        np.testing.assert_allclose(gradient[name], expected[name], rtol=0, atol=GRADIENT_ATOL, err_msg=name)
    # The logged numbers are the whole objective's, whatever the replica count.
    task, regularization, sim, s_cnn = _tiny_terms(params, batch)
    _, logits = _tiny_forward(params, batch["images"])
    assert logs["task_loss"] == pytest.approx(task, rel=1e-12)
    assert logs["similarity_loss"] == pytest.approx(sim, rel=1e-12)
    assert logs["loss"] == pytest.approx(task + regularization + alpha * sim, rel=1e-12)
    r = oracles.pearson(oracles.upper_pairs(s_cnn), oracles.upper_pairs(batch["target_similarity"]))
    assert logs["similarity_r"] == pytest.approx(r, rel=1e-10)
    assert logs["accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=1) == batch["labels"]), abs=1e-12)


def test_joint_step_with_ema_centring_uses_the_updated_running_mean_as_a_constant(float64_keras):
    """EMA centring: the step first updates m <- 0.9 m + 0.1 batch mean, then centres with m, which
    carries no gradient (the gradient differs from batch centring's)."""
    alpha = 3.0
    params, batch = _tiny_params(), _tiny_batch()
    model = _tiny_joint_model(params, alpha, centering="ema", stimulus_shape=(TINY_WIDTH, TINY_WIDTH))
    rng = np.random.default_rng(5)
    previous = [rng.normal(scale=0.3, size=TINY_HIDDEN), rng.normal(scale=0.3, size=TINY_CLASSES)]
    for variable, value in zip(model.feature_means, previous):
        variable.assign(value)
    model.ema_initialized.assign(1.0)
    gradient, _, logs = _one_sgd_step(model, batch)

    taps = _tiny_forward(params, batch["stimuli"])
    updated = [0.9 * m + 0.1 * features.mean(axis=0) for m, features in zip(previous, taps)]
    for variable, value in zip(model.feature_means, updated):
        np.testing.assert_allclose(variable.numpy(), value, rtol=0, atol=1e-12)

    def objective(p):
        task, regularization, sim, _ = _tiny_terms(p, batch, means=updated)
        return task + regularization + alpha * sim

    expected = _finite_difference_gradient(params, objective)
    for name in params:
        np.testing.assert_allclose(gradient[name], expected[name], rtol=0, atol=GRADIENT_ATOL, err_msg=name)
    assert logs["similarity_loss"] == pytest.approx(_tiny_terms(params, batch, means=updated)[2], rel=1e-12)


def test_joint_step_with_alpha_zero_ignores_the_similarity_and_monitors_it_after_the_update(float64_keras):
    params, batch = _tiny_params(), _tiny_batch()
    gradient, after, logs = _one_sgd_step(_tiny_joint_model(params, 0.0), batch)

    def objective(p):
        task, regularization, _, _ = _tiny_terms(p, batch)
        return task + regularization

    expected = _finite_difference_gradient(params, objective)
    for name in params:
        np.testing.assert_allclose(gradient[name], expected[name], rtol=0, atol=GRADIENT_ATOL, err_msg=name)
    np.testing.assert_array_equal(after["g"], params["g"])  # gamma gets no gradient at alpha = 0
    task, regularization, _, _ = _tiny_terms(params, batch)
    _, _, sim_after, s_after = _tiny_terms(after, batch)  # measured outside the gradient, after the step
    assert logs["loss"] == pytest.approx(task + regularization, rel=1e-12)
    assert logs["similarity_loss"] == pytest.approx(sim_after, rel=1e-12)
    r = oracles.pearson(oracles.upper_pairs(s_after), oracles.upper_pairs(batch["target_similarity"]))
    assert logs["similarity_r"] == pytest.approx(r, rel=1e-10)


def test_a_registered_similarity_loss_is_what_the_step_and_the_config_check_use(training_data):
    # The registry's contract: one register call, and the model and the training config accept it.
    from neuroreg_tf.config import base_train_config
    from neuroreg_tf.errors import ConfigError
    from neuroreg_tf.training.trainer import check_config

    def mean_absolute_pairs(s_pred, s_target, *, eps):
        mask = np.triu(np.ones((BATCH, BATCH), bool), k=1)
        return tf.reduce_mean(tf.abs(tf.boolean_mask(s_pred - s_target, mask)))

    config = base_train_config()
    config.similarity.loss = "mean_absolute_pairs"
    with pytest.raises(ConfigError, match="similarity.loss"):
        check_config(config)
    similarity.register_similarity_loss("mean_absolute_pairs", mean_absolute_pairs)
    try:
        check_config(config)
        model = _model(3.0, similarity_loss="mean_absolute_pairs")
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        batch = next(iter(training_data))
        logs = {k: v[0] for k, v in model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history.items()}
        rows, cols = np.triu_indices(BATCH, k=1)
        s_cnn = _uniform_gamma_similarity(model, batch["stimuli"])
        expected = np.mean(np.abs(s_cnn - batch["target_similarity"].numpy())[rows, cols])
        assert logs["similarity_loss"] == pytest.approx(expected, rel=2e-3)
        with pytest.raises(ValueError, match="registered already"):
            similarity.register_similarity_loss("mean_absolute_pairs", mean_absolute_pairs)
    finally:
        similarity.unregister_similarity_loss("mean_absolute_pairs")
    with pytest.raises(ValueError, match="Unknown similarity loss 'mean_absolute_pairs'; registered: arctanh, cka"):
        similarity.get_similarity_loss("mean_absolute_pairs")
