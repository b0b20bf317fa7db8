"""Small file helpers: writes that never leave a partial file looking complete, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from neuroreg_tf.errors import InputError


def json_default(value):
    """Converts NumPy scalars and arrays for ``json.dump``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} as JSON.")


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` via a uniquely named temporary file, fsync and a rename: a process
    killed at any moment leaves either the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(handle, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json_atomic(path: str, payload) -> None:
    """Writes JSON to ``path`` via a uniquely named temporary file, fsync and a rename.

    A process killed at any moment leaves either the old file or the new one.
    """
    write_text_atomic(path, json.dumps(payload, indent=2, default=json_default))


def sha256_file(path: str, chunk_bytes: int = 1 << 22) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path: str) -> str:
    """One SHA-256 over a file, or over every file of a directory (relative names and contents)."""
    if os.path.isfile(path):
        return sha256_file(path)
    digest = hashlib.sha256()
    for root, directories, files in os.walk(path):
        directories.sort()
        for name in sorted(files):
            file_path = os.path.join(root, name)
            digest.update(os.path.relpath(file_path, path).encode())
            digest.update(sha256_file(file_path).encode())
    return digest.hexdigest()


def canonical_json(payload) -> str:
    """``payload`` as JSON with sorted keys and no whitespace: equal payloads, equal strings."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=json_default)


def fingerprint(payload) -> str:
    """SHA-256 of ``canonical_json(payload)``."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def read_json(path: str, what: str):
    """Reads a JSON file; a damaged one raises ``InputError`` naming the file and the fix."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path} is damaged ({what}; {error.msg} at line {error.lineno}). It was written "
            "atomically, so it was edited or truncated by something else: restore it, or start "
            "over in a new --workdir (or with --config.overwrite=True)."
        ) from None
