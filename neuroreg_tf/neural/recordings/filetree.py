"""The neuralpredictors FileTree layout, as a folder or as a zip, both ways.

::

    <name>/config.json                        {"links": {}, ...}: neuralpredictors reads "links";
                                              the rest is our provenance (optional on read)
    <name>/data/images/<trial>.npy            (c, height, width); c = 1 grayscale, 2+ colour
    <name>/data/responses/<trial>.npy         (n_neurons,)
    <name>/data/behavior/<trial>.npy          (n_behavior,)
    <name>/data/pupil_center/<trial>.npy      (2,)
    <name>/meta/neurons/{unit_ids,area,layer,animal_ids,sessions,scan_idx,...}.npy
    <name>/meta/trials/{tiers,<image id>,<image class>,trial_idx,...}.npy
    <name>/meta/statistics/<data key>/{all,stimulus_frame}/{mean,std,min,max,median}.npy

``<name>.zip`` holds the folder ``<name>/`` (as ``FileTreeDataset.zip`` writes it,
and as the releases ship); it is read in place (``sources.ZipSource``).
Trials are the files of ``data/responses``; per-trial meta arrays are indexed by
trial number. Writes go to a temporary name first and are renamed into place.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from neuroreg_tf.fileio import json_default
from neuroreg_tf.neural.recordings import images as image_ops
from neuroreg_tf.neural.recordings import layout
from neuroreg_tf.neural.recordings.recording import (
    DEFAULT_BEHAVIOR_NAMES,
    IMAGE_ID_NAMES,
    Recording,
    RecordingError,
    check_image_id_arrays,
)
from neuroreg_tf.neural.recordings.sources import REQUIRED, Source, open_source
from neuroreg_tf.neural.recordings.treatments import ReadOptions, finish

CONFIG = "config.json"


def _provenance(recording: Recording) -> dict:
    return {
        "simulated": bool(recording.simulated),
        "behavior_names": list(recording.behavior_names),
        "image_id_name": recording.image_id_name,
        "metadata": recording.metadata,
    }


def filetree_files(recording: Recording, images=None) -> dict[str, np.ndarray]:
    """Every ``.npy`` of the FileTree of ``recording``, by relative path."""
    files = {}
    arrays = layout.data_arrays(recording, images)
    for key, values in arrays.items():
        for trial, value in enumerate(values):
            files[f"data/{key}/{trial}.npy"] = value
    for key, sources in layout.statistics_tree(arrays).items():
        for source, stats in sources.items():
            for name, value in stats.items():
                files[f"meta/statistics/{key}/{source}/{name}.npy"] = value
    for name, value in layout.neuron_arrays(recording).items():
        files[f"meta/neurons/{name}.npy"] = value
    for name, value in layout.trial_arrays(recording).items():
        files[f"meta/trials/{name}.npy"] = value
    return files


def _config(recording: Recording) -> str:
    return json.dumps({"links": {}, "data_keys": list(layout.DATA_KEYS), **_provenance(recording)}, indent=2, default=json_default)


def write_filetree(path: str, recording: Recording, *, images=None, extra_files: dict | None = None) -> str:
    """Writes ``recording`` as a FileTree folder, or as a zipped FileTree when ``path`` ends in ``.zip``.

    Args:
        path: the folder to create, or ``<name>.zip`` (holding the folder ``<name>/``).
            An existing recording at ``path`` is replaced.
        recording: the scan.
        images: optional (n_trials, channels, height, width) images to store instead of the
            recording's grayscale ones (e.g. a release's full-size colour images, any dtype).
        extra_files: further ``{relative path: array}`` to store (e.g. ground truth).

    Returns:
        ``path``.
    """
    files = filetree_files(recording, images)
    files.update(extra_files or {})
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if path.endswith(".zip"):
        name = os.path.basename(path)[: -len(".zip")]
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".zip", dir=parent)
        os.close(handle)
        try:
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                archive.writestr(f"{name}/{CONFIG}", _config(recording))
                for relative, value in files.items():
                    buffer = io.BytesIO()
                    np.save(buffer, value, allow_pickle=False)
                    archive.writestr(f"{name}/{relative}", buffer.getvalue())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return path
    temporary = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        for relative, value in files.items():
            target = os.path.join(temporary, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            np.save(target, value, allow_pickle=False)
        with open(os.path.join(temporary, CONFIG), "w") as f:
            f.write(_config(recording))
        if os.path.exists(path):
            trash = tempfile.mkdtemp(prefix=".old-", dir=parent)
            os.replace(path, os.path.join(trash, "old"))
            os.replace(temporary, path)
            shutil.rmtree(trash)
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary)
    return path


def _per_trial(value: np.ndarray) -> np.ndarray:
    """Per-trial vectors stored as (1, k) (as some releases do) become (k,)."""
    value = np.asarray(value)
    return value.reshape(-1) if value.ndim == 2 and 1 in value.shape else value


def read_filetree(path: str, options: ReadOptions | None = None) -> Recording:
    """Reads a FileTree folder or zipped FileTree into a validated ``Recording``.

    Trials are the files ``data/responses/<i>.npy``; ``data/images`` must hold the
    same trials; ``behavior`` and ``pupil_center`` may be absent (zeros, recorded
    in the metadata). The image id is read from the first of ``IMAGE_ID_NAMES``
    present in ``meta/trials``. Every other ``meta/trials`` and ``meta/neurons``
    array with one entry per trial / neuron is kept (``trial_meta`` / ``neuron_meta``).

    Args:
        path: the folder, or the ``.zip`` (read in place, never unpacked).
        options: treatments and image preparation (``ReadOptions``).

    Raises:
        RecordingError: naming the file, what is wrong and the fix.
    """
    options = options or ReadOptions()
    source = open_source(path)
    try:
        return _read(source, options)
    finally:
        source.close()


def _read(source: Source, options: ReadOptions) -> Recording:
    label = source.label
    if not source.isdir(REQUIRED):
        found = [name for name in ("data", "meta") if source.isdir(name)]
        raise RecordingError(
            f"{label} is not a FileTree recording: {source.where(REQUIRED)} is missing. A recording holds "
            "data/{images,responses,behavior,pupil_center}/<trial>.npy and meta/{neurons,trials}/; "
            "check the path (a movie dataset with data/videos is not a static-image recording). "
            f"Received: folders {found} at the top"
        )
    if source.isdir("data/videos"):
        raise RecordingError(
            f"{label} is a movie recording (data/videos), e.g. SENSORIUM 2023's dynamic data; the "
            "similarity target needs static images (data/images). Received: data/videos"
        )
    trials = source.trials("data/responses")
    if not trials:
        raise RecordingError(f"{source.where('data/responses')} holds no <trial>.npy files. Received: an empty folder")
    config = source.read_json(CONFIG) if source.isfile(CONFIG) else {}

    def locate(key, rows):
        if key == "tiers":
            return source.where("meta/trials/tiers.npy")
        folder = f"data/{key}"
        rows = np.asarray(rows)
        if rows.size == 0:
            return source.where(folder)
        named = ", ".join(f"{trials[r]}.npy" for r in rows[:3])
        return f"{source.where(folder)}/{{{named}{', ...' if rows.size > 3 else ''}}}"

    def check_trials(key):
        present = source.trials(f"data/{key}")
        if present != trials:
            missing = sorted(set(trials) - set(present))
            extra = sorted(set(present) - set(trials))
            what = (
                f"{len(missing)} trial file(s) are missing, e.g. {source.where(f'data/{key}/{missing[0]}.npy')} "
                f"(data/responses/{missing[0]}.npy exists)"
                if missing
                else f"{len(extra)} trial file(s) have no response, e.g. {source.where(f'data/{key}/{extra[0]}.npy')}"
            )
            raise RecordingError(
                f"{what}. Every trial needs a file in every data folder: restore the missing files from the "
                f"original release, or remove the trial from every data folder. Received: trials only in one "
                f"of data/{key} and data/responses: {sorted(set(present) ^ set(trials))[:10]}"
            )

    def load_vectors(key):
        if not source.isdir(f"data/{key}"):
            return None
        check_trials(key)
        values = [_per_trial(source.load(f"data/{key}/{t}.npy")) for t in trials]
        shapes = {v.shape for v in values}
        if len(shapes) != 1:
            raise RecordingError(
                f"{source.where(f'data/{key}')} holds arrays of different shapes {sorted(shapes)[:4]}; every "
                f"trial's {key} must have the same shape. Received: {len(shapes)} shapes"
            )
        return np.stack(values)

    responses = load_vectors("responses")
    if responses.ndim != 2:
        raise RecordingError(
            f"{source.where('data/responses')}: each trial's responses must be a vector (n_neurons,). "
            f"Received: per-trial shape {responses.shape[1:]}"
        )
    if not source.isdir("data/images"):
        raise RecordingError(
            f"{source.where('data/images')} is missing: a recording needs the image of every trial. "
            "Received: no data/images folder"
        )
    check_trials("images")
    metadata = dict(config.get("metadata", {}))
    prepared, stored_dtype, stored_shape = [], None, None
    for t in trials:
        try:
            image = image_ops.channels_first(source.load(f"data/images/{t}.npy"))
            if stored_shape is None:
                stored_dtype, stored_shape = image.dtype, image.shape
                image_ops.check_resizable(image.shape[1:], options.images.size)
            elif image.shape != stored_shape:
                raise image_ops.ImageFormatError(
                    f"trial {t}'s image is {image.shape}, the first trial's {stored_shape}; every image of a "
                    "recording must have the same shape"
                )
            prepared.append(image_ops.prepare(image[None], options.images)[0])
        except image_ops.ImageFormatError as error:
            raise RecordingError(f"{source.where(f'data/images/{t}.npy')}: {error}") from None
    try:
        images = image_ops.to_unit_range(np.stack(prepared), stored_dtype, metadata, options.images.scale,
                                         source.where("data/images"))
    except image_ops.ImageFormatError as error:
        raise RecordingError(str(error)) from None
    metadata["stored_image_shape"] = list(stored_shape)
    n_trials = responses.shape[0]
    missing_keys = []
    behavior = load_vectors("behavior")
    behavior_names = tuple(config.get("behavior_names", ()))
    if behavior is None:
        missing_keys.append("behavior")
        behavior_names = behavior_names or DEFAULT_BEHAVIOR_NAMES
        behavior = np.zeros((n_trials, len(behavior_names)), np.float32)
    else:
        behavior = behavior.reshape(n_trials, -1)
        if len(behavior_names) != behavior.shape[1]:
            behavior_names = tuple(f"behavior_{i}" for i in range(behavior.shape[1]))
    pupil_center = load_vectors("pupil_center")
    if pupil_center is None:
        missing_keys.append("pupil_center")
        pupil_center = np.zeros((n_trials, 2), np.float32)

    positions = np.asarray(trials)
    n_stored = int(positions.max()) + 1

    essential = ("tiers", "unit_ids", *IMAGE_ID_NAMES)

    def meta_arrays(group, length, index):
        arrays = {}
        for name in source.listdir(f"meta/{group}"):
            stem, extension = os.path.splitext(name)
            if extension != ".npy":
                continue
            try:
                value = source.load(f"meta/{group}/{name}")
            except RecordingError as error:
                if stem in essential:
                    raise
                # A further meta array we cannot read (e.g. an object array) is left out, not fatal.
                metadata.setdefault("unreadable_meta_skipped", []).append(f"meta/{group}/{name}: {str(error).split(' (')[0]}")
                continue
            if value.ndim and value.shape[0] == length:
                arrays[stem] = value[index]
            elif stem in essential:
                raise RecordingError(
                    f"{source.where(f'meta/{group}/{name}')} has {value.shape[0] if value.ndim else 0} entries but "
                    f"the trial files go up to {n_stored - 1}; it needs one entry per trial. Received: "
                    f"{stem}.shape={value.shape}"
                )
        return arrays

    trial_meta = meta_arrays("trials", n_stored, positions) if source.isdir("meta/trials") else {}
    if "tiers" not in trial_meta:
        raise RecordingError(
            f"{source.where('meta/trials/tiers.npy')} is missing; it labels every trial train, validation, "
            "test or final_test. Received: no tiers"
        )
    id_name = next((name for name in IMAGE_ID_NAMES if name in trial_meta), None)
    if id_name is None:
        raise RecordingError(
            f"{source.where('meta/trials')} has no image id: expected one of {[n + '.npy' for n in IMAGE_ID_NAMES]} "
            "(repeated presentations of an image share its id). Received: "
            f"{sorted(trial_meta)}"
        )
    image_ids = trial_meta.pop(id_name)
    check_image_id_arrays(id_name, image_ids, trial_meta, source.where("meta/trials"))
    if not np.issubdtype(image_ids.dtype, np.integer):
        if np.issubdtype(image_ids.dtype, np.floating) and np.all(np.isfinite(image_ids)) and np.all(image_ids == np.round(image_ids)):
            image_ids = image_ids.astype(np.int64)
        else:
            raise RecordingError(
                f"{source.where(f'meta/trials/{id_name}.npy')} must hold integer image ids. "
                f"Received: dtype {image_ids.dtype}"
            )
    tiers = trial_meta.pop("tiers")
    neuron_meta = meta_arrays("neurons", responses.shape[1], slice(None)) if source.isdir("meta/neurons") else {}
    neuron_ids = neuron_meta.pop("unit_ids", np.arange(responses.shape[1]))
    metadata.update({"source": source.label, "format": "filetree", "image_id_name": id_name})
    if missing_keys:
        metadata["missing_data_keys_filled_with_zeros"] = missing_keys
    fields = dict(
        images=images,
        responses=responses,
        behavior=behavior,
        pupil_center=pupil_center,
        tiers=tiers,
        image_ids=image_ids.astype(np.int64),
        neuron_ids=neuron_ids,
        behavior_names=behavior_names,
        simulated=bool(config.get("simulated", False)),
        metadata=metadata,
        neuron_meta=neuron_meta,
        trial_meta=trial_meta,
        image_id_name=id_name,
    )
    return finish(fields, options, label, locate)
