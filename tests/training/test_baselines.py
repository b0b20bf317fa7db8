"""The baselines a user would pick instead: Gaussian noise augmentation and adversarial training.

Expected values come from closed forms and NumPy loops: the noise's spread and its per-image
range, FGSM with a random start and PGD on affine classifiers whose input gradient's sign is
known, and the identity of runs recorded before the baselines existed.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import needs_fashion_mnist
from neuroreg_tf import cli, config as config_lib, data, workdir
from neuroreg_tf.models import NeuralRegularizedModel, ResNet18
from neuroreg_tf.models import adversarial_training as at
from neuroreg_tf.study import plan
from neuroreg_tf.training import trainer


def test_noise_has_the_asked_spread_and_is_the_same_for_the_same_seed():
    image = tf.fill([64, 64, 1], 0.5)  # far from the [0, 1] clip for sigma 0.1
    seed = tf.constant([3, 4], tf.int64)
    noisy = data.add_gaussian_noise(image, seed, sigma=0.1).numpy()
    difference = noisy - 0.5
    assert abs(difference.std() - 0.1) < 0.1 * 0.05 and abs(difference.mean()) < 0.01
    np.testing.assert_array_equal(noisy, data.add_gaussian_noise(image, seed, sigma=0.1).numpy())
    other = data.add_gaussian_noise(image, tf.constant([3, 5], tf.int64), sigma=0.1).numpy()
    assert not np.array_equal(noisy, other)
    clipped = data.add_gaussian_noise(tf.zeros([8, 8, 1]), seed, sigma=0.5).numpy()
    assert clipped.min() == 0.0 and clipped.max() <= 1.0 and (clipped > 0).any()


def test_a_per_image_sigma_is_drawn_uniformly_from_the_range():
    image = tf.fill([48, 48, 1], 0.5)
    spreads = np.array([
        (data.add_gaussian_noise(image, tf.constant([0, k], tf.int64), max_sigma=0.2).numpy() - 0.5).std()
        for k in range(200)
    ])
    # U(0, 0.2): mean 0.1, standard deviation 0.2 / sqrt(12) = 0.0577, never above 0.2 (up to sampling).
    assert abs(spreads.mean() - 0.1) < 0.01 and abs(spreads.std() - 0.2 / np.sqrt(12)) < 0.01
    assert spreads.max() < 0.2 * 1.05 and spreads.min() < 0.02


@needs_fashion_mnist
def test_noise_augmentation_changes_only_the_training_images_and_is_reproducible():
    plain = next(iter(data.load_classification("fashion_mnist", "train", batch_size=16, limit=16, seed=1)))
    noisy = next(iter(data.load_classification("fashion_mnist", "train", batch_size=16, limit=16, seed=1,
                                               noise_sigma=0.1)))
    again = next(iter(data.load_classification("fashion_mnist", "train", batch_size=16, limit=16, seed=1,
                                               noise_sigma=0.1)))
    np.testing.assert_array_equal(noisy[1], plain[1])
    np.testing.assert_array_equal(noisy[0], again[0])
    inside = (plain[0].numpy() > 0.3) & (plain[0].numpy() < 0.7)  # away from the clip
    assert abs((noisy[0].numpy() - plain[0].numpy())[inside].std() - 0.1) < 0.01
    with pytest.raises(ValueError, match="not both"):
        data.load_classification("fashion_mnist", "train", batch_size=4, limit=4, noise_sigma=0.1,
                                 noise_max_sigma=0.2)


def _affine_classifier(weights, bias):
    """logits = x.flatten() @ weights + bias, as a Keras model (no BatchNorm)."""
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(weights.shape[1])
    model = keras.Model(inputs, dense(flat))
    dense.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


@pytest.mark.parametrize("method, steps", [("fgsm_rs", 1), ("pgd", 3)])
def test_adversarial_images_follow_fgsm_rs_and_pgd_by_hand(method, steps):
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(16, 2)), np.zeros(2)
    classifier = _affine_classifier(weights, bias)
    images = rng.uniform(0.2, 0.8, size=(6, 4, 4, 1)).astype(np.float32)
    images[0, 0, 0, 0] = 0.01  # one pixel at the box's edge: the clip to [0, 1] matters
    labels = np.array([0, 1, 0, 1, 0, 1], np.int32)
    epsilon = 0.05
    spec = at.AdversarialTraining(method=method, epsilon=epsilon, steps=steps, seed=9)
    result = at.perturb(classifier, tf.constant(images), tf.constant(labels), spec, tf.constant(4, tf.int64)).numpy()
    # By hand: the cross-entropy's input gradient for a 2-class affine model is
    # (p_other)(w_label - w_other) * -1 per image, so its sign is sign(w_other - w_label) everywhere.
    start = tf.random.stateless_uniform(images.shape, seed=tf.constant([9, 4], tf.int64), minval=-epsilon,
                                        maxval=epsilon).numpy()
    step = 1.25 * epsilon if method == "fgsm_rs" else 2.5 * epsilon / steps
    expected = []
    for image, label, delta in zip(images.astype(np.float64), labels, start.astype(np.float64)):
        direction = np.sign(weights[:, 1 - label] - weights[:, label]).reshape(4, 4, 1)
        for _ in range(steps):
            delta = np.clip(delta + step * direction, -epsilon, epsilon)
        expected.append(np.clip(image + delta, 0.0, 1.0))
    np.testing.assert_allclose(result, np.array(expected), atol=1e-6)
    assert np.abs(result - images).max() <= epsilon + 1e-6 and result.min() >= 0.0


def test_the_attack_pass_leaves_batch_norm_moving_averages_as_they_were():
    keras.utils.set_random_seed(0)
    classifier = ResNet18(num_classes=10, width=0.125)
    images = tf.random.uniform([4, 28, 28, 1], seed=1)
    labels = tf.constant([0, 1, 2, 3])
    model = NeuralRegularizedModel(classifier, alpha=0.0)
    before = [v.numpy().copy() for v in model._batch_norm_moving_averages()]
    spec = at.AdversarialTraining(method="pgd", epsilon=0.03, steps=2)
    at.perturb(classifier, images, labels, spec, tf.constant(0, tf.int64), model._batch_norm_moving_averages())
    for value, variable in zip(before, model._batch_norm_moving_averages()):
        np.testing.assert_array_equal(value, variable.numpy())


def test_a_model_trained_adversarially_saves_its_setting_and_a_plain_one_does_not(tmp_path):
    keras.utils.set_random_seed(0)
    spec = {"method": "fgsm_rs", "epsilon": 0.03, "steps": 7, "seed": 0}
    model = NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), alpha=0.0, adversarial_training=spec)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    images = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype(np.float32)
    labels = np.arange(8) % 10
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.adversarial_training == at.AdversarialTraining(**spec)
    plain = NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), alpha=0.0)
    assert "adversarial_training" not in plain.get_config()
    with pytest.raises(ValueError, match="method"):
        NeuralRegularizedModel(ResNet18(num_classes=10, width=0.125), adversarial_training={"method": "trades"})


def test_runs_recorded_before_the_baselines_existed_are_the_same_runs(tmp_path):
    config = cli.load_config("demo.py", "runlocal")
    target = {"path": "t", "checksum": "x"}
    old = trainer.run_identity(config, target)
    del old["config"]["robust_training"]  # what a run recorded before the section existed holds
    run = str(tmp_path / "run")
    workdir.claim(run, old, what="training run", finished_marker=workdir.SUMMARY, overwrite=False)
    assert trainer.claim(config, run, target) == workdir.RESUME  # not refused
    config.robust_training.noise_max_sigma = 0.5
    with pytest.raises(workdir.WorkdirError, match="robust_training.noise_max_sigma"):
        trainer.claim(config, run, target)


def test_the_baseline_conditions_set_their_training_and_old_studies_stay_valid(tmp_path):
    study = cli.load_config("study.py", "runlocal")
    study.conditions = "none,noise_augmentation,adversarial_training,neural_model_noise"
    study_plan = plan.make_plan(study, str(tmp_path))
    by_condition = {run.condition.name: study_plan.train_config(study.train, run) for run in study_plan.runs}
    assert by_condition["noise_augmentation"].robust_training.noise_max_sigma == 0.5
    assert by_condition["noise_augmentation"].alpha == 0.0
    assert (by_condition["adversarial_training"].robust_training.adversarial,
            by_condition["adversarial_training"].robust_training.epsilon) == ("fgsm_rs", 0.03)
    assert by_condition["neural_model_noise"].alpha == study.alpha
    assert by_condition["neural_model_noise"].robust_training.noise_max_sigma == 0.5
    assert by_condition["none"].robust_training.to_dict() == config_lib.robust_training_section().to_dict()
    recorded = plan.study_identity(study)
    del recorded["config"]["train"]["robust_training"]
    assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) == workdir.fingerprint_of(plan.study_identity(study))
    trainer.check_config(by_condition["adversarial_training"])
    bad = by_condition["noise_augmentation"]
    bad.robust_training.noise_sigma = 0.1
    with pytest.raises(Exception, match="one noise or the other"):
        trainer.check_config(bad)
