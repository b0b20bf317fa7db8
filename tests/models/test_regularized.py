"""NeuralRegularizedModel: the joint step (Eq 7-10), gamma, BatchNorm, saving, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import JOINT_BATCH as BATCH
from neuroreg_tf.models import NeuralRegularizedModel, ResNet18


def _model(alpha, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), alpha=alpha, **kwargs)


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
    taps = model.tap_model(batch["stimuli"], training=True)
    per_layer = []
    for output in taps:
        flat = output.numpy().reshape(BATCH, -1).astype(np.float64)
        centred = flat - flat.mean(axis=0)
        unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        per_layer.append(unit @ unit.T)
    s_cnn = np.mean(per_layer, axis=0)  # gamma starts uniform
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
