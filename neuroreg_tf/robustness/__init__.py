"""Robustness evaluation: Gaussian noise, adversarial minimal perturbations, reports.

Public API:
    load_classifier: a trained classifier (SavedModel, .keras or training workdir) as a logits callable.
    clean_accuracy, noise_robustness: accuracy on clean and Gaussian-noised images (seeds, SEM).
    minimal_perturbation: smallest verified L-inf / L2 adversarial per sample (CleverHans attacks,
        searched over epsilon); verify_adversarial, perturbation_distance, success_curve.
    adversarial_evaluation: the paper's score (median minimal perturbation) per norm.
    evaluate_models: evaluate several models on the same examples and write robustness.json + plots.
The attack building blocks are in `neuroreg_tf.robustness.attacks`, the CleverHans fixes for
Keras 3 / NumPy 2 in `neuroreg_tf.robustness.cleverhans_compat`.
"""

from neuroreg_tf.robustness.adversarial import adversarial_evaluation
from neuroreg_tf.robustness.evaluation import evaluate_models
from neuroreg_tf.robustness.evaluation import load_examples
from neuroreg_tf.robustness.evaluation import parse_model_specs
from neuroreg_tf.robustness.loading import load_classifier
from neuroreg_tf.robustness.minimal import MinimalPerturbationResult
from neuroreg_tf.robustness.minimal import minimal_perturbation
from neuroreg_tf.robustness.minimal import perturbation_distance
from neuroreg_tf.robustness.minimal import success_curve
from neuroreg_tf.robustness.minimal import verify_adversarial
from neuroreg_tf.robustness.noise import add_gaussian_noise
from neuroreg_tf.robustness.noise import clean_accuracy
from neuroreg_tf.robustness.noise import noise_robustness

__all__ = [
    "MinimalPerturbationResult",
    "add_gaussian_noise",
    "adversarial_evaluation",
    "clean_accuracy",
    "evaluate_models",
    "load_classifier",
    "load_examples",
    "minimal_perturbation",
    "noise_robustness",
    "parse_model_specs",
    "perturbation_distance",
    "success_curve",
    "verify_adversarial",
]
