"""Recordings of one scan, and the field's two on-disk layouts for them.

A ``Recording`` is one 2-photon scan: the image shown on every trial, the
population response on that trial, behaviour, pupil centre, the trial tier
(train / validation / test) and the image id that marks repeated ("oracle")
presentations. It is validated on construction, so everything downstream can
assume clean data.

Readers and writers cover the two layouts of sinzlab/neuralpredictors so that
real recordings plug in:

* FileTree::

      root/config.json                       provenance (ours; optional on read)
      root/data/images/<trial>.npy           (1, height, width)
      root/data/responses/<trial>.npy        (n_neurons,)
      root/data/behavior/<trial>.npy         (n_behavior,)
      root/data/pupil_center/<trial>.npy     (2,)
      root/meta/neurons/unit_ids.npy         (n_neurons,)
      root/meta/trials/tiers.npy             (n_trials,) 'train' | 'validation' | 'test'
      root/meta/trials/frame_image_id.npy    (n_trials,) image id; repeats share it
      root/meta/statistics/<key>/all/{mean,std,min,max}.npy

* HDF5 StaticImageSet: datasets ``images`` (n, 1, h, w), ``responses``,
  ``behavior``, ``pupil_center``, ``tiers``, groups ``item_info``
  (``frame_image_id``) and ``neurons`` (``unit_ids``); provenance in the file
  attributes.

Simulated recordings carry ``simulated=True`` and a label in every file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from neuroreg_tf.errors import InputError
from neuroreg_tf.fileio import json_default

TIERS = ("train", "validation", "test", "final_test")
DEFAULT_BEHAVIOR_NAMES = ("pupil_size", "d_pupil_size", "running_speed")
_CONFIG = "config.json"


class RecordingError(InputError):
    """A recording is malformed; the message says what and how to fix it."""


@dataclasses.dataclass
class Recording:
    """One scan: trials of images and population responses.

    Attributes:
        images: (n_trials, height, width, 1) float32 images in [0, 1].
        responses: (n_trials, n_neurons) responses (e.g. deconvolved activity).
        behavior: (n_trials, n_behavior) behavioural variables.
        pupil_center: (n_trials, 2) eye position (x, y).
        tiers: (n_trials,) 'train', 'validation', 'test' (or 'final_test').
        image_ids: (n_trials,) integer id of the image shown; an id that occurs
            on several trials marks a repeated ("oracle") image.
        neuron_ids: (n_neurons,) integer unit ids, unique within the scan.
        behavior_names: names of the ``behavior`` columns.
        simulated: True for SIMULATED data (never recorded from an animal).
        metadata: provenance (scan name, simulator parameters, ...).
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

    def validate(self) -> None:
        """Checks shapes, values and the repeat design.

        Raises:
            RecordingError: naming the first problem and how to fix it.
        """
        if self.images.ndim != 4 or self.images.shape[-1] != 1:
            raise RecordingError(
                "`images` must be grayscale, shaped (n_trials, height, width[, 1]). "
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
        }
        mismatched = {name: n for name, n in per_trial.items() if n != n_trials}
        if mismatched:
            raise RecordingError(
                f"Every per-trial array needs one entry per trial ({n_trials} trials "
                f"in `responses`). Received: {mismatched}"
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
        for name in ("images", "responses", "behavior", "pupil_center"):
            values = getattr(self, name)
            if not np.all(np.isfinite(values)):
                rows = np.flatnonzero(~np.isfinite(values.reshape(n_trials, -1)).all(axis=1))
                raise RecordingError(
                    f"`{name}` contains NaN or infinite values on {rows.size} trial(s) "
                    f"(first: {rows[:5].tolist()}). Drop or impute these trials. "
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
            raise RecordingError(f"`tiers` must be one of {TIERS}. Received: tiers with {unknown}")
        silent = np.flatnonzero(self.responses.std(axis=0) == 0)
        if silent.size:
            raise RecordingError(
                f"{silent.size} neuron(s) have zero response variance across trials "
                f"(neuron ids {self.neuron_ids[silent[:10]].tolist()}); they carry no "
                "information and break the SNR weights. Drop them with "
                "`recording.select_neurons(mask)`."
            )
        counts = np.unique(self.image_ids, return_counts=True)[1]
        if counts.max() < 2:
            raise RecordingError(
                "No image is shown more than once, so signal and noise cannot be "
                "separated (Eq 1 needs repeated 'oracle' images). Mark repeated "
                "presentations with the same image id. Received: "
                f"{self.image_ids.size} trials with {self.image_ids.size} distinct image ids"
            )

    def select_neurons(self, mask) -> "Recording":
        """A copy with only the neurons where ``mask`` (bool or indices) selects."""
        return dataclasses.replace(
            self, responses=self.responses[:, mask], neuron_ids=self.neuron_ids[mask]
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


def _pixels_to_unit_range(images: np.ndarray, metadata: dict) -> np.ndarray:
    """Rescales 0..255 images (uint8, or floats as some recordings store them) to [0, 1]."""
    if images.dtype == np.uint8:
        return images
    if images.size and images.min() >= 0.0 and 1.0 < images.max() <= 255.0:
        metadata["images_rescaled_from_0_255"] = True
        return images.astype(np.float32) / 255.0
    return images


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------
# FileTree layout.
# ----------------------------------------------------------------------------


def _provenance(recording: Recording) -> dict[str, Any]:
    return {
        "simulated": bool(recording.simulated),
        "behavior_names": list(recording.behavior_names),
        "metadata": recording.metadata,
    }


def write_filetree(path: str, recording: Recording) -> str:
    """Writes ``recording`` in the neuralpredictors FileTree layout.

    Args:
        path: directory to create.
        recording: the scan.

    Returns:
        ``path``.
    """
    data_keys = {
        "images": np.transpose(recording.images, (0, 3, 1, 2)),
        "responses": recording.responses,
        "behavior": recording.behavior,
        "pupil_center": recording.pupil_center,
    }
    for key, values in data_keys.items():
        directory = os.path.join(path, "data", key)
        os.makedirs(directory, exist_ok=True)
        for trial, value in enumerate(values):
            np.save(os.path.join(directory, f"{trial}.npy"), value)
        stats_dir = os.path.join(path, "meta", "statistics", key, "all")
        os.makedirs(stats_dir, exist_ok=True)
        for stat in ("mean", "std", "min", "max"):
            np.save(os.path.join(stats_dir, f"{stat}.npy"), getattr(np, stat)(values, axis=0))
    meta = {
        ("neurons", "unit_ids"): recording.neuron_ids,
        ("trials", "tiers"): recording.tiers,
        ("trials", "frame_image_id"): recording.image_ids,
        ("trials", "trial_idx"): np.arange(recording.n_trials),
    }
    for (group, name), values in meta.items():
        os.makedirs(os.path.join(path, "meta", group), exist_ok=True)
        np.save(os.path.join(path, "meta", group, f"{name}.npy"), values)
    with open(os.path.join(path, _CONFIG), "w") as f:
        json.dump(
            {"data_keys": list(data_keys), **_provenance(recording)}, f, indent=2, default=json_default
        )
    return path


def read_filetree(path: str) -> Recording:
    """Reads a neuralpredictors FileTree directory into a validated ``Recording``.

    Trials are the files ``data/responses/<i>.npy``; the other data keys must
    hold the same trial numbers. ``behavior`` and ``pupil_center`` may be
    absent (zeros are used and recorded in the metadata).

    Raises:
        FileNotFoundError: no ``data/responses`` or ``meta/trials`` folder.
        RecordingError: mismatched trials or invalid content.
    """
    responses_dir = os.path.join(path, "data", "responses")
    if not os.path.isdir(responses_dir):
        raise FileNotFoundError(
            f"{path!r} is not a FileTree recording: {responses_dir} is missing. Expected "
            "data/{images,responses,behavior,pupil_center}/<trial>.npy and meta/..."
        )
    trials = sorted(int(name[:-4]) for name in os.listdir(responses_dir) if name.endswith(".npy"))
    config = {}
    if os.path.isfile(os.path.join(path, _CONFIG)):
        with open(os.path.join(path, _CONFIG)) as f:
            config = json.load(f)
    missing_keys = []

    def load_key(key):
        directory = os.path.join(path, "data", key)
        if not os.path.isdir(directory):
            missing_keys.append(key)
            return None
        present = sorted(int(name[:-4]) for name in os.listdir(directory) if name.endswith(".npy"))
        if present != trials:
            raise RecordingError(
                f"data/{key} holds {len(present)} trials but data/responses holds "
                f"{len(trials)}; every data key needs the same trial files. Received: "
                f"trials only in one of them: {sorted(set(present) ^ set(trials))[:10]}"
            )
        return np.stack([np.load(os.path.join(directory, f"{t}.npy")) for t in trials])

    responses = load_key("responses")
    images = load_key("images")
    if images is None:
        raise RecordingError(f"{path!r} has no data/images folder: a recording needs its stimuli.")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    behavior = load_key("behavior")
    pupil_center = load_key("pupil_center")
    n_trials = responses.shape[0]
    behavior_names = tuple(config.get("behavior_names", DEFAULT_BEHAVIOR_NAMES))
    if behavior is None:
        behavior = np.zeros((n_trials, len(behavior_names)), np.float32)
    elif "behavior_names" not in config:
        behavior_names = tuple(f"behavior_{i}" for i in range(np.shape(behavior)[-1]))
    if pupil_center is None:
        pupil_center = np.zeros((n_trials, 2), np.float32)

    def load_meta(group, name, required=True):
        file = os.path.join(path, "meta", group, f"{name}.npy")
        if not os.path.isfile(file):
            if required:
                raise FileNotFoundError(
                    f"{file} is missing; the FileTree layout keeps it under meta/{group}/."
                )
            return None
        return np.load(file, allow_pickle=False)

    trial_positions = np.asarray(trials)
    tiers = load_meta("trials", "tiers")
    image_ids = load_meta("trials", "frame_image_id")
    for name, values in (("tiers", tiers), ("frame_image_id", image_ids)):
        if values.shape[0] <= trial_positions.max():
            raise RecordingError(
                f"meta/trials/{name}.npy has {values.shape[0]} entries but trial files go "
                f"up to {trial_positions.max()}. Received: {name}.shape={values.shape}"
            )
    neuron_ids = load_meta("neurons", "unit_ids", required=False)
    if neuron_ids is None:
        neuron_ids = np.arange(responses.shape[1])
    metadata = dict(config.get("metadata", {}))
    metadata.update({"source": os.path.abspath(path), "format": "filetree"})
    images = _pixels_to_unit_range(images, metadata)
    if missing_keys:
        metadata["missing_data_keys_filled_with_zeros"] = missing_keys
    return Recording(
        images=images,
        responses=responses,
        behavior=behavior,
        pupil_center=pupil_center,
        tiers=tiers[trial_positions],
        image_ids=image_ids[trial_positions].astype(np.int64),
        neuron_ids=neuron_ids,
        behavior_names=behavior_names,
        simulated=bool(config.get("simulated", False)),
        metadata=metadata,
    )


# ----------------------------------------------------------------------------
# HDF5 StaticImageSet layout.
# ----------------------------------------------------------------------------


def write_hdf5(path: str, recording: Recording) -> str:
    """Writes ``recording`` as a neuralpredictors StaticImageSet HDF5 file."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.transpose(recording.images, (0, 3, 1, 2)), compression="gzip")
        f.create_dataset("responses", data=recording.responses)
        f.create_dataset("behavior", data=recording.behavior)
        f.create_dataset("pupil_center", data=recording.pupil_center)
        f.create_dataset("tiers", data=np.asarray(recording.tiers, dtype="S"))
        f.create_dataset("item_info/frame_image_id", data=recording.image_ids)
        f.create_dataset("neurons/unit_ids", data=recording.neuron_ids)
        f.attrs["provenance"] = json.dumps(_provenance(recording), default=json_default)
        f.attrs["simulated"] = bool(recording.simulated)
    return path


def read_hdf5(path: str) -> Recording:
    """Reads a StaticImageSet HDF5 file into a validated ``Recording``.

    Raises:
        FileNotFoundError: no such file.
        RecordingError: a required dataset is missing or the content is invalid.
    """
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No HDF5 recording at {path!r}.")
    with h5py.File(path, "r") as f:
        required = ("images", "responses", "tiers")
        missing = [key for key in required if key not in f]
        if "item_info/frame_image_id" not in f and "frame_image_id" not in f:
            missing.append("item_info/frame_image_id")
        if missing:
            raise RecordingError(
                f"{path!r} is not a StaticImageSet: datasets {missing} are missing. "
                f"Received: datasets {sorted(f.keys())}"
            )
        provenance = json.loads(f.attrs.get("provenance", "{}"))
        images = f["images"][()]
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        responses = f["responses"][()]
        n_trials = responses.shape[0]
        behavior_names = tuple(provenance.get("behavior_names", DEFAULT_BEHAVIOR_NAMES))
        if "behavior" in f:
            behavior = f["behavior"][()]
            if "behavior_names" not in provenance:
                behavior_names = tuple(f"behavior_{i}" for i in range(np.shape(behavior)[-1]))
        else:
            behavior = np.zeros((n_trials, len(behavior_names)), np.float32)
        pupil_center = f["pupil_center"][()] if "pupil_center" in f else np.zeros((n_trials, 2))
        image_ids = f["item_info/frame_image_id"][()] if "item_info/frame_image_id" in f else f["frame_image_id"][()]
        neuron_ids = f["neurons/unit_ids"][()] if "neurons/unit_ids" in f else np.arange(responses.shape[1])
        tiers = f["tiers"][()]
    metadata = dict(provenance.get("metadata", {}))
    metadata.update({"source": os.path.abspath(path), "format": "hdf5"})
    images = _pixels_to_unit_range(images, metadata)
    return Recording(
        images=images,
        responses=responses,
        behavior=behavior,
        pupil_center=pupil_center,
        tiers=tiers,
        image_ids=np.asarray(image_ids).astype(np.int64),
        neuron_ids=neuron_ids,
        behavior_names=behavior_names,
        simulated=bool(provenance.get("simulated", False)),
        metadata=metadata,
    )


def read_recording(path: str) -> Recording:
    """Reads a FileTree directory or a StaticImageSet ``.h5``/``.hdf5`` file."""
    if os.path.isdir(path):
        return read_filetree(path)
    if path.endswith((".h5", ".hdf5")):
        return read_hdf5(path)
    raise ValueError(
        "A recording path must be a FileTree directory or an HDF5 file ending in .h5 "
        f"or .hdf5. Received: path={path!r}"
    )


def write_recording(path: str, recording: Recording) -> str:
    """Writes HDF5 when ``path`` ends in .h5/.hdf5, else a FileTree directory."""
    if path.endswith((".h5", ".hdf5")):
        return write_hdf5(path, recording)
    return write_filetree(path, recording)


