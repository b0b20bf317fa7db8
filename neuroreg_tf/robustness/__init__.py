"""Robustness evaluation: Gaussian noise, adversarial minimal perturbations, reports.

Modules: ``loading`` (a trained classifier from any artifact of a training run), ``noise``
(accuracy under Gaussian noise), ``settings`` (every attack and search setting, once),
``attacks`` (CleverHans attacks with per-sample budgets; the Keras 3 / NumPy 2 fixes are in
``cleverhans_compat``), ``search`` (the per-sample minimal perturbation), ``scoring`` (distances,
verification and the median score), ``adversarial`` (the score per norm), ``report`` and
``evaluation`` (several models on the same examples, written to a workdir).
"""

from neuroreg_tf.robustness.adversarial import adversarial_evaluation
from neuroreg_tf.robustness.evaluation import evaluate_models
from neuroreg_tf.robustness.evaluation import load_examples
from neuroreg_tf.robustness.evaluation import parse_model_specs
from neuroreg_tf.robustness.loading import load_classifier
from neuroreg_tf.robustness.noise import add_gaussian_noise
from neuroreg_tf.robustness.noise import clean_accuracy
from neuroreg_tf.robustness.noise import noise_robustness
from neuroreg_tf.robustness.scoring import perturbation_distance
from neuroreg_tf.robustness.scoring import success_curve
from neuroreg_tf.robustness.scoring import verify_adversarial
from neuroreg_tf.robustness.search import MinimalPerturbationResult
from neuroreg_tf.robustness.search import minimal_perturbation
from neuroreg_tf.robustness.settings import AttackSettings

__all__ = [
    "AttackSettings",
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
