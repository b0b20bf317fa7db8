"""What neuralpredictors' readers need in a recording, shared by the FileTree and HDF5 writers.

Read from neuralpredictors (``FileTreeDatasetBase``, ``StaticImageSet``,
``NeuroNormalizer``, ``convert_static_h5_dataset_to_folder``) and SENSORIUM's
``static_loader``:

* data keys ``images`` (c, h, w), ``responses`` (n_neurons,), ``behavior``
  (n_behavior,), ``pupil_center`` (2,), one entry per trial, float32;
* statistics for every data key and both sources ``all`` and ``stimulus_frame``:
  ``mean``, ``std``, ``min``, ``max``, ``median`` (``NeuroNormalizer`` reads
  ``mean``/``std`` of images, responses, behaviour and pupil centre). Images get
  scalars (over all pixels, as the releases have), the others one value per
  column. A static recording has one stimulus frame per trial, so the two sources
  hold the same numbers;
* per-neuron meta ``unit_ids``, ``area``, ``layer`` (strings), ``animal_ids``,
  ``sessions``, ``scan_idx`` (integers): SENSORIUM reads ``area`` always and the
  last three to name a dataset;
* per-trial meta ``tiers``, the image id (``frame_image_id``,
  ``colorframeprojector_image_id`` or ``image_id``), its class array
  (``frame_image_class``, ...; SENSORIUM reads it beside the id) and ``trial_idx``.

Strings are stored as fixed-width NumPy strings (FileTree ``.npy``) or fixed-width
bytes (HDF5), never as object arrays, which ``np.load`` refuses by default.
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf.neural.recordings.recording import Recording, image_class_name

DATA_KEYS = ("images", "responses", "behavior", "pupil_center")
STATISTICS = ("mean", "std", "min", "max", "median")
STATISTICS_SOURCES = ("all", "stimulus_frame")
NEURON_DEFAULTS = {"area": "unknown", "layer": "unknown", "animal_ids": 0, "sessions": 0, "scan_idx": 0}
DEFAULT_IMAGE_CLASS = "unknown"


def stored_images(recording: Recording, images=None) -> np.ndarray:
    """The images as written: ``images`` (n, c, h, w) if given, else the recording's as (n, 1, h, w)."""
    if images is None:
        return np.transpose(recording.images, (0, 3, 1, 2))
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[0] != recording.n_trials:
        raise ValueError(
            f"`images` must be (n_trials={recording.n_trials}, channels, height, width). "
            f"Received: images.shape={images.shape}"
        )
    return images


def data_arrays(recording: Recording, images=None) -> dict[str, np.ndarray]:
    """Per-trial arrays of every data key, first axis trials."""
    return {
        "images": stored_images(recording, images),
        "responses": recording.responses.astype(np.float32),
        "behavior": recording.behavior.astype(np.float32),
        "pupil_center": recording.pupil_center.astype(np.float32),
    }


def statistics(values: np.ndarray, *, scalar: bool) -> dict[str, np.ndarray]:
    """mean, std, min, max, median over trials (per column), or over everything when ``scalar``."""
    values = np.asarray(values, dtype=np.float64)
    axis = None if scalar else 0
    return {
        "mean": np.mean(values, axis=axis),
        "std": np.std(values, axis=axis),
        "min": np.min(values, axis=axis),
        "max": np.max(values, axis=axis),
        "median": np.median(values, axis=axis),
    }


def statistics_tree(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{data_key: {source: {statistic: float32 array}}}`` for every data key and source."""
    tree = {}
    for key, values in arrays.items():
        stats = {name: np.asarray(value, np.float32) for name, value in statistics(values, scalar=key == "images").items()}
        tree[key] = {source: dict(stats) for source in STATISTICS_SOURCES}
    return tree


def neuron_arrays(recording: Recording) -> dict[str, np.ndarray]:
    """``unit_ids``, the SENSORIUM per-neuron meta (defaults where the recording has none) and the rest."""
    n = recording.n_neurons
    arrays = {"unit_ids": recording.neuron_ids.astype(np.int64)}
    for name, default in NEURON_DEFAULTS.items():
        arrays[name] = np.full(n, default) if name not in recording.neuron_meta else recording.neuron_meta[name]
    for name, value in recording.neuron_meta.items():
        arrays.setdefault(name, value)
    return {name: _plain(value) for name, value in arrays.items()}


def trial_arrays(recording: Recording) -> dict[str, np.ndarray]:
    """``tiers``, the image id under its name, its class array, ``trial_idx`` and the rest."""
    class_name = image_class_name(recording.image_id_name)
    arrays = {
        "tiers": recording.tiers.astype(str),
        recording.image_id_name: recording.image_ids.astype(np.int64),
        class_name: recording.trial_meta.get(class_name, np.full(recording.n_trials, DEFAULT_IMAGE_CLASS)),
        "trial_idx": recording.trial_meta.get("trial_idx", np.arange(recording.n_trials)),
    }
    for name, value in recording.trial_meta.items():
        arrays.setdefault(name, value)
    return {name: _plain(value) for name, value in arrays.items()}


def _plain(value) -> np.ndarray:
    """Object/bytes arrays become fixed-width unicode strings; numbers stay as they are."""
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]).reshape(value.shape)
    return value
