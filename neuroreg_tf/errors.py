"""The project's own errors: bad input, bad configs, missing data, damaged or foreign files.

Every message says what is wrong and how to fix it. The scripts print these errors as a short
message and exit with status 2 (``neuroreg_tf.cli``); any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NeuroregError(Exception):
    """Base class of the errors a user can act on."""


class ConfigError(NeuroregError, ValueError):
    """A config value, key or variant is not accepted; the message lists what is."""


class InputError(NeuroregError, ValueError):
    """User data (a recording, a target, stimuli, images) is malformed."""


class MissingDataError(NeuroregError, FileNotFoundError):
    """A dataset, recording, target or weights file is missing; the message says how to get it."""


class WorkdirError(NeuroregError):
    """A workdir holds another run's results, or an unfinished run of another config."""


class CheckpointError(NeuroregError):
    """No usable checkpoint: every checkpoint in a backup directory is damaged."""
