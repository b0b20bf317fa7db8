"""Similarity targets: stimulus images plus their target similarity, on disk.

A target is a directory::

    target/
      metadata.json     kind, simulated, n_stimuli, form, provenance
      stimuli.npy       (n, height, width, 1) float32 in [0, 1]
      similarity.npy    (n, n) matrix            -- form "matrix", or
      embedding.npy     (n, d) unit-norm rows, S = E E^T -- form "embedding"

The embedding form scales past what an N x N matrix fits: the similarity of
any index set is computed on demand from the rows it needs, and arrays are
memory-mapped on load. Every target is validated on save and on load.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

from neuroreg_tf.data.stimuli import check_stimuli
from neuroreg_tf.errors import InputError, MissingDataError
from neuroreg_tf.fileio import fingerprint, read_json, sha256_file, write_json_atomic

FORMAT_VERSION = 1
_METADATA = "metadata.json"
_STIMULI = "stimuli.npy"
_MATRIX = "similarity.npy"
_EMBEDDING = "embedding.npy"

# A target's kind is a name: a registered kind (``neural.target_registry``) or "custom".
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_SYMMETRY_ATOL = 1e-5
_RANGE_ATOL = 1e-5
_DIAGONAL_ATOL = 1e-4
_CHUNK_ROWS = 4096


def _check_kind(kind) -> None:
    if not isinstance(kind, str) or not _KIND_NAME.match(kind):
        raise ValueError(f"`kind` must be a name of lower-case letters, digits and '_' (a registered kind or "
                         f"'custom'). Received: kind={kind!r}")


class TargetError(InputError):
    """A similarity target is malformed; the message says what and how to fix it."""


def validate_similarity_matrix(matrix: np.ndarray, n_stimuli: int | None = None) -> None:
    """Checks that ``matrix`` is a valid similarity matrix.

    Valid means square, matching ``n_stimuli``, finite, symmetric, within
    [-1, 1] and with a unit diagonal (the i < j pairs are what training uses;
    set the diagonal to 1 for targets such as Eq 3's oracle similarity).

    Raises:
        TargetError: naming the first problem found and how to fix it.
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise TargetError(
            f"A similarity matrix must be square (n, n). Received: shape={matrix.shape}"
        )
    if n_stimuli is not None and matrix.shape[0] != n_stimuli:
        raise TargetError(
            f"The similarity matrix covers {matrix.shape[0]} stimuli but there are "
            f"{n_stimuli} stimulus images: both must describe the same stimuli in "
            "the same order."
        )
    n = matrix.shape[0]
    for start in range(0, n, _CHUNK_ROWS):
        rows = np.asarray(matrix[start : start + _CHUNK_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(rows)):
            raise TargetError("The similarity matrix contains NaN or infinite values.")
        if rows.min() < -1.0 - _RANGE_ATOL or rows.max() > 1.0 + _RANGE_ATOL:
            raise TargetError(
                "Similarities must lie in [-1, 1] (they are cosines). "
                f"Received: values in [{rows.min():.6g}, {rows.max():.6g}]"
            )
        columns = np.asarray(matrix[:, start : start + _CHUNK_ROWS], dtype=np.float64).T
        asymmetry = np.abs(rows - columns).max()
        if asymmetry > _SYMMETRY_ATOL:
            raise TargetError(
                "The similarity matrix must be symmetric (S_ij == S_ji); symmetrise "
                f"it with (S + S.T) / 2. Received: max |S - S.T| = {asymmetry:.3g}"
            )
        diagonal = rows[np.arange(rows.shape[0]), start + np.arange(rows.shape[0])]
        if np.abs(diagonal - 1.0).max() > _DIAGONAL_ATOL:
            raise TargetError(
                "The similarity matrix must have a unit diagonal (each stimulus is "
                "identical to itself); set it with np.fill_diagonal(S, 1.0). Received: "
                f"diagonal values in [{diagonal.min():.6g}, {diagonal.max():.6g}]"
            )


def validate_embedding(embedding: np.ndarray, n_stimuli: int | None = None) -> None:
    """Checks that ``embedding`` has finite, unit-norm rows, one per stimulus."""
    if embedding.ndim != 2:
        raise TargetError(
            f"An embedding must be 2-D (n_stimuli, dims). Received: shape={embedding.shape}"
        )
    if n_stimuli is not None and embedding.shape[0] != n_stimuli:
        raise TargetError(
            f"The embedding has {embedding.shape[0]} rows but there are {n_stimuli} "
            "stimulus images: both must describe the same stimuli in the same order."
        )
    for start in range(0, embedding.shape[0], _CHUNK_ROWS):
        rows = np.asarray(embedding[start : start + _CHUNK_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(rows)):
            raise TargetError("The embedding contains NaN or infinite values.")
        norms = np.linalg.norm(rows, axis=1)
        if np.abs(norms - 1.0).max() > _DIAGONAL_ATOL:
            raise TargetError(
                "Embedding rows must be unit vectors so that S = E E^T is a cosine "
                "similarity; use neuroreg_tf.similarity.stimulus_embedding. Received: "
                f"row norms in [{norms.min():.6g}, {norms.max():.6g}]"
            )


@dataclasses.dataclass
class SimilarityTarget:
    """Stimulus images with their target similarities.

    Attributes:
        stimuli: (n, height, width, 1) float32 images in [0, 1].
        matrix: (n, n) similarity matrix, or None in embedding form.
        embedding: (n, d) unit-norm rows with S = E E^T, or None in matrix form.
        metadata: provenance (``kind``, ``simulated``, source, parameters).
    """

    stimuli: np.ndarray
    matrix: np.ndarray | None = None
    embedding: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_stimuli(self) -> int:
        return int(self.stimuli.shape[0])

    @property
    def form(self) -> str:
        return "matrix" if self.matrix is not None else "embedding"

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", "custom"))

    @property
    def fingerprint(self) -> str | None:
        """The content fingerprint recorded when the target was written (None: not from disk)."""
        return self.metadata.get("fingerprint")

    @property
    def simulated(self) -> bool:
        return bool(self.metadata.get("simulated", False))

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"`indices` must be a 1-D integer array. Received: indices={indices!r}"
            )
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_stimuli):
            raise IndexError(
                f"Stimulus indices must be in [0, {self.n_stimuli}). "
                f"Received: min={indices.min()}, max={indices.max()}"
            )
        return indices

    def similarity(self, indices) -> np.ndarray:
        """Target similarities among the stimuli ``indices``, (k, k) float32."""
        indices = self._check_indices(indices)
        if self.matrix is not None:
            block = np.asarray(self.matrix[indices][:, indices], dtype=np.float32)
        else:
            rows = np.asarray(self.embedding[indices], dtype=np.float32)
            block = np.clip(rows @ rows.T, -1.0, 1.0)
            np.fill_diagonal(block, 1.0)
        return block

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(stimuli, similarity) for one batch of stimulus indices."""
        indices = self._check_indices(indices)
        return np.asarray(self.stimuli[indices], dtype=np.float32), self.similarity(indices)

    def full_matrix(self) -> np.ndarray:
        """The whole (n, n) matrix; only sensible for small n."""
        return self.similarity(np.arange(self.n_stimuli))

    def validate(self) -> None:
        check_stimuli(self.stimuli, error=TargetError, chunk=_CHUNK_ROWS)
        if (self.matrix is None) == (self.embedding is None):
            raise TargetError("A target needs exactly one of `matrix` or `embedding`.")
        if self.matrix is not None:
            validate_similarity_matrix(self.matrix, self.n_stimuli)
        else:
            validate_embedding(self.embedding, self.n_stimuli)


def _array_files(path: str, form: str) -> list[str]:
    return [_STIMULI, _EMBEDDING if form == "embedding" else _MATRIX]


def _write_metadata(path, target, kind, simulated, metadata) -> str:
    """Writes metadata.json, last: a directory without it is an incomplete target.

    It records a SHA-256 of each array file (``files``) and the target's ``fingerprint`` (of
    the checksums and the metadata), which training runs record as their input.
    """
    from neuroreg_tf import __version__

    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "simulated": bool(simulated),
        "n_stimuli": target.n_stimuli,
        "stimulus_shape": list(target.stimuli.shape[1:]),
        "form": target.form,
        "neuroreg_tf_version": __version__,
        **(metadata or {}),
        "files": {name: sha256_file(os.path.join(path, name)) for name in _array_files(path, target.form)},
    }
    payload["fingerprint"] = fingerprint(payload)
    write_json_atomic(os.path.join(path, _METADATA), payload)
    return path


def verify_files(path: str, metadata: dict) -> None:
    """Checks metadata.json's own fingerprint, then the array files against its checksums.

    Every entry the check needs must be there: a metadata.json without its ``files`` checksums
    (or without one of them) or without its ``fingerprint`` is refused, not skipped.

    Raises:
        TargetError: an entry is missing, metadata.json was edited, or a file differs from
            what was written (damaged or replaced).
    """
    where = os.path.join(path, _METADATA)
    rebuild = "Rebuild the target (build_target.py) or write it with neuroreg_tf.targets.save_target."
    files = metadata.get("files")
    needed = _array_files(path, metadata.get("form"))
    missing = [name for name in needed if not isinstance(files, dict) or name not in files]
    if missing or "fingerprint" not in metadata:
        absent = [f"the checksum of {name}" for name in missing] + (["its fingerprint"] if "fingerprint" not in metadata else [])
        raise TargetError(f"{where} lacks {' and '.join(absent)}, so the target's files cannot be verified. {rebuild}")
    if metadata["fingerprint"] != fingerprint({k: v for k, v in metadata.items() if k != "fingerprint"}):
        raise TargetError(
            f"{where} was changed after the target was written: its fingerprint does not match its "
            f"content. {rebuild}"
        )
    for name, expected in files.items():
        file = os.path.join(path, name)
        if not os.path.isfile(file) or sha256_file(file) != expected:
            raise TargetError(
                f"{file} is damaged or was replaced: its checksum differs from the one recorded "
                f"in {where} when the target was written. Rebuild the target (build_target.py) "
                "or restore the file."
            )


def save_target(
    path: str,
    stimuli: np.ndarray,
    *,
    similarity: np.ndarray | None = None,
    embedding: np.ndarray | None = None,
    kind: str = "custom",
    simulated: bool,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Validates and writes a similarity target directory.

    Args:
        path: directory to create (existing target files in it are replaced).
        stimuli: (n, height, width, 1) images in [0, 1].
        similarity: (n, n) matrix; give this or ``embedding``.
        embedding: (n, d) unit-norm rows with S = E E^T.
        kind: its name (lower-case letters, digits and '_'): a registered kind or "custom".
        simulated: whether the target comes from simulated neural data. Required,
            so that no target is ever unlabelled.
        metadata: extra provenance (source recordings, parameters, ...).

    Returns:
        ``path``.
    """
    _check_kind(kind)
    stimuli = np.asarray(stimuli, dtype=np.float32)
    if stimuli.ndim == 3:
        stimuli = stimuli[..., None]
    target = SimilarityTarget(
        stimuli=stimuli,
        matrix=None if similarity is None else np.asarray(similarity, dtype=np.float32),
        embedding=None if embedding is None else np.asarray(embedding, dtype=np.float32),
    )
    target.validate()
    os.makedirs(path, exist_ok=True)
    for name in (_MATRIX, _EMBEDDING, _METADATA):
        if os.path.exists(os.path.join(path, name)):
            os.remove(os.path.join(path, name))
    np.save(os.path.join(path, _STIMULI), target.stimuli)
    if target.matrix is not None:
        np.save(os.path.join(path, _MATRIX), target.matrix)
    else:
        np.save(os.path.join(path, _EMBEDDING), target.embedding)
    return _write_metadata(path, target, kind, simulated, metadata)


def finish_target(
    path: str,
    *,
    kind: str = "custom",
    simulated: bool,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Validates arrays already written to ``path`` and writes metadata.json last.

    For targets too large to pass to ``save_target`` as in-memory arrays:
    write ``stimuli.npy`` and ``embedding.npy`` (or ``similarity.npy``) into
    ``path`` chunk by chunk (e.g. ``numpy.lib.format.open_memmap``), then call
    this. The arrays are validated memory-mapped, in chunks.

    Args:
        path: the directory holding the arrays.
        kind: its name (lower-case letters, digits and '_'): a registered kind or "custom".
        simulated: whether the target comes from simulated neural data.
        metadata: extra provenance.

    Returns:
        ``path``.
    """
    _check_kind(kind)
    has_embedding = os.path.isfile(os.path.join(path, _EMBEDDING))
    has_matrix = os.path.isfile(os.path.join(path, _MATRIX))
    if has_embedding == has_matrix or not os.path.isfile(os.path.join(path, _STIMULI)):
        raise TargetError(
            f"{path!r} must hold {_STIMULI} and exactly one of {_EMBEDDING} or {_MATRIX}. "
            f"Received: files {sorted(os.listdir(path)) if os.path.isdir(path) else []}"
        )
    stimuli = np.load(os.path.join(path, _STIMULI), mmap_mode="r")
    target = SimilarityTarget(
        stimuli=stimuli,
        matrix=np.load(os.path.join(path, _MATRIX), mmap_mode="r") if has_matrix else None,
        embedding=np.load(os.path.join(path, _EMBEDDING), mmap_mode="r") if has_embedding else None,
    )
    target.validate()
    return _write_metadata(path, target, kind, simulated, metadata)


def load_target(path: str, *, mmap: bool = True, validate: bool = True) -> SimilarityTarget:
    """Reads (and by default validates) a target written by ``save_target``.

    Args:
        path: the target directory.
        mmap: memory-map the arrays instead of reading them into memory.
        validate: check the files' checksums, the stimuli and the similarities (see
            ``SimilarityTarget.validate``).
    """
    metadata_path = os.path.join(path, _METADATA)
    if not os.path.isfile(metadata_path):
        raise MissingDataError(
            f"No similarity target at {path!r}: {_METADATA} is missing. Build one with "
            "`python build_target.py --workdir=DIR` or neuroreg_tf.targets.save_target."
        )
    metadata = read_json(metadata_path, "the target's metadata")
    if validate:
        verify_files(path, metadata)
    mode = "r" if mmap else None
    stimuli = np.load(os.path.join(path, _STIMULI), mmap_mode=mode)
    matrix = embedding = None
    if metadata.get("form") == "embedding":
        embedding = np.load(os.path.join(path, _EMBEDDING), mmap_mode=mode)
    else:
        matrix = np.load(os.path.join(path, _MATRIX), mmap_mode=mode)
    target = SimilarityTarget(stimuli=stimuli, matrix=matrix, embedding=embedding, metadata=metadata)
    if target.n_stimuli != metadata.get("n_stimuli", target.n_stimuli):
        raise TargetError(
            f"{metadata_path} records {metadata['n_stimuli']} stimuli but "
            f"{_STIMULI} holds {target.n_stimuli}: the target is corrupted; rebuild it."
        )
    if validate:
        target.validate()
    return target
