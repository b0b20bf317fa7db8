"""The recording formats, by name: which paths each one reads and writes, and how.

``read_recording``, ``write_recording`` and the build config's check of ``config.recordings``
look a path up here (``find_format``), so a new on-disk format is one ``register_format`` call
(its reader, its writer and the paths it claims) and nothing else names it::

    register_format(RecordingFormat(
        name="npz", description="a .npz of one scan's arrays",
        claims=lambda path: path.endswith(".npz"), read=read_npz, write=write_npz))

Formats are tried in registration order, then the FileTree (``FILETREE``), which claims folders
and ``.zip`` files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from neuroreg_tf.neural.recordings.filetree import read_filetree, write_filetree
from neuroreg_tf.neural.recordings.hdf5 import read_hdf5, write_hdf5

HDF5_SUFFIXES = (".h5", ".hdf5")


@dataclasses.dataclass(frozen=True)
class RecordingFormat:
    """One on-disk layout of a recording.

    Attributes:
        name: its name in messages.
        description: what a path of it is, e.g. "a StaticImageSet file (.h5/.hdf5)".
        claims: whether a path (existing or to be written) is of this format.
        read: ``read(path, options) -> Recording``.
        write: ``write(path, recording, *, images=None) -> path``.
    """

    name: str
    description: str
    claims: Callable[[str], bool]
    read: Callable
    write: Callable


_FORMATS: list[RecordingFormat] = []  # registered formats, tried in order before FILETREE


def register_format(recording_format: RecordingFormat) -> RecordingFormat:
    """Adds a format, tried before the FileTree (the catch-all for folders); returns it."""
    if recording_format.name in {f.name for f in formats()}:
        raise ValueError(f"A recording format named {recording_format.name!r} is registered already.")
    _FORMATS.append(recording_format)
    return recording_format


def unregister_format(name: str) -> None:
    """Removes the format ``name`` (tests register and remove their own)."""
    _FORMATS[:] = [f for f in _FORMATS if f.name != name]


def formats() -> tuple[RecordingFormat, ...]:
    """The formats in the order they are tried: the registered ones, then the FileTree."""
    return (*_FORMATS, FILETREE)


def find_format(path: str) -> RecordingFormat | None:
    """The first format that claims ``path``, or None."""
    path = str(path)
    return next((f for f in formats() if f.claims(path)), None)


def described() -> str:
    """"a StaticImageSet file (.h5/.hdf5), ..., or a FileTree folder or .zip": for messages."""
    descriptions = [f.description for f in formats()]
    return descriptions[0] if len(descriptions) == 1 else ", ".join(descriptions[:-1]) + " or " + descriptions[-1]


FILETREE = RecordingFormat(
    name="filetree", description="a FileTree folder or a .zip of one",
    claims=lambda path: path.endswith(".zip") or os.path.isdir(path) or not os.path.splitext(path)[1],
    read=read_filetree, write=write_filetree,
)
register_format(RecordingFormat(
    name="hdf5", description="a StaticImageSet file (.h5/.hdf5)",
    claims=lambda path: path.endswith(HDF5_SUFFIXES), read=read_hdf5, write=write_hdf5,
))
