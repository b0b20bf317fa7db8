"""Recordings of one scan, and the field's on-disk layouts for them, both ways.

Modules, one per concept, as in neuralpredictors' ``data/datasets``:

* ``recording``: the validated ``Recording`` dataclass (one scan) and ``RecordingError``;
* ``images``: colour reduction and resizing to the stimulus size (``ImageOptions``);
* ``treatments``: what reading does with dead neurons, withheld or unknown tiers and
  NaN trials (``ReadOptions``);
* ``sources``: a FileTree read in place from a folder or a zip;
* ``layout``: what neuralpredictors' readers need (statistics, neuron and trial meta);
* ``filetree``: the FileTree layout (folder or ``.zip``), read and written;
* ``hdf5``: the StaticImageSet HDF5 layout, read and written;
* ``formats``: the registry of layouts by the paths they claim (``register_format``).

``read_recording(path)`` and ``write_recording(path, recording)`` pick the layout from the
path (``formats.find_format``): a folder or ``.zip`` is a FileTree, ``.h5``/``.hdf5`` a
StaticImageSet, and a registered format whatever it claims. Every error
names the file it came from. Simulated recordings carry ``simulated=True`` and a label in
every file.
"""

from __future__ import annotations

import os

from neuroreg_tf.errors import MissingDataError
from neuroreg_tf.neural.recordings.filetree import read_filetree, write_filetree
from neuroreg_tf.neural.recordings.formats import HDF5_SUFFIXES, RecordingFormat, find_format, register_format
from neuroreg_tf.neural.recordings.formats import described as _formats_described
from neuroreg_tf.neural.recordings.hdf5 import read_hdf5, write_hdf5
from neuroreg_tf.neural.recordings.images import ImageOptions
from neuroreg_tf.neural.recordings.recording import (
    DEFAULT_BEHAVIOR_NAMES,
    IMAGE_ID_NAMES,
    TIERS,
    Recording,
    RecordingError,
    RecordingWarning,
    check_ids_agree_across_scans,
    image_class_name,
)
from neuroreg_tf.neural.recordings.treatments import ReadOptions

__all__ = [
    "DEFAULT_BEHAVIOR_NAMES",
    "HDF5_SUFFIXES",
    "IMAGE_ID_NAMES",
    "TIERS",
    "ImageOptions",
    "ReadOptions",
    "Recording",
    "RecordingFormat",
    "RecordingError",
    "RecordingWarning",
    "check_ids_agree_across_scans",
    "find_format",
    "image_class_name",
    "read_filetree",
    "read_hdf5",
    "read_recording",
    "register_format",
    "write_filetree",
    "write_hdf5",
    "write_recording",
]


def read_recording(path: str, options: ReadOptions | None = None) -> Recording:
    """Reads a recording in the format that claims ``path`` (``formats``): a FileTree folder, a
    zipped FileTree (``.zip``), a StaticImageSet (``.h5``/``.hdf5``) or a registered format.

    Args:
        path: the recording.
        options: image preparation and treatments (``ReadOptions``; defaults: mean over colour
            channels, resize to 36 x 64, drop dead neurons with a warning, refuse NaNs and
            unknown tiers).

    Raises:
        MissingDataError: nothing at ``path``.
        RecordingError: anything else wrong, naming the file and the fix.
    """
    path = str(path)
    if not os.path.exists(path):
        raise MissingDataError(f"No recording at {path}: expected {_formats_described()}. Received: path={path!r}")
    recording_format = find_format(path)
    if recording_format is None:
        raise RecordingError(f"A recording must be {_formats_described()}. Received: path={path!r}")
    return recording_format.read(path, options)


def write_recording(path: str, recording: Recording, *, images=None) -> str:
    """Writes the format that claims ``path``: HDF5 for .h5/.hdf5, a zipped FileTree for .zip, a
    FileTree folder for a path without a suffix (``formats``)."""
    recording_format = find_format(str(path))
    if recording_format is None:
        raise RecordingError(f"A recording is written as {_formats_described()}. Received: path={str(path)!r}")
    return recording_format.write(path, recording, images=images)
