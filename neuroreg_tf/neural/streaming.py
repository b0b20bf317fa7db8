"""Targets at scale: stream an embedding to disk without an N x N matrix.

For 100,000 stimuli x 8,000 neurons the similarity matrix would need 40 GB
(float32) and even the responses 3.2 GB. Here responses are produced in chunks
by a user function (e.g. a predictive model's predictions for a chunk of
stimuli), and Eq 2's unit embedding is written in two passes: the first sums
the weighted responses for the mean over stimuli, the second centres,
normalises and appends each chunk to ``embedding.npy``. Peak memory is a few
chunks. Training then reads only the rows of each batch (``SimilarityTarget``
memory-maps the file and computes a batch's (k, k) block on demand).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from neuroreg_tf import targets

ChunkFn = Callable[[int, int], np.ndarray]


def _clear_target(path: str) -> None:
    """Makes ``path`` and removes the target files an earlier write left there (a new one replaces it)."""
    os.makedirs(path, exist_ok=True)
    for name in ("metadata.json", "similarity.npy", "embedding.npy"):
        if os.path.exists(os.path.join(path, name)):
            os.remove(os.path.join(path, name))


def _write_npy_chunks(path: str, shape: tuple[int, ...], chunk_fn: ChunkFn, chunk: int) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, shape[0], chunk):
            stop = min(start + chunk, shape[0])
            block = np.ascontiguousarray(chunk_fn(start, stop), dtype=np.float32)
            if block.shape != (stop - start,) + tuple(shape[1:]):
                raise ValueError(
                    f"The chunk function must return shape {(stop - start,) + tuple(shape[1:])} for "
                    f"rows [{start}, {stop}). Received: shape={block.shape}"
                )
            f.write(block.tobytes())


def stream_embedding_target(
    path: str,
    *,
    n_stimuli: int,
    n_neurons: int,
    stimulus_shape: tuple[int, int],
    stimuli_fn: ChunkFn,
    responses_fn: ChunkFn,
    weights=None,
    kind: str = "neural_model",
    simulated: bool,
    metadata: dict | None = None,
    chunk: int = 4096,
    log: Callable[[str], object] | None = None,
) -> str:
    """Writes an embedding-form target (Eq 2 of one response set) chunk by chunk.

    Args:
        path: target directory.
        n_stimuli: number of stimuli N.
        n_neurons: responses per stimulus.
        stimulus_shape: (height, width).
        stimuli_fn: (start, stop) -> (stop - start, height, width, 1) images in [0, 1].
        responses_fn: (start, stop) -> (stop - start, n_neurons) responses of
            those stimuli; called twice per chunk, so it must be deterministic.
        weights: optional (n_neurons,) per-neuron scaling (w_a or w_a v_a).
        kind, simulated, metadata: as for ``targets.save_target``.
        chunk: stimuli per chunk.
        log: progress sink.

    Returns:
        ``path``.
    """
    return stream_averaged_embedding_target(
        path, n_stimuli=n_stimuli, stimulus_shape=stimulus_shape, stimuli_fn=stimuli_fn,
        scans=[(responses_fn, n_neurons, weights)], kind=kind, simulated=simulated,
        metadata=metadata, chunk=chunk, log=log,
    )


def stream_averaged_embedding_target(
    path: str,
    *,
    n_stimuli: int,
    stimulus_shape: tuple[int, int],
    stimuli_fn: ChunkFn,
    scans,
    projection_dims: int | None = None,
    projection_seed: int = 0,
    kind: str = "neural_model",
    simulated: bool,
    metadata: dict | None = None,
    chunk: int = 4096,
    log: Callable[[str], object] | None = None,
) -> str:
    """Streams the scan-averaged embedding: S = mean_h S_h without any N x N matrix.

    Each scan's responses are weighted, centred over stimuli and unit-normalised
    (Eq 2) on their own; the scans' unit rows are concatenated and divided by
    sqrt(H), so E E^T is the mean of the scans' similarity matrices (exactly).

    With many scans the concatenation has sum_h n_neurons_h columns (64,000 for
    8 scans of 8,000 neurons). ``projection_dims = k`` multiplies it by a
    Gaussian random matrix (sum_h n_h x k) / sqrt(k) and re-normalises the
    rows (Johnson-Lindenstrauss): S_ij is then approximate, with errors of
    order 1 / sqrt(k) (about 0.02 for k = 2048), and the file is N x k.

    Args:
        path: target directory.
        n_stimuli: N.
        stimulus_shape: (height, width).
        stimuli_fn: (start, stop) -> images in [0, 1], (stop - start, h, w, 1).
        scans: list of (responses_fn, n_neurons, weights or None) per scan;
            responses_fn(start, stop) -> (stop - start, n_neurons), deterministic.
        projection_dims: optional k for the random projection.
        projection_seed: seed of the projection.
        kind, simulated, metadata: as for ``targets.save_target``.
        chunk: stimuli per chunk.
        log: progress sink.

    Returns:
        ``path``.
    """
    log = log or (lambda message: None)
    if not scans:
        raise ValueError("Need at least one scan. Received: scans=[]")
    _clear_target(path)
    prepared = []
    for h, (responses_fn, n_neurons, weights) in enumerate(scans):
        weights = np.ones(n_neurons) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_neurons,):
            raise ValueError(
                f"Scan {h}: `weights` must have shape ({n_neurons},). Received: weights.shape={weights.shape}"
            )
        prepared.append((responses_fn, n_neurons, weights))
    log(f"writing {n_stimuli} stimuli")
    _write_npy_chunks(os.path.join(path, "stimuli.npy"), (n_stimuli, *stimulus_shape, 1), stimuli_fn, chunk)
    means = []
    for h, (responses_fn, n_neurons, weights) in enumerate(prepared):
        log(f"pass 1/2, scan {h + 1}/{len(prepared)}: mean response over stimuli")
        total = np.zeros(n_neurons)
        for start in range(0, n_stimuli, chunk):
            block = np.asarray(responses_fn(start, min(start + chunk, n_stimuli)), dtype=np.float64)
            total += (block * weights).sum(axis=0)
        means.append(total / n_stimuli)
    total_dims = sum(n for _, n, _ in prepared)
    projection = None
    if projection_dims is not None:
        if not 1 <= projection_dims:
            raise ValueError(f"`projection_dims` must be positive. Received: projection_dims={projection_dims}")
        rng = np.random.default_rng(projection_seed)
        projection = rng.normal(0.0, 1.0 / np.sqrt(projection_dims), (total_dims, projection_dims))
    dims = total_dims if projection is None else projection_dims

    def unit_rows(start, stop):
        parts = []
        for (responses_fn, _, weights), mean in zip(prepared, means):
            centred = np.asarray(responses_fn(start, stop), dtype=np.float64) * weights - mean
            norms = np.linalg.norm(centred, axis=1, keepdims=True)
            if np.any(norms <= 1e-12):
                raise ValueError(
                    "A stimulus has a population response equal to the mean (zero norm after "
                    f"centring) in rows [{start}, {stop}); its similarity is undefined. "
                    "Received: zero-norm rows"
                )
            parts.append(centred / norms)
        rows = np.concatenate(parts, axis=1) / np.sqrt(len(parts))
        if projection is not None:
            rows = rows @ projection
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows

    log("pass 2/2: centred unit embedding")
    _write_npy_chunks(os.path.join(path, "embedding.npy"), (n_stimuli, dims), unit_rows, chunk)
    log("validating and writing metadata.json")
    provenance = dict(metadata or {})
    provenance.update(n_scans_averaged=len(prepared), projection_dims=projection_dims)
    return targets.finish_target(path, kind=kind, simulated=simulated, metadata=provenance)


def stream_rows_target(
    path: str,
    *,
    n_stimuli: int,
    stimulus_shape: tuple[int, int],
    stimuli_fn: ChunkFn,
    rows_fn: ChunkFn,
    dims: int,
    kind: str,
    simulated: bool,
    metadata: dict | None = None,
    chunk: int = 4096,
) -> str:
    """Writes a target whose unit embedding rows come ready from ``rows_fn`` (e.g. permuted rows).

    Args:
        path: target directory.
        n_stimuli: N.
        stimulus_shape: (height, width).
        stimuli_fn: (start, stop) -> images in [0, 1], (stop - start, h, w, 1).
        rows_fn: (start, stop) -> (stop - start, dims) unit rows.
        dims: embedding dimension.
        kind, simulated, metadata: as for ``targets.save_target``.
        chunk: stimuli per chunk.

    Returns:
        ``path``.
    """
    _clear_target(path)
    _write_npy_chunks(os.path.join(path, "stimuli.npy"), (n_stimuli, *stimulus_shape, 1), stimuli_fn, chunk)
    _write_npy_chunks(os.path.join(path, "embedding.npy"), (n_stimuli, dims), rows_fn, chunk)
    return targets.finish_target(path, kind=kind, simulated=simulated, metadata=dict(metadata or {}))
