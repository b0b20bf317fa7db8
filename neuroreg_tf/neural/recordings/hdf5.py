"""The neuralpredictors StaticImageSet HDF5 layout, both ways.

::

    images          (n, c, h, w)
    responses       (n, n_neurons)
    behavior        (n, n_behavior)
    pupil_center    (n, 2)
    tiers           (n,) fixed-width bytes
    item_info/      <image id> (``image_id``, ``frame_image_id`` or ``colorframeprojector_image_id``),
                    its class array, trial_idx, ...  (n,) each
    neurons/        unit_ids, area, layer, animal_ids, sessions, scan_idx, ...  (n_neurons,) each
    statistics/     <data key>/{all,stimulus_frame}/{mean,std,min,max,median}

``StaticImageSet.statistics``, ``NeuroNormalizer`` and neuralpredictors'
``convert_static_h5_dataset_to_folder`` read the ``statistics`` group; the
converter also needs ``item_info`` and ``neurons``. Our provenance (behaviour
names, SIMULATED label) is a JSON file attribute.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from neuroreg_tf.fileio import json_default
from neuroreg_tf.neural.recordings import images as image_ops
from neuroreg_tf.neural.recordings import layout
from neuroreg_tf.neural.recordings.recording import (
    DEFAULT_BEHAVIOR_NAMES, IMAGE_ID_NAMES, Recording, RecordingError, check_image_id_arrays,
)
from neuroreg_tf.neural.recordings.treatments import ReadOptions, finish

_CHUNK = 512


def _h5_value(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind == "U":
        return np.char.encode(value, "utf-8")
    return value


def write_hdf5(path: str, recording: Recording, *, images=None) -> str:
    """Writes ``recording`` as a StaticImageSet HDF5 file (atomically: a temporary file, then a rename).

    Args:
        path: the ``.h5``/``.hdf5`` file; an existing one is replaced.
        recording: the scan.
        images: optional (n_trials, channels, height, width) images to store instead of the
            recording's grayscale ones.

    Returns:
        ``path``.
    """
    import h5py

    arrays = layout.data_arrays(recording, images)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=directory)
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as f:
            for key, values in arrays.items():
                f.create_dataset(key, data=values, compression="gzip" if key == "images" else None)
            trials = layout.trial_arrays(recording)
            f.create_dataset("tiers", data=_h5_value(trials.pop("tiers")))
            for name, value in trials.items():
                f.create_dataset(f"item_info/{name}", data=_h5_value(value))
            for name, value in layout.neuron_arrays(recording).items():
                f.create_dataset(f"neurons/{name}", data=_h5_value(value))
            for key, sources in layout.statistics_tree(arrays).items():
                for source, stats in sources.items():
                    for name, value in stats.items():
                        f.create_dataset(f"statistics/{key}/{source}/{name}", data=value)
            f.attrs["provenance"] = json.dumps(
                {
                    "simulated": bool(recording.simulated),
                    "behavior_names": list(recording.behavior_names),
                    "image_id_name": recording.image_id_name,
                    "metadata": recording.metadata,
                },
                default=json_default,
            )
            f.attrs["simulated"] = bool(recording.simulated)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _decoded(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind in "SO":
        return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]).reshape(value.shape)
    return value


def read_hdf5(path: str, options: ReadOptions | None = None) -> Recording:
    """Reads a StaticImageSet HDF5 file into a validated ``Recording``.

    Images are read, reduced to grayscale and resized in chunks of 512 trials.

    Raises:
        RecordingError: naming the file, the missing dataset or bad content, and the fix.
    """
    import h5py

    options = options or ReadOptions()
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise RecordingError(f"{path} is not a readable HDF5 file ({error}). Received: path={path!r}") from None
    with handle as f:
        id_name = next((n for n in IMAGE_ID_NAMES if f"item_info/{n}" in f or n in f), None)
        missing = [key for key in ("images", "responses", "tiers") if key not in f]
        if id_name is None:
            missing.append("item_info/image_id (or frame_image_id, colorframeprojector_image_id)")
        if missing:
            raise RecordingError(
                f"{path} is not a StaticImageSet: datasets {missing} are missing. Received: datasets {sorted(f.keys())}"
            )
        provenance = json.loads(f.attrs.get("provenance", "{}"))
        metadata = dict(provenance.get("metadata", {}))

        def locate(key, rows):
            rows = np.asarray(rows)
            return f"{path}:/{key}" + (f" (rows {rows[:5].tolist()}{' ...' if rows.size > 5 else ''})" if rows.size else "")

        def numeric(key):
            """A dataset that must hold numbers, refused by name when it holds strings or objects."""
            array = np.asarray(f[key][()])
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
                raise RecordingError(
                    f"{path}:/{key} must hold numbers; it holds {array.dtype} values. Re-save it as a "
                    f"float array. Received: dtype {array.dtype}"
                )
            return array

        responses = numeric("responses")
        n_trials = responses.shape[0]
        stored = f["images"]
        if stored.shape[0] != n_trials:
            raise RecordingError(
                f"{path}:/images holds {stored.shape[0]} images but /responses {n_trials} trials; every trial "
                f"needs its image. Restore the missing images. Received: images.shape={stored.shape}"
            )
        try:
            shape = image_ops.channels_first(stored[0]).shape if n_trials else None
            image_ops.check_resizable(shape[1:], options.images.size)
            prepared = []
            for start in range(0, n_trials, _CHUNK):
                block = stored[start : start + _CHUNK]
                block = np.stack([image_ops.channels_first(image) for image in block])
                prepared.append(image_ops.prepare(block, options.images))
        except image_ops.ImageFormatError as error:
            raise RecordingError(f"{path}:/images: {error}") from None
        try:
            images = image_ops.to_unit_range(np.concatenate(prepared), stored.dtype, metadata,
                                             options.images.scale, f"{path}:/images")
        except image_ops.ImageFormatError as error:
            raise RecordingError(str(error)) from None
        metadata["stored_image_shape"] = list(shape)
        behavior_names = tuple(provenance.get("behavior_names", ()))
        if "behavior" in f:
            behavior = numeric("behavior").reshape(n_trials, -1)
            if len(behavior_names) != behavior.shape[1]:
                behavior_names = tuple(f"behavior_{i}" for i in range(behavior.shape[1]))
        else:
            behavior_names = behavior_names or DEFAULT_BEHAVIOR_NAMES
            behavior = np.zeros((n_trials, len(behavior_names)), np.float32)
        pupil_center = numeric("pupil_center").reshape(n_trials, -1) if "pupil_center" in f else np.zeros((n_trials, 2))

        def group(name, length):
            if name not in f:
                return {}
            return {
                key: _decoded(item[()])
                for key, item in f[name].items()
                if isinstance(item, h5py.Dataset) and item.ndim and item.shape[0] == length
            }

        trial_meta = group("item_info", n_trials)
        image_ids = trial_meta.pop(id_name, None)
        if image_ids is None:
            image_ids = np.asarray(f[f"item_info/{id_name}"][()] if f"item_info/{id_name}" in f else f[id_name][()])
        if image_ids.shape[0] != n_trials:
            raise RecordingError(
                f"{path}:/item_info/{id_name} has {image_ids.shape[0]} entries for {n_trials} trials. "
                f"Received: {id_name}.shape={image_ids.shape}"
            )
        check_image_id_arrays(id_name, image_ids, trial_meta, f"{path}:/item_info")
        neuron_meta = group("neurons", responses.shape[1])
        neuron_ids = neuron_meta.pop("unit_ids", np.arange(responses.shape[1]))
        tiers = _decoded(f["tiers"][()])
        simulated = bool(provenance.get("simulated", False))
    if tiers.shape[0] != n_trials:
        raise RecordingError(f"{path}:/tiers has {tiers.shape[0]} entries for {n_trials} trials. Received: tiers.shape={tiers.shape}")
    if not np.issubdtype(image_ids.dtype, np.integer):
        if np.issubdtype(image_ids.dtype, np.floating) and np.all(np.isfinite(image_ids)) and np.all(image_ids == np.round(image_ids)):
            image_ids = image_ids.astype(np.int64)
        else:
            raise RecordingError(f"{path}:/item_info/{id_name} must hold integer image ids. Received: dtype {image_ids.dtype}")
    metadata.update({"source": os.path.abspath(path), "format": "hdf5", "image_id_name": id_name})
    fields = dict(
        images=images,
        responses=responses,
        behavior=behavior,
        pupil_center=pupil_center,
        tiers=tiers,
        image_ids=image_ids.astype(np.int64),
        neuron_ids=neuron_ids,
        behavior_names=behavior_names,
        simulated=simulated,
        metadata=metadata,
        neuron_meta=neuron_meta,
        trial_meta=trial_meta,
        image_id_name=id_name,
    )
    return finish(fields, options, path, locate)
