"""Robustness evaluation: Gaussian noise, adversarial minimal perturbations, reports.

Public API:
    load_classifier: a trained classifier (SavedModel, .keras or training workdir) as a logits callable.
    clean_accuracy, noise_robustness: accuracy on clean and Gaussian-noised images.
    evaluate_models: evaluate several models on the same examples and write robustness.json + plots.
"""

from neuroreg_tf.robustness.evaluation import evaluate_models
from neuroreg_tf.robustness.evaluation import load_examples
from neuroreg_tf.robustness.evaluation import parse_model_specs
from neuroreg_tf.robustness.loading import load_classifier
from neuroreg_tf.robustness.noise import add_gaussian_noise
from neuroreg_tf.robustness.noise import clean_accuracy
from neuroreg_tf.robustness.noise import noise_robustness

__all__ = [
    "add_gaussian_noise",
    "clean_accuracy",
    "evaluate_models",
    "load_classifier",
    "load_examples",
    "noise_robustness",
    "parse_model_specs",
]
