"""What reading does with data a recording cannot be used with as stored.

``ReadOptions`` chooses, and every change is announced with a
``RecordingWarning`` that says how many trials or neurons and why, and listed in
``recording.metadata["treatments"]`` (and so in the target's provenance):

* tiers other than train / validation / test / final_test: an error naming
  ``meta/trials/tiers.npy`` (default), or ``unknown_tiers="drop"`` to drop
  those trials;
* a tier whose responses are all exactly zero (how competition releases
  withhold their test responses): always dropped, with a warning;
* NaN or infinite responses, behaviour or pupil centre: an error naming the
  trial files (default), or ``nonfinite="drop"`` to drop those trials; a
  non-finite image is always an error;
* neurons that never vary (e.g. never fire) over the remaining trials:
  dropped with a warning (default), or ``dead_neurons="error"``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np

from neuroreg_tf.neural.recordings.images import ImageOptions
from neuroreg_tf.neural.recordings.recording import TIERS, Recording, RecordingError, RecordingWarning

DEAD_NEURONS = ("drop", "error")
NONFINITE = ("error", "drop")
UNKNOWN_TIERS = ("error", "drop")


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How a stored recording becomes a ``Recording``.

    Attributes:
        images: colour reduction and resizing (``ImageOptions``).
        dead_neurons: ``"drop"`` (with a warning) or ``"error"``.
        nonfinite: ``"error"`` or ``"drop"`` the trials with NaN/inf responses, behaviour or pupil centre.
        unknown_tiers: ``"error"`` or ``"drop"`` the trials of tiers other than ``TIERS``.
    """

    images: ImageOptions = ImageOptions()
    dead_neurons: str = "drop"
    nonfinite: str = "error"
    unknown_tiers: str = "error"

    def __post_init__(self):
        for name, accepted in (("dead_neurons", DEAD_NEURONS), ("nonfinite", NONFINITE), ("unknown_tiers", UNKNOWN_TIERS)):
            if getattr(self, name) not in accepted:
                raise ValueError(f"`{name}` must be one of {accepted}. Received: {name}={getattr(self, name)!r}")


# (data key or meta name, trial rows) -> the file(s) to name in a message.
Locator = Callable[[str, np.ndarray], str]


def _announce(message: str, treatments: list) -> None:
    treatments.append(message)
    warnings.warn(RecordingWarning(message), stacklevel=4)


def finish(fields: dict, options: ReadOptions, label: str, locate: Locator) -> Recording:
    """Applies the treatments to a reader's arrays and builds the validated ``Recording``.

    Args:
        fields: the ``Recording`` fields as read (``images`` already grayscale in [0, 1]).
        options: the treatments chosen.
        label: the file or folder read, prefixed to every error.
        locate: names the stored file(s) of a key's trials for messages.

    Raises:
        RecordingError: naming the file, the problem and the fix.
    """
    treatments: list[str] = []
    metadata = fields.setdefault("metadata", {})
    tiers = np.asarray([t.decode() if isinstance(t, bytes) else str(t) for t in np.asarray(fields["tiers"]).reshape(-1)])
    fields["tiers"] = tiers
    n = tiers.size
    keep = np.ones(n, bool)

    unknown = ~np.isin(tiers, TIERS)
    if unknown.any():
        labels, counts = np.unique(tiers[unknown], return_counts=True)
        found = {str(t): int(c) for t, c in zip(labels, counts)}
        if options.unknown_tiers == "error":
            raise RecordingError(
                f"{locate('tiers', np.flatnonzero(unknown))} holds tiers other than {TIERS}: {found}. "
                "Relabel those trials in the tiers file, or drop them when reading "
                "(ReadOptions(unknown_tiers='drop'); build_target.py: --config.read.unknown_tiers=drop). "
                f"Received: tiers {sorted(found)}"
            )
        keep &= ~unknown
        _announce(f"{label}: dropped {int(unknown.sum())} trial(s) of tiers {found} (not one of {TIERS})", treatments)

    responses = np.asarray(fields["responses"])
    for tier in np.unique(tiers[keep]):
        rows = keep & (tiers == tier)
        values = responses[rows]
        if np.isfinite(values).all() and not np.any(values):
            keep &= ~rows
            _announce(
                f"{label}: dropped tier {str(tier)!r} ({int(rows.sum())} trials): every response is exactly 0, "
                "which is how competition releases withhold test responses",
                treatments,
            )

    images = np.asarray(fields["images"])
    bad_images = ~np.isfinite(images.reshape(n, -1)).all(axis=1)
    if bad_images.any():
        raise RecordingError(
            f"{locate('images', np.flatnonzero(bad_images))}: {int(bad_images.sum())} image(s) contain NaN or "
            "infinite pixels. Restore the images from the original release. Received: non-finite images"
        )
    for key in ("responses", "behavior", "pupil_center"):
        values = np.asarray(fields[key]).reshape(n, -1)
        bad = keep & ~np.isfinite(values).all(axis=1)
        if not bad.any():
            continue
        if options.nonfinite == "error":
            raise RecordingError(
                f"{locate(key, np.flatnonzero(bad))}: {int(bad.sum())} trial(s) have NaN or infinite {key}. "
                "Repair those trials, or drop them when reading (ReadOptions(nonfinite='drop'); "
                f"build_target.py: --config.read.nonfinite=drop). Received: non-finite {key} on trials "
                f"{np.flatnonzero(bad)[:5].tolist()}"
            )
        keep &= ~bad
        _announce(f"{label}: dropped {int(bad.sum())} trial(s) with NaN or infinite {key}", treatments)

    if not keep.all():
        if not keep.any():
            raise RecordingError(f"{label}: no trial is left after the treatments above: {treatments}. Received: 0 trials")
        for key in ("images", "responses", "behavior", "pupil_center", "tiers", "image_ids"):
            fields[key] = np.asarray(fields[key])[keep]
        fields["trial_meta"] = {name: np.asarray(v)[keep] for name, v in fields.get("trial_meta", {}).items()}

    responses = np.asarray(fields["responses"], dtype=np.float64)
    dead = responses.std(axis=0) == 0 if responses.shape[0] else np.zeros(responses.shape[1], bool)
    if dead.any():
        neuron_ids = np.asarray(fields["neuron_ids"])
        if options.dead_neurons == "error":
            raise RecordingError(
                f"{locate('responses', np.arange(0))}: {int(dead.sum())} neuron(s) never vary over the trials "
                f"(unit ids {neuron_ids[dead][:10].tolist()}); they carry no information and break the SNR "
                "weights. Drop them (ReadOptions(dead_neurons='drop'), the default; build_target.py: "
                f"--config.read.dead_neurons=drop). Received: {int(dead.sum())} constant neuron(s)"
            )
        fields["responses"] = fields["responses"][:, ~dead]
        fields["neuron_ids"] = neuron_ids[~dead]
        fields["neuron_meta"] = {name: np.asarray(v)[~dead] for name, v in fields.get("neuron_meta", {}).items()}
        _announce(
            f"{label}: dropped {int(dead.sum())} of {dead.size} neuron(s) whose responses never vary "
            f"(unit ids {neuron_ids[dead][:10].tolist()}{' ...' if dead.sum() > 10 else ''})",
            treatments,
        )
    if treatments:
        metadata["treatments"] = treatments
    try:
        return Recording(**fields)
    except RecordingError as error:
        raise RecordingError(f"{label}: {error}") from None
