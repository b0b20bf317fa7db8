"""The ``Recording`` of one scan, validated on construction.

A ``Recording`` is one 2-photon scan: the image shown on every trial, the
population response on that trial, behaviour, pupil centre, the trial tier
(train / validation / test / final_test) and the image id that marks repeated
("oracle") presentations, plus the per-neuron and per-trial meta data of the
public releases (``area``, ``animal_ids``, ``frame_image_class``, ...), kept so
that a recording read from a release is written back the way it came.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neuroreg_tf.errors import InputError

TIERS = ("train", "validation", "test", "final_test")
DEFAULT_BEHAVIOR_NAMES = ("pupil_size", "d_pupil_size", "running_speed")
# The names released datasets give the image id of a trial, in the order SENSORIUM's
# loader looks for them: HDF5 ``item_info/image_id``, the colour datasets'
# ``colorframeprojector_image_id``, and ``frame_image_id``.
IMAGE_ID_NAMES = ("image_id", "colorframeprojector_image_id", "frame_image_id")
# Two images under the same id differ when a pixel differs by more than this (in [0, 1]).
SAME_IMAGE_TOLERANCE = 1.5 / 255.0


def check_image_id_arrays(chosen: str, image_ids, trial_meta: dict, where: str) -> None:
    """Refuses a recording whose other image-id arrays (``IMAGE_ID_NAMES`` in ``trial_meta``) group
    its trials differently from ``chosen``: which trials repeat an image would then depend on which
    array a reader prefers. Arrays that only name the same images otherwise are accepted.

    Args:
        chosen: the name of the array read as the image id.
        image_ids: its values, one per trial.
        trial_meta: the recording's other per-trial arrays, by name.
        where: the place the arrays live, for the message (e.g. ``<path>/meta/trials``).
    """
    _, chosen_codes = np.unique(np.asarray(image_ids), return_inverse=True)
    for name in IMAGE_ID_NAMES:
        if name == chosen or name not in trial_meta:
            continue
        values = np.asarray(trial_meta[name]).reshape(-1)
        if values.shape[0] != chosen_codes.shape[0]:
            continue  # not one per trial: not an image id of these trials
        _, other_codes = np.unique(values, return_inverse=True)
        pairs = np.unique(chosen_codes.astype(np.int64) * (int(other_codes.max()) + 1) + other_codes).size
        n_chosen, n_other = int(chosen_codes.max()) + 1, int(other_codes.max()) + 1
        if pairs != n_chosen or pairs != n_other:
            raise RecordingError(
                f"{where} holds two image ids that group the trials differently: {chosen} ({n_chosen} images) "
                f"and {name} ({n_other} images), {pairs} distinct pairs of the two. Which trials repeat an image "
                f"would depend on which one a reader takes ({chosen}, by SENSORIUM's order {list(IMAGE_ID_NAMES)}). "
                f"Keep the one that names the images shown and rename or remove the other, then read again. "
                f"Received: {chosen} and {name}"
            )


def image_class_name(image_id_name: str) -> str:
    """``frame_image_id`` -> ``frame_image_class`` (the class array SENSORIUM reads beside it)."""
    return image_id_name[: -len("id")] + "class"


class RecordingError(InputError):
    """A recording is malformed; the message names the file, says what and how to fix it."""


class RecordingWarning(UserWarning):
    """A documented treatment changed a recording while reading it (e.g. dead neurons dropped)."""


@dataclasses.dataclass
class Recording:
    """One scan: trials of images and population responses.

    Attributes:
        images: (n_trials, height, width, 1) float32 images in [0, 1].
        responses: (n_trials, n_neurons) responses (e.g. deconvolved activity).
        behavior: (n_trials, n_behavior) behavioural variables (any number of columns).
        pupil_center: (n_trials, 2) eye position (x, y).
        tiers: (n_trials,) 'train', 'validation', 'test' or 'final_test'.
        image_ids: (n_trials,) integer id of the image shown; an id that occurs
            on several trials marks a repeated ("oracle") image. One id is one
            image (the same pixels) and belongs to one tier.
        neuron_ids: (n_neurons,) integer unit ids, unique within the scan.
        behavior_names: names of the ``behavior`` columns.
        simulated: True for SIMULATED data (never recorded from an animal).
        metadata: provenance (source file, scan name, simulator parameters, ...).
        neuron_meta: further per-neuron arrays (first axis n_neurons), e.g.
            ``area``, ``layer``, ``animal_ids``, ``sessions``, ``scan_idx``.
        trial_meta: further per-trial arrays (first axis n_trials), e.g.
            ``frame_image_class``, ``trial_idx``.
        image_id_name: the name the image ids are stored under (one of
            ``IMAGE_ID_NAMES``).
    """

    images: np.ndarray
    responses: np.ndarray
    behavior: np.ndarray
    pupil_center: np.ndarray
    tiers: np.ndarray
    image_ids: np.ndarray
    neuron_ids: np.ndarray
    behavior_names: tuple[str, ...] = DEFAULT_BEHAVIOR_NAMES
    simulated: bool = False
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    neuron_meta: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    trial_meta: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    image_id_name: str = "frame_image_id"

    def __post_init__(self):
        images = np.asarray(self.images)
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        self.images = images.astype(np.float32, copy=False)
        self.responses = np.asarray(self.responses, dtype=np.float32)
        self.behavior = np.asarray(self.behavior, dtype=np.float32)
        if self.behavior.ndim == 1:
            self.behavior = self.behavior[:, None]
        self.pupil_center = np.asarray(self.pupil_center, dtype=np.float32)
        self.tiers = np.asarray([_as_str(t) for t in np.asarray(self.tiers).reshape(-1)])
        self.image_ids = np.asarray(self.image_ids).reshape(-1)
        self.neuron_ids = np.asarray(self.neuron_ids).reshape(-1)
        self.behavior_names = tuple(self.behavior_names)
        self.neuron_meta = {name: np.asarray(value) for name, value in self.neuron_meta.items()}
        self.trial_meta = {name: np.asarray(value) for name, value in self.trial_meta.items()}
        self.validate()

    @property
    def n_trials(self) -> int:
        return int(self.responses.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.responses.shape[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def source(self) -> str:
        """Where the recording came from (a path), or ``"in-memory"``."""
        return str(self.metadata.get("source", "in-memory"))

    def validate(self) -> None:
        """Checks shapes, values, the repeat design and that ids name images.

        Raises:
            RecordingError: naming the first problem and how to fix it.
        """
        if self.images.ndim != 4 or self.images.shape[-1] != 1:
            raise RecordingError(
                "`images` must be grayscale, shaped (n_trials, height, width[, 1]); reading a "
                "recording reduces colour images (``ImageOptions.color``). "
                f"Received: images.shape={self.images.shape}"
            )
        if self.responses.ndim != 2 or self.responses.shape[1] < 2:
            raise RecordingError(
                "`responses` must be (n_trials, n_neurons) with at least 2 neurons. "
                f"Received: responses.shape={self.responses.shape}"
            )
        n_trials = self.responses.shape[0]
        per_trial = {
            "images": self.images.shape[0],
            "behavior": self.behavior.shape[0],
            "pupil_center": self.pupil_center.shape[0],
            "tiers": self.tiers.shape[0],
            "image_ids": self.image_ids.shape[0],
            **{f"trial_meta[{name!r}]": np.shape(value)[0] if np.ndim(value) else 0 for name, value in self.trial_meta.items()},
        }
        mismatched = {name: n for name, n in per_trial.items() if n != n_trials}
        if mismatched:
            raise RecordingError(
                f"Every per-trial array needs one entry per trial ({n_trials} trials "
                f"in `responses`). Received: {mismatched}"
            )
        per_neuron = {name: np.shape(value)[0] if np.ndim(value) else 0 for name, value in self.neuron_meta.items()}
        mismatched = {name: n for name, n in per_neuron.items() if n != self.responses.shape[1]}
        if mismatched:
            raise RecordingError(
                f"Every `neuron_meta` array needs one entry per neuron ({self.responses.shape[1]}). "
                f"Received: {mismatched}"
            )
        if self.pupil_center.ndim != 2 or self.pupil_center.shape[1] != 2:
            raise RecordingError(
                "`pupil_center` must be (n_trials, 2). "
                f"Received: pupil_center.shape={self.pupil_center.shape}"
            )
        if self.behavior.ndim != 2 or self.behavior.shape[1] != len(self.behavior_names):
            raise RecordingError(
                f"`behavior` must be (n_trials, {len(self.behavior_names)}) to match "
                f"behavior_names={self.behavior_names}. "
                f"Received: behavior.shape={self.behavior.shape}"
            )
        if self.neuron_ids.shape[0] != self.responses.shape[1]:
            raise RecordingError(
                f"`neuron_ids` needs one id per neuron ({self.responses.shape[1]}). "
                f"Received: neuron_ids.shape={self.neuron_ids.shape}"
            )
        if np.unique(self.neuron_ids).size != self.neuron_ids.size:
            raise RecordingError("`neuron_ids` must be unique within a scan.")
        if not np.issubdtype(self.image_ids.dtype, np.integer):
            raise RecordingError(
                f"`image_ids` must be integers. Received: image_ids.dtype={self.image_ids.dtype}"
            )
        if self.image_id_name not in IMAGE_ID_NAMES:
            raise RecordingError(
                f"`image_id_name` must be one of {IMAGE_ID_NAMES}. Received: image_id_name={self.image_id_name!r}"
            )
        for name in ("images", "responses", "behavior", "pupil_center"):
            values = getattr(self, name)
            if not np.all(np.isfinite(values)):
                rows = np.flatnonzero(~np.isfinite(values.reshape(n_trials, -1)).all(axis=1))
                raise RecordingError(
                    f"`{name}` contains NaN or infinite values on {rows.size} trial(s) "
                    f"(first: {rows[:5].tolist()}). Drop or impute these trials "
                    "(``recording.select_trials(mask)``, or read with ``ReadOptions(nonfinite='drop')``). "
                    f"Received: {name} with non-finite values"
                )
        if self.images.min() < 0.0 or self.images.max() > 1.0:
            raise RecordingError(
                "Image pixels must lie in [0, 1] (uint8 images are rescaled "
                "automatically). Received: values in "
                f"[{self.images.min():g}, {self.images.max():g}]"
            )
        unknown = sorted(set(self.tiers.tolist()) - set(TIERS))
        if unknown:
            raise RecordingError(
                f"`tiers` must be one of {TIERS}; relabel or drop the other trials "
                f"(read with ``ReadOptions(unknown_tiers='drop')``). Received: tiers with {unknown}"
            )
        silent = np.flatnonzero(self.responses.std(axis=0) == 0)
        if silent.size:
            raise RecordingError(
                f"{silent.size} neuron(s) have zero response variance across trials "
                f"(neuron ids {self.neuron_ids[silent[:10]].tolist()}); they carry no "
                "information and break the SNR weights. Drop them with "
                "`recording.select_neurons(mask)` (readers do so by default, with a warning)."
            )
        self._check_ids_name_images()
        counts = np.unique(self.image_ids, return_counts=True)[1]
        if counts.max() < 2:
            raise RecordingError(
                "No image is shown more than once, so signal and noise cannot be "
                "separated (Eq 1 needs repeated 'oracle' images). Mark repeated "
                "presentations with the same image id. Received: "
                f"{self.image_ids.size} trials with {self.image_ids.size} distinct image ids"
            )

    def _check_ids_name_images(self) -> None:
        """One id, one image: the same pixels on every trial and a single tier."""
        ids, first, inverse = np.unique(self.image_ids, return_index=True, return_inverse=True)
        difference = np.abs(self.images - self.images[first[inverse]]).reshape(self.n_trials, -1).max(axis=1)
        clashing = np.flatnonzero(difference > SAME_IMAGE_TOLERANCE)
        if clashing.size:
            bad_ids = np.unique(self.image_ids[clashing])
            raise RecordingError(
                f"{bad_ids.size} image id(s) are shown with different pixels on different trials "
                f"(ids {bad_ids[:5].tolist()}; e.g. trials {int(first[np.searchsorted(ids, bad_ids[0])])} and "
                f"{int(clashing[0])} differ by up to {difference[clashing].max():.3f}). An image id must "
                f"name one image: fix `{self.image_id_name}` so that different images get different ids. "
                f"Received: {clashing.size} trial(s) whose image differs from the first trial of its id"
            )
        tier_codes = np.unique(self.tiers, return_inverse=True)[1].reshape(-1)
        per_id = np.zeros((ids.size, int(tier_codes.max()) + 1), bool)
        per_id[inverse.reshape(-1), tier_codes] = True
        mixed = np.flatnonzero(per_id.sum(axis=1) > 1)
        if mixed.size:
            example = ids[mixed[0]]
            tiers = sorted(set(self.tiers[self.image_ids == example].tolist()))
            raise RecordingError(
                f"{mixed.size} image id(s) occur in more than one tier (id {int(example)} in {tiers}): "
                "repeated (test) images whose ids collide with train images would leak the test "
                "images into training and inflate every oracle measure. Give every image its own "
                f"id in `{self.image_id_name}` and one tier, or drop the colliding trials "
                f"(``recording.select_trials(mask)``). Received: ids {ids[mixed[:5]].tolist()}"
            )

    def select_neurons(self, mask) -> "Recording":
        """A copy with only the neurons where ``mask`` (bool or indices) selects."""
        return dataclasses.replace(
            self,
            responses=self.responses[:, mask],
            neuron_ids=self.neuron_ids[mask],
            neuron_meta={name: value[mask] for name, value in self.neuron_meta.items()},
        )

    def select_trials(self, mask) -> "Recording":
        """A copy with only the trials where ``mask`` (bool or indices) selects."""
        return dataclasses.replace(
            self,
            images=self.images[mask],
            responses=self.responses[mask],
            behavior=self.behavior[mask],
            pupil_center=self.pupil_center[mask],
            tiers=self.tiers[mask],
            image_ids=self.image_ids[mask],
            trial_meta={name: value[mask] for name, value in self.trial_meta.items()},
        )

    def oracle_image_ids(self) -> np.ndarray:
        """Sorted ids of the images shown more than once."""
        ids, counts = np.unique(self.image_ids, return_counts=True)
        return ids[counts >= 2]

    def repeated_trials(self, image_ids=None) -> np.ndarray:
        """Trial indices of the repeats, (n_oracle, n_repeats), in ``image_ids`` order.

        When images were repeated a different number of times, the first
        ``min(count)`` repeats of each are used.
        """
        image_ids = self.oracle_image_ids() if image_ids is None else np.asarray(image_ids)
        trials = [np.flatnonzero(self.image_ids == image_id) for image_id in image_ids]
        shortest = min(len(t) for t in trials)
        if shortest < 2:
            raise RecordingError(
                "Every oracle image needs at least 2 repeats. Received: image ids "
                f"{[int(i) for i, t in zip(image_ids, trials) if len(t) < 2][:10]} "
                "with fewer"
            )
        return np.stack([t[:shortest] for t in trials])

    def repeated_responses(self, image_ids=None) -> np.ndarray:
        """Responses to the repeats, (n_oracle, n_repeats, n_neurons)."""
        return self.responses[self.repeated_trials(image_ids)]

    def unique_images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image_ids, images, first_trial) with one entry per distinct image, sorted by id."""
        ids, first = np.unique(self.image_ids, return_index=True)
        return ids, self.images[first], first


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_ids_agree_across_scans(recordings) -> None:
    """Checks that an image id shown in several scans names the same image in each.

    Raises:
        RecordingError: naming both sources, an id and the largest pixel difference.
    """
    earlier = []
    for recording in recordings:
        ids, images, _ = recording.unique_images()
        for other_ids, other_images, other_source in earlier:
            common, here, there = np.intersect1d(ids, other_ids, return_indices=True)
            if not common.size:
                continue
            difference = np.abs(images[here] - other_images[there]).reshape(common.size, -1).max(axis=1)
            bad = np.flatnonzero(difference > SAME_IMAGE_TOLERANCE)
            if bad.size:
                raise RecordingError(
                    f"{recording.source} and {other_source} show different images under the same "
                    f"id ({bad.size} of {common.size} shared ids, e.g. id {int(common[bad[0]])}, pixels "
                    f"differ by up to {difference[bad].max():.3f}). Ids must name the same image in every "
                    "scan (e.g. the stimulus database's ids); renumber one scan's ids. Received: ids "
                    f"{common[bad[:5]].tolist()}"
                )
        earlier.append((ids, images, recording.source))
