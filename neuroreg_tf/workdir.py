"""The workdir contract: the files each script writes, named in one place.

Data flows one way, each step reading only the previous step's files::

    build_target.py  <workdir>/target/ (+ targets/<kind>/, target_report.json, figures/)
    train.py         <workdir>/{config.json, history.csv, model.keras, export/, summary.json, ...}
    evaluate.py      <workdir>/{robustness.json, noise_robustness.png, ...}
    study.py         <workdir>/{targets/<name>/, runs/<condition>/seed_<k>/, report.md, ...}

Every artifact is written under a temporary name and renamed into place (``fileio``); a file
written last marks a finished step (``SUMMARY`` for training, ``ROBUSTNESS_JSON`` for evaluation,
the target's ``metadata.json`` and ``TARGET_REPORT`` for a target build).
"""

from __future__ import annotations

import os

# Written first by every script: the resolved config.
CONFIG = "config.json"

# A training run (train.py, neuroreg_tf.training.trainer).
TARGET_BUILD = "target_build"  # the default SIMULATED target, when config.target.path is empty
BACKUP = "backup"  # atomic checkpoints; removed once the run has finished
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
TENSORBOARD = "tensorboard"
MODEL = "model.keras"  # the NeuralRegularizedModel with optimizer state
CLASSIFIER = "classifier.keras"  # the plain classifier: images in [0, 1] -> logits
EXPORT = "export"  # SavedModel of the classifier (`serve` endpoint)
SUMMARY = "summary.json"  # written last: marks a finished run

# A target build (build_target.py, neuroreg_tf.neural.build_targets).
TARGET = "target"  # the primary target, what training reads
TARGETS = "targets"  # targets/<kind>/: the controls
TARGET_REPORT = "target_report.json"
FIGURES = "figures"
RECORDINGS = "recordings"  # the SIMULATED scans, when asked to save them

# An evaluation (evaluate.py, neuroreg_tf.robustness.evaluation).
EVALUATE_CONFIG = "evaluate_config.json"
ROBUSTNESS_JSON = "robustness.json"  # written last: marks a finished evaluation
NOISE_PLOT = "noise_robustness.png"
ADVERSARIAL_CSV = "adversarial_per_sample.csv"
ADVERSARIAL_PLOT = "adversarial_robustness.png"


def path(workdir: str, *names: str) -> str:
    """``os.path.join(workdir, *names)``, for symmetry with the names above."""
    return os.path.join(workdir, *names)


def is_finished_training(workdir: str) -> bool:
    """Whether ``workdir`` holds a finished training run."""
    return os.path.isfile(path(workdir, SUMMARY))
