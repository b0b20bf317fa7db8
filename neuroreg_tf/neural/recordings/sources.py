"""A FileTree read in place: from a folder, or from inside a zip without unpacking it.

Released datasets ship as ``<name>.zip`` holding one folder ``<name>/`` with
``data/`` and ``meta/`` (what neuralpredictors' ``FileTreeDataset.zip`` writes).
A ``ZipSource`` reads the ``.npy`` members straight from the archive, so a zip is
never unpacked, neither once nor on every run, and its folder is found wherever
it sits inside the archive (at the top, or one level down).
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import zipfile
import zlib

import numpy as np

from neuroreg_tf.neural.recordings.recording import RecordingError

REQUIRED = "data/responses"


class Source:
    """The files of one FileTree, addressed by paths relative to its root (``data/images/0.npy``)."""

    label: str

    def where(self, relative: str) -> str:
        """The path to show the user for ``relative``."""
        return f"{self.label}/{relative}"

    def isdir(self, relative: str) -> bool:
        raise NotImplementedError

    def isfile(self, relative: str) -> bool:
        raise NotImplementedError

    def listdir(self, relative: str) -> list[str]:
        raise NotImplementedError

    def _open(self, relative: str):
        raise NotImplementedError

    def load(self, relative: str) -> np.ndarray:
        """``np.load`` of a member, with errors that name it."""
        try:
            with self._open(relative) as f:
                return np.load(f, allow_pickle=False)
        except ValueError as error:
            raise RecordingError(
                f"{self.where(relative)} cannot be read as a plain NumPy array ({error}). Re-save it with "
                "np.save on a numeric or string array (not an object array). Received: an unreadable .npy"
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise RecordingError(
                f"{self.where(relative)} is damaged or truncated ({error}); restore it from the original "
                "release. Received: an unreadable .npy"
            ) from None

    def read_json(self, relative: str) -> dict:
        try:
            with self._open(relative) as f:
                return json.loads(f.read().decode())
        except (ValueError, UnicodeDecodeError) as error:
            raise RecordingError(f"{self.where(relative)} is not valid JSON ({error}). Received: a damaged config") from None

    def trials(self, relative: str) -> list[int]:
        """Sorted trial numbers of the ``<trial>.npy`` files in a data folder."""
        numbers = []
        for name in self.listdir(relative):
            stem, extension = os.path.splitext(name)
            if extension == ".npy" and stem.isdigit():
                numbers.append(int(stem))
        return sorted(numbers)

    def close(self) -> None:
        pass


class DirectorySource(Source):
    def __init__(self, path: str):
        self.root = os.path.abspath(path)
        self.label = self.root

    def isdir(self, relative):
        return os.path.isdir(os.path.join(self.root, relative))

    def isfile(self, relative):
        return os.path.isfile(os.path.join(self.root, relative))

    def listdir(self, relative):
        directory = os.path.join(self.root, relative)
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    def _open(self, relative):
        return open(os.path.join(self.root, relative), "rb")


class ZipSource(Source):
    """The FileTree inside a zip archive, read in place."""

    def __init__(self, path: str):
        try:
            self.archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise RecordingError(
                f"{path} is not a readable zip archive ({error}); download it again. Received: a damaged zip"
            ) from None
        names = [n for n in self.archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        folders: dict[str, list[str]] = {}
        for name in names:
            folder, base = posixpath.split(name)
            folders.setdefault(folder, []).append(base)
        roots = sorted(
            {folder[: -len(REQUIRED)].rstrip("/") for folder in folders if folder == REQUIRED or folder.endswith("/" + REQUIRED)}
        )
        if len(roots) != 1:
            top = sorted({name.split("/", 1)[0] for name in names})[:10]
            self.archive.close()
            if not roots:
                raise RecordingError(
                    f"{path} does not hold a FileTree recording: no 'data/responses/' folder inside it. "
                    "A released recording zip holds '<name>/data/{images,responses,behavior,pupil_center}/' "
                    "and '<name>/meta/{neurons,trials,statistics}/'; check that this is the right file "
                    f"(or re-zip the recording's folder). Received: top-level entries {top}"
                )
            raise RecordingError(
                f"{path} holds {len(roots)} FileTree recordings ({roots[:5]}); pass one recording per "
                "path: unzip it and list each folder. Received: several recordings in one zip"
            )
        self.prefix = roots[0] + "/" if roots[0] else ""
        self.folders = folders
        self.files = set(names)
        self.path = os.path.abspath(path)
        self.label = f"{self.path}:{self.prefix}".rstrip("/")

    def where(self, relative: str) -> str:
        return f"{self.path}:{self.prefix}{relative}"

    def isdir(self, relative):
        relative = relative.rstrip("/")
        key = self.prefix + relative
        return key in self.folders or any(folder.startswith(key + "/") for folder in self.folders)

    def isfile(self, relative):
        return self.prefix + relative in self.files

    def listdir(self, relative):
        return sorted(self.folders.get((self.prefix + relative).rstrip("/"), []))

    def _open(self, relative):
        # np.load needs seek(); small members are read into memory first.
        with self.archive.open(self.prefix + relative) as member:
            return io.BytesIO(member.read())

    def close(self):
        self.archive.close()


def open_source(path: str) -> Source:
    """A ``DirectorySource`` for a folder, a ``ZipSource`` for a ``.zip`` file."""
    if os.path.isdir(path):
        return DirectorySource(path)
    return ZipSource(path)
