"""Adversarial training, the baseline a user would pick instead: train on L-inf adversarial images.

``AdversarialTraining`` describes it; ``perturb`` makes a batch's training images:

* ``"fgsm_rs"``, FGSM with a random start (Wong, Rice & Kolter 2020, "Fast is better than free"):
  delta ~ U(-eps, eps), one signed-gradient step of 1.25 eps, delta clipped to [-eps, eps] and
  the image to [0, 1];
* ``"pgd"`` (Madry et al. 2018): the same random start, then ``steps`` signed-gradient steps of
  ``2.5 eps / steps``, each projected back.

The gradient is the cross-entropy's with respect to the images, through the classifier in
training mode (BatchNorm normalises with the batch's own statistics, as in both papers), and
BatchNorm's moving averages are restored afterwards so that they see each batch once. The random
start is stateless, seeded by (``seed``, optimizer step): the same run gives the same
perturbations, after a resume too.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

METHODS = ("none", "fgsm_rs", "pgd")
FGSM_RS_STEP = 1.25  # Wong et al.'s alpha, in units of epsilon
PGD_TOTAL_STEP = 2.5  # PGD's step is 2.5 eps / steps (Madry et al.)


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """How the training images are perturbed.

    Attributes:
        method: "none", "fgsm_rs" or "pgd".
        epsilon: the L-inf budget in [0, 1] pixel units.
        steps: PGD's steps (FGSM-RS takes one).
        seed: seed of the random starts.
    """

    method: str = "none"
    epsilon: float = 0.03
    steps: int = 7
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}. Received: method={self.method!r}")
        if not 0 < float(self.epsilon) <= 1:
            raise ValueError(f"`epsilon` must be in (0, 1]. Received: epsilon={self.epsilon!r}")
        if isinstance(self.steps, bool) or int(self.steps) < 1:
            raise ValueError(f"`steps` must be a positive integer. Received: steps={self.steps!r}")

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _input_gradient(classifier: keras.Model, images, labels):
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = tf.cast(classifier(images, training=True), tf.float32)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return tape.gradient(loss, images)


def perturb(classifier: keras.Model, images, labels, spec: AdversarialTraining, step, batch_norm_variables=()):
    """The adversarial training images of one batch (``images`` when ``spec`` is off).

    Args:
        classifier: images in [0, 1] -> logits.
        images: (B, H, W, C) in [0, 1].
        labels: (B,) integer labels.
        spec: the method and budget.
        step: the optimizer step (an integer tensor), which seeds the random start.
        batch_norm_variables: BatchNorm moving means and variances to restore after the attack.

    Returns:
        (B, H, W, C) images within ``epsilon`` of ``images`` (L-inf) and in [0, 1], without
        gradient.
    """
    if not spec.enabled:
        return images
    saved = [tf.identity(v) for v in batch_norm_variables]
    images = tf.stop_gradient(images)
    epsilon = tf.cast(spec.epsilon, images.dtype)
    seed = tf.stack([tf.constant(spec.seed, tf.int64), tf.cast(step, tf.int64)])
    delta = tf.random.stateless_uniform(tf.shape(images), seed=seed, minval=-epsilon, maxval=epsilon,
                                        dtype=images.dtype)
    steps, size = (1, FGSM_RS_STEP * epsilon) if spec.method == "fgsm_rs" else (
        spec.steps, PGD_TOTAL_STEP * epsilon / spec.steps)
    for _ in range(steps):
        adversarial = tf.clip_by_value(images + delta, 0.0, 1.0)
        gradient = _input_gradient(classifier, adversarial, labels)
        delta = tf.clip_by_value(delta + size * tf.sign(gradient), -epsilon, epsilon)
    adversarial = tf.stop_gradient(tf.clip_by_value(images + delta, 0.0, 1.0))
    with tf.control_dependencies([adversarial]):
        restores = [v.assign(value) for v, value in zip(batch_norm_variables, saved)]
    with tf.control_dependencies(restores):
        return tf.identity(adversarial)
