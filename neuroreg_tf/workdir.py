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

One process works in a workdir at a time: ``locked`` holds ``LOCK`` (the holder's pid, host and
work) while it runs; a second process is refused at once, and the lock of a process that no
longer runs is taken over with a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from typing import Callable

from neuroreg_tf import fileio
from neuroreg_tf.errors import WorkdirError
from neuroreg_tf.progress import Reporter, print_line, reporter

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


def check_path(workdir: str) -> None:
    """Refuses a workdir path that cannot be a directory, naming the problem and the fix."""
    if not workdir or not str(workdir).strip():
        raise WorkdirError("--workdir is empty: name a directory, e.g. --workdir=runs/demo.")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir={workdir} is a file, not a directory: choose another --workdir.")
    parent = os.path.dirname(os.path.abspath(workdir))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise WorkdirError(f"--workdir={workdir} lies under {parent}, which is a file: choose another --workdir.")


# ---------------------------------------------------------------------------------------------
# One process per workdir.
# ---------------------------------------------------------------------------------------------

LOCK = ".lock"  # {"pid", "host", "what", "since"} of the process working in the workdir

_held: set[str] = set()  # lock files this process holds (a nested ``locked`` of one only yields)


def _process_runs(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _describe_holder(holder: dict) -> str:
    return (f"{holder.get('what', 'another process')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {holder.get('since', '?')})")


def _read_lock(lock: str) -> dict | None:
    try:
        with open(lock) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None


def _acquire(workdir: str, lock: str, what: str, report) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if holder is None:
                try:
                    age = time.time() - os.path.getmtime(lock)
                except OSError:
                    continue  # released meanwhile
                if age < 5:  # being written by a process that has just taken it
                    raise WorkdirError(f"{workdir} is being taken by another process; wait for it, or choose another --workdir.")
                report(f"{workdir}: its lock {lock} is unreadable and {age:.0f} s old; taking it over.")
            elif holder.get("host") != record["host"] or not isinstance(holder.get("pid"), int) or (
                holder["pid"] != record["pid"] and _process_runs(holder["pid"])
            ):  # another host's, one without a usable pid (unknowable), or a live process's
                raise WorkdirError(
                    f"{workdir} is in use by {_describe_holder(holder)}: wait for it to finish or stop "
                    f"it, or choose another --workdir (if that process no longer runs, delete {lock})."
                )
            else:
                report(f"{workdir}: taking over the lock of {_describe_holder(holder)}, which no longer runs.")
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            continue
        with os.fdopen(handle, "w") as f:
            json.dump(record, f)
        return
    raise WorkdirError(f"{workdir} is contended by other processes; wait for them, or choose another --workdir.")


@contextlib.contextmanager
def locked(workdir: str, what: str, *, name: str = LOCK, progress: Reporter = print_line):
    """Holds ``workdir`` for this process while the block runs (re-entrant within the process).

    Creates ``workdir`` if needed and the lock file ``name`` in it atomically (``O_EXCL``)
    with this process's pid, host, ``what`` and the time. Another process's live lock is
    refused at once with a ``WorkdirError`` naming the holder; the lock of a process of this
    host that no longer runs is taken over with a message. The lock is removed when the block
    ends (also by an exception); a killed process leaves it, and the next taker takes it over.

    Args:
        workdir: the directory.
        what: the work, for messages, e.g. "training run".
        name: the lock's file name (a study's shards each hold their own).
        progress: reporter of the take-over message (None: silent).
    """
    check_path(workdir)
    lock = os.path.join(os.path.realpath(workdir), name)
    if lock in _held:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    _acquire(workdir, lock, what, reporter(progress))
    _held.add(lock)
    try:
        yield
    finally:
        _held.discard(lock)
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock)


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
    """The identity recorded in ``workdir`` (its fingerprint verified), or None when there is none.

    Raises:
        WorkdirError: ``identity.json`` lacks its fingerprint or was changed after it was written.
    """
    file = path(workdir, IDENTITY)
    if not os.path.isfile(file):
        return None
    identity = fileio.read_json(file, "the workdir's identity")
    if not isinstance(identity, dict) or identity.get("fingerprint") != fingerprint_of(identity):
        raise WorkdirError(
            f"{file} {'lacks its fingerprint' if 'fingerprint' not in (identity or {}) else 'was changed after it was written'}"
            ", so what made this workdir is unknown. Choose another --workdir, or start over "
            "(--config.overwrite=True, or delete it)."
        )
    return identity


def _remove_retired(workdir: str) -> None:
    parent = os.path.dirname(os.path.abspath(workdir)) or "."
    prefix = os.path.basename(os.path.abspath(workdir)) + RETIRED_SUFFIX
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _retire(workdir: str) -> None:
    """Moves ``workdir`` aside atomically (a rename) and creates it anew, empty but for its locks."""
    retired = f"{os.path.abspath(workdir)}{RETIRED_SUFFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        os.rename(workdir, retired)
    except OSError as error:
        raise WorkdirError(
            f"Cannot move {workdir} aside to start over ({error.strerror}). Delete it yourself, "
            "or choose another --workdir."
        ) from None
    os.makedirs(workdir)
    for name in os.listdir(retired):
        if name.startswith(LOCK):  # the locks stay with the workdir's path
            with contextlib.suppress(OSError):
                os.link(os.path.join(retired, name), os.path.join(workdir, name))


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "a training run", "an evaluation"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def claim(workdir: str, identity: dict, *, what: str, finished_marker: str, overwrite: bool,
          start_over: str = "pass --config.overwrite=True to replace what is there",
          upgrade: Callable[[dict], dict] | None = None) -> str:
    """Takes ``workdir`` for the work that ``identity`` describes.

    * An empty or new workdir: the identity is written (``NEW``).
    * The same identity: ``FINISHED`` if ``finished_marker`` exists, else ``RESUME`` (the caller
      continues from what is there).
    * Another identity, or files but no identity: refused with a ``WorkdirError`` that lists
      the differing keys and the two ways on, unless ``overwrite``.
    * Another kind of work (the identities' ``kind``, e.g. a training run where an evaluation
      is asked for): refused, also with ``overwrite``.
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
        start_over: how the caller's user starts over, for the refusal ("Either choose a new
            --workdir, or <start_over>.").
        upgrade: turns an identity an older version recorded (renamed config keys, ...) into
            today's form; when that equals ``identity``, the workdir is the same work and its
            ``identity.json`` is rewritten in today's form.

    Returns:
        ``NEW``, ``RESUME`` or ``FINISHED``.
    """
    _remove_retired(workdir)
    identity = {**identity, "fingerprint": fileio.fingerprint(identity)}
    existing = os.path.isdir(workdir) and any(not n.startswith(LOCK) for n in os.listdir(workdir))
    if existing:
        try:
            recorded = read_identity(workdir)
        except WorkdirError:
            if not overwrite:
                raise
            recorded = None
        same = recorded is not None and recorded.get("fingerprint") == identity["fingerprint"]
        if recorded is not None and not same and upgrade is not None:
            upgraded = upgrade({k: v for k, v in recorded.items() if k != "fingerprint"})
            if fingerprint_of(upgraded) == identity["fingerprint"]:
                fileio.write_json_atomic(path(workdir, IDENTITY), identity)
                same = True
        if same and not overwrite:
            return FINISHED if os.path.exists(path(workdir, finished_marker)) else RESUME
        held = (recorded or {}).get("kind")
        if held and identity.get("kind") and held != identity["kind"]:
            raise WorkdirError(
                f"{workdir} holds {_a(held)}, not {_a(what)}: choose another --workdir for the "
                f"{what} (it never replaces {_a(held)}, not even with --config.overwrite=True)."
            )
        if not overwrite:
            if recorded is None:
                reason = f"it holds files but no {IDENTITY}, so what made them is unknown"
            else:
                differences = identity_differences(
                    {k: v for k, v in recorded.items() if k != "fingerprint"},
                    {k: v for k, v in identity.items() if k != "fingerprint"},
                )
                reason = f"it holds {_a(held or what)} of another config or input:\n  " + "\n  ".join(differences)
            raise WorkdirError(
                f"{workdir} cannot be used for this {what}: {reason}\nEither choose a new "
                f"--workdir, or {start_over}."
            )
        _retire(workdir)
    os.makedirs(workdir, exist_ok=True)
    fileio.write_json_atomic(path(workdir, IDENTITY), identity)
    _remove_retired(workdir)
    return NEW


def fingerprint_of(identity: dict) -> str:
    """The fingerprint ``claim`` records for ``identity``."""
    return fileio.fingerprint({k: v for k, v in identity.items() if k != "fingerprint"})
