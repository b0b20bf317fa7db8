r"""Evaluation config: clean accuracy, Gaussian noise and (optionally) adversarial robustness.

Run on the demo models (writes robustness.json, plots and tables to the workdir; about a minute on
2 CPU cores for the noise part, a few minutes more with the adversarial part):

  python evaluate.py --workdir=runs/demo/eval
  python evaluate.py --workdir=runs/demo/eval --config.adversarial.enabled=True
  python evaluate.py --workdir=runs/eval --config.models="None=runs/none,Neural=runs/neural"

Variants (``--config=configs/evaluate.py:<arg>``):
  paper     the whole test set for noise, 1000 samples and the paper's PGD grid for the adversarial
            minimal-perturbation search (GPU scale).
  runlocal  a tiny, fast evaluation for smoke tests.
"""

import ml_collections
from ml_collections import config_dict

from neuroreg_tf.config import check_variant, noise_section
from neuroreg_tf.robustness import settings

VARIANTS = ("paper", "runlocal")


def get_config(arg=None):
    """Returns the evaluation config; ``arg`` is None, "paper" or "runlocal"."""
    check_variant(arg, VARIANTS, "configs/evaluate.py")
    config = ml_collections.ConfigDict()
    # Models as label=path pairs (a training workdir, its export/ folder or a .keras file).
    config.models = "None=runs/demo/none,Neural=runs/demo/neural"
    # Empty: read data.dataset (and data.data_dir) from the first model's workdir config.json.
    config.dataset = ""
    config.data_dir = ""
    config.split = "test"
    config.num_examples = 2000  # first N test examples; 0 = the whole split
    config.batch_size = 256
    config.overwrite = False  # replace what --workdir holds instead of refusing

    # Std of additive Gaussian noise in [0, 1] pixel units (noisy images are clipped to [0, 1]);
    # the paper averages 5 seeds and shows the SEM.
    config.noise = noise_section(sigmas=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), seeds=(0, 1, 2, 3, 4))

    # Evaluation-level keys, then every attack and search setting with its default, from the one
    # definition (neuroreg_tf.robustness.settings.AttackSettings; its docstring explains each).
    config.adversarial = ml_collections.ConfigDict()
    config.adversarial.enabled = False
    config.adversarial.num_examples = 100  # the paper scores the median over 1000 test samples
    config.adversarial.norms = ("linf", "l2")
    # Also the gradient-masking checks per model and norm (neuroreg_tf.robustness.diagnostics).
    config.adversarial.diagnostics = False
    attack_preset = None
    if arg == "paper":
        config.num_examples = 0
        config.adversarial.num_examples = 1000
        attack_preset = "paper"
    elif arg == "runlocal":
        config.num_examples = 200
        config.noise = noise_section(sigmas=(0.0, 0.1, 0.3), seeds=(0, 1))
        config.adversarial.num_examples = 20
        attack_preset = "runlocal"
    for key, value in settings.preset(attack_preset).as_dict().items():
        # An unset optional value (None) still takes a float override from the command line.
        config.adversarial[key] = config_dict.placeholder(float) if value is None else value
    return config
