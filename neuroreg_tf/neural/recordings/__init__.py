"""Recordings of one scan, and the field's on-disk layouts for them, both ways.

Modules, one per concept, as in neuralpredictors' ``data/datasets``:

* ``recording``: the validated ``Recording`` dataclass (one scan) and ``RecordingError``;
* ``images``: colour reduction and resizing to the stimulus size (``ImageOptions``);
* ``treatments``: what reading does with dead neurons, withheld or unknown tiers and
  NaN trials (``ReadOptions``);
* ``sources``: a FileTree read in place from a folder or a zip;
* ``layout``: what neuralpredictors' readers need (statistics, neuron and trial meta);
* ``filetree``: the FileTree layout (folder or ``.zip``), read and written;
* ``hdf5``: the StaticImageSet HDF5 layout, read and written.

``read_recording(path)`` and ``write_recording(path, recording)`` pick the layout from the
path: a folder or ``.zip`` is a FileTree, ``.h5``/``.hdf5`` a StaticImageSet. Every error
names the file it came from. Simulated recordings carry ``simulated=True`` and a label in
every file.
"""

from __future__ import annotations

import os

from neuroreg_tf.errors import MissingDataError
from neuroreg_tf.neural.recordings.filetree import read_filetree, write_filetree
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

HDF5_SUFFIXES = (".h5", ".hdf5")

__all__ = [
    "DEFAULT_BEHAVIOR_NAMES",
    "IMAGE_ID_NAMES",
    "TIERS",
    "ImageOptions",
    "ReadOptions",
    "Recording",
    "RecordingError",
    "RecordingWarning",
    "check_ids_agree_across_scans",
    "image_class_name",
    "read_filetree",
    "read_hdf5",
    "read_recording",
    "write_filetree",
    "write_hdf5",
    "write_recording",
]


def read_recording(path: str, options: ReadOptions | None = None) -> Recording:
    """Reads a FileTree folder, a zipped FileTree (``.zip``) or a StaticImageSet (``.h5``/``.hdf5``).

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
        raise MissingDataError(
            f"No recording at {path}: expected a FileTree folder, a zipped FileTree (.zip) or a "
            f"StaticImageSet file (.h5/.hdf5). Received: path={path!r}"
        )
    if os.path.isdir(path) or path.endswith(".zip"):
        return read_filetree(path, options)
    if path.endswith(HDF5_SUFFIXES):
        return read_hdf5(path, options)
    raise RecordingError(
        "A recording path must be a FileTree folder, a .zip of one, or an HDF5 file ending in .h5 "
        f"or .hdf5. Received: path={path!r}"
    )


def write_recording(path: str, recording: Recording, *, images=None) -> str:
    """Writes HDF5 when ``path`` ends in .h5/.hdf5, a zipped FileTree for .zip, else a FileTree folder."""
    if str(path).endswith(HDF5_SUFFIXES):
        return write_hdf5(path, recording, images=images)
    return write_filetree(path, recording, images=images)
