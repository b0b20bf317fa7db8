"""The workdir contract: the files each script writes, named in one place.

Data flows one way, each step reading only the previous step's files::

    build_target.py  <workdir>/target/ (+ targets/<kind>/, target_report.json, figures/)
    train.py         <workdir>/{config.json, history.csv, model.keras, export/, summary.json, ...}
    evaluate.py      <workdir>/{robustness.json, noise_robustness.png, ...}
    study.py         <workdir>/{targets/<name>/, runs/<condition>/seed_<k>/, report.md, ...}

Every artifact is written under a temporary name and renamed into place (``fileio``); a file
written last marks a finished step (``SUMMARY`` for training, ``ROBUSTNESS_JSON`` for evaluation,
``TARGET_REPORT`` for a target build). ``IDENTITY``, written first, records what the work
depends on (``claim``): a workdir is reused or resumed only for the same identity.
"""

from __future__ import annotations

import os
import shutil
import time

from neuroreg_tf import fileio
from neuroreg_tf.errors import WorkdirError

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


# ---------------------------------------------------------------------------------------------
# Identity: every workdir records what made it, and is reused or resumed only for the same.
# ---------------------------------------------------------------------------------------------

IDENTITY = "identity.json"  # written first: what made this workdir (config + inputs' fingerprints)
RETIRED_SUFFIX = ".replaced-"  # <workdir>.replaced-<time>-<pid>: an overwritten workdir, going away

NEW, RESUME, FINISHED = "new", "resume", "finished"


def _flatten(payload, prefix: str = "") -> dict:
    if isinstance(payload, dict):
        flat = {}
        for key, value in payload.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: payload}


def identity_differences(recorded: dict, wanted: dict, limit: int = 8) -> list[str]:
    """Lines ``key: <recorded> there, <wanted> here`` for the keys whose values differ."""
    old, new = _flatten(recorded), _flatten(wanted)
    lines = []
    for key in sorted(set(old) | set(new)):
        if fileio.canonical_json(old.get(key)) != fileio.canonical_json(new.get(key)):
            there = "absent" if key not in old else fileio.canonical_json(old[key])
            here = "absent" if key not in new else fileio.canonical_json(new[key])
            lines.append(f"{key}: {there} there, {here} here")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def read_identity(workdir: str) -> dict | None:
    """The identity recorded in ``workdir``, or None."""
    file = path(workdir, IDENTITY)
    return fileio.read_json(file, "the workdir's identity") if os.path.isfile(file) else None


def _remove_retired(workdir: str) -> None:
    parent = os.path.dirname(os.path.abspath(workdir)) or "."
    prefix = os.path.basename(os.path.abspath(workdir)) + RETIRED_SUFFIX
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _retire(workdir: str) -> None:
    """Moves ``workdir`` aside atomically (a rename) and creates it anew, empty."""
    retired = f"{os.path.abspath(workdir)}{RETIRED_SUFFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        os.rename(workdir, retired)
    except OSError as error:
        raise WorkdirError(
            f"Cannot move {workdir} aside to start over ({error.strerror}). Delete it yourself, "
            "or choose another --workdir."
        ) from None
    os.makedirs(workdir)


def claim(workdir: str, identity: dict, *, what: str, finished_marker: str, overwrite: bool) -> str:
    """Takes ``workdir`` for the work that ``identity`` describes.

    * An empty or new workdir: the identity is written (``NEW``).
    * The same identity: ``FINISHED`` if ``finished_marker`` exists, else ``RESUME`` (the caller
      continues from what is there).
    * Another identity, or files but no identity: refused with a ``WorkdirError`` that lists
      the differing keys and the two ways on, unless ``overwrite``.
    * ``overwrite``: the old workdir is moved aside by one rename, a new empty one is made and
      the identity written, then the old one is removed (``NEW``). A run killed in between
      leaves either the old workdir or an empty new one, never a mix; leftovers of moved-aside
      workdirs are removed by the next claim.

    Args:
        workdir: the directory.
        identity: JSON-able description of what the work depends on (its config without keys
            that do not change results, and its inputs' fingerprints).
        what: a name for the work in messages, e.g. "training run".
        finished_marker: the file name, in ``workdir``, that marks finished work.
        overwrite: start over whatever is there.

    Returns:
        ``NEW``, ``RESUME`` or ``FINISHED``.
    """
    _remove_retired(workdir)
    identity = {**identity, "fingerprint": fileio.fingerprint(identity)}
    existing = os.path.isdir(workdir) and bool(os.listdir(workdir))
    if existing:
        recorded = read_identity(workdir)
        same = recorded is not None and recorded.get("fingerprint") == identity["fingerprint"]
        if same and not overwrite:
            return FINISHED if os.path.exists(path(workdir, finished_marker)) else RESUME
        if not overwrite:
            if recorded is None:
                reason = f"it holds files but no {IDENTITY}, so what made them is unknown"
            else:
                differences = identity_differences(
                    {k: v for k, v in recorded.items() if k != "fingerprint"},
                    {k: v for k, v in identity.items() if k != "fingerprint"},
                )
                reason = "it holds a " + what + " of another config or input:\n  " + "\n  ".join(differences)
            raise WorkdirError(
                f"{workdir} cannot be used for this {what}: {reason}\nEither choose a new "
                "--workdir, or pass --config.overwrite=True to replace what is there."
            )
        _retire(workdir)
    os.makedirs(workdir, exist_ok=True)
    fileio.write_json_atomic(path(workdir, IDENTITY), identity)
    _remove_retired(workdir)
    return NEW


def fingerprint_of(identity: dict) -> str:
    """The fingerprint ``claim`` records for ``identity``."""
    return fileio.fingerprint({k: v for k, v in identity.items() if k != "fingerprint"})
