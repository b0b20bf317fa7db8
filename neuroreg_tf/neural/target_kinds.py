"""Similarity targets from (recorded or SIMULATED) neural responses.

Every target kind is written in the format of ``neuroreg_tf.targets`` (load it
with ``load_target``), in embedding form where the target comes from
responses (S = E E^T, so no N x N matrix is ever held) and in matrix form for
the small oracle target.

The kinds themselves -- what each needs and how it is built -- are entries of
``target_registry`` (the built-in ones in ``builtin_kinds`` and ``pretrained_kinds``); this
module holds the maths they share:

* Eq 1-3 per scan (``analyse_scan``), the images the scans share, and the oracle matrix;
* Eq 2 / Eq 6 embeddings of single trials (``data_embedding``) and of the predictive models'
  neutral-state predictions scaled by w_a * max(v_a, 0) (``model_embedding``), averaged over
  scans so that E E^T is the mean of the scans' similarity matrices (``average_embeddings``);
* the controls: permuted rows (``shuffle_embedding``), Gaussian vectors with the model target's
  spread (``random_embedding``), a fixed Gabor bank (``gabor_v1_embedding``) and pixels
  (``pixel_embedding``);
* writing a target, and the Neural (model) target streamed for large stimulus sets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neuroreg_tf import similarity, targets
from neuroreg_tf.neural import statistics
from neuroreg_tf.neural.recordings import Recording
from neuroreg_tf.neural.simulation import SIMULATED_LABEL, make_v1_population

GABOR_NEURONS = 1000
GABOR_SEED = 2019
_MAX_PAIRS = 200_000


@dataclasses.dataclass
class ScanAnalysis:
    """What the target builder derives from one scan.

    Attributes:
        recording: the scan.
        oracle_ids: the repeated image ids, sorted.
        repeated: (n_oracle, n_repeats, n_neurons) responses to the repeats.
        weights: (n_neurons,) SNR weights w_a (Eq 1).
        oracle_similarity: (n_oracle, n_oracle) S_oracle (Eq 3).
        oracle_correlation: (n_neurons,) leave-one-out oracle correlation.
        predictor: the fitted predictive model, or None.
    """

    recording: Recording
    oracle_ids: np.ndarray
    repeated: np.ndarray
    weights: np.ndarray
    oracle_similarity: np.ndarray
    oracle_correlation: np.ndarray
    predictor: Any = None

    @property
    def model_weights(self) -> np.ndarray:
        """w_a * max(v_a, 0) of Eq 6."""
        if self.predictor is None:
            raise ValueError("This scan has no fitted predictive model; fit one first.")
        return self.weights * np.clip(self.predictor.test_correlation, 0.0, None)


def analyse_scan(recording: Recording, oracle_ids=None) -> ScanAnalysis:
    """Eq 1 weights, Eq 3 oracle similarity and oracle correlations of one scan."""
    oracle_ids = recording.oracle_image_ids() if oracle_ids is None else np.asarray(oracle_ids)
    repeated = recording.repeated_responses(oracle_ids)
    weights = similarity.snr_weights(repeated)
    return ScanAnalysis(
        recording=recording,
        oracle_ids=oracle_ids,
        repeated=repeated,
        weights=weights,
        oracle_similarity=similarity.oracle_similarity(repeated, weights),
        oracle_correlation=statistics.oracle_correlation(repeated),
    )


def shared_oracle_ids(recordings) -> np.ndarray:
    """Oracle image ids repeated in every scan (possibly none: scans may have seen different images)."""
    shared = recordings[0].oracle_image_ids()
    for recording in recordings[1:]:
        shared = np.intersect1d(shared, recording.oracle_image_ids())
    return shared


def shared_stimuli(recordings) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, images) shown in every scan, sorted by id (possibly none)."""
    ids, images, _ = recordings[0].unique_images()
    for recording in recordings[1:]:
        keep = np.isin(ids, recording.image_ids)
        ids, images = ids[keep], images[keep]
    return ids, images


def union_stimuli(recordings) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, images) shown in any scan, sorted by id (ids must name one image across scans,
    ``recordings.check_ids_agree_across_scans``)."""
    ids, images = [], []
    for recording in recordings:
        scan_ids, scan_images, _ = recording.unique_images()
        ids.append(scan_ids)
        images.append(scan_images)
    ids, images = np.concatenate(ids), np.concatenate(images)
    unique, first = np.unique(ids, return_index=True)
    return unique, images[first]


def _first_trials(recording: Recording, image_ids) -> np.ndarray:
    order = np.argsort(recording.image_ids, kind="stable")
    sorted_ids = recording.image_ids[order]
    return order[np.searchsorted(sorted_ids, image_ids)]


def data_embedding(scan: ScanAnalysis, image_ids) -> np.ndarray:
    """Unit embedding of single-trial responses (first trial per image), Eq 1-2."""
    trials = _first_trials(scan.recording, image_ids)
    return similarity.stimulus_embedding(scan.recording.responses[trials], scan.weights)


def model_embedding(scan: ScanAnalysis, images, batch_size: int = 256) -> np.ndarray:
    """Unit embedding of neutral-state predictions scaled by w_a v_a (Eq 6)."""
    predictions = scan.predictor.predict_neutral(images, batch_size=batch_size)
    return similarity.stimulus_embedding(predictions, scan.model_weights)


def oracle_similarity_on(scan: ScanAnalysis, oracle_ids) -> np.ndarray:
    """S_oracle (Eq 3) of one scan on the given repeated images, with the scan's own weights."""
    return similarity.oracle_similarity(scan.recording.repeated_responses(oracle_ids), scan.weights)


def model_similarity_on(scan: ScanAnalysis, image_ids) -> np.ndarray:
    """S_model (Eq 6, neutral state) of one scan on the given images it saw."""
    ids, images, _ = scan.recording.unique_images()
    return similarity.similarity_matrix(scan.predictor.predict_neutral(images[np.searchsorted(ids, image_ids)]),
                                        scan.model_weights)


def oracle_matrix(scans, oracle_ids) -> np.ndarray:
    """Mean over scans of S_oracle (Eq 3) on the shared oracle images, clipped, unit diagonal."""
    matrix = np.mean([oracle_similarity_on(s, oracle_ids) for s in scans], axis=0)
    matrix = np.clip((matrix + matrix.T) / 2.0, -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)
    return matrix


def average_embeddings(embeddings) -> np.ndarray:
    """One embedding whose Gram matrix is the mean of the embeddings' Gram matrices."""
    embeddings = list(embeddings)
    stacked = np.concatenate(embeddings, axis=1) / np.sqrt(len(embeddings))
    return stacked.astype(np.float32)


def pair_correlation_from_embeddings(first, second, *, max_pairs: int = _MAX_PAIRS, seed: int = 0) -> float:
    """Pearson r of S = E E^T between two embeddings over i < j pairs.

    All pairs when there are at most ``max_pairs``, else a uniform random sample
    of pairs (so N x N is never formed).
    """
    n = first.shape[0]
    if second.shape[0] != n or n < 3:
        raise ValueError(
            "Both embeddings must describe the same >= 3 stimuli. "
            f"Received: first.shape={first.shape}, second.shape={second.shape}"
        )
    total = n * (n - 1) // 2
    if total <= max_pairs:
        rows, cols = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, n, max_pairs)
        cols = rng.integers(0, n - 1, max_pairs)
        cols = np.where(cols >= rows, cols + 1, cols)
    values = []
    for embedding in (first, second):
        values.append(
            np.concatenate(
                [
                    np.einsum("pd,pd->p", embedding[rows[s : s + 50_000]], embedding[cols[s : s + 50_000]])
                    for s in range(0, rows.size, 50_000)
                ]
            )
        )
    return float(np.corrcoef(values[0], values[1])[0, 1])


def shuffle_embedding(embedding, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(embedding[permutation], permutation): the Shuffle control."""
    permutation = np.random.default_rng(seed).permutation(embedding.shape[0])
    return np.asarray(embedding)[permutation], permutation


def similarity_spread(embedding, *, max_pairs: int = _MAX_PAIRS, seed: int = 0) -> float:
    """Standard deviation of S_ij over (sampled) i < j pairs of an embedding."""
    n = embedding.shape[0]
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, max_pairs)
    cols = (rows + rng.integers(1, n, max_pairs)) % n
    return float(np.einsum("pd,pd->p", embedding[rows], embedding[cols]).std())


def random_embedding(n_stimuli: int, spread: float, seed: int = 0) -> np.ndarray:
    """Eq 2 applied to Gaussian noise in d = round(1 / spread^2) dimensions.

    Random unit vectors in d dimensions have pairwise cosines with standard
    deviation ~ 1 / sqrt(d), so the result is a valid (PSD, unit-diagonal)
    similarity with the requested spread and no stimulus structure.
    """
    if not 0 < spread < 1:
        raise ValueError(f"`spread` must be in (0, 1). Received: spread={spread}")
    dims = max(2, int(round(1.0 / spread**2)))
    noise = np.random.default_rng(seed).normal(size=(n_stimuli, dims))
    return similarity.stimulus_embedding(noise).astype(np.float32)


def write_target(
    path: str,
    kind: str,
    stimuli,
    *,
    simulated: bool,
    embedding=None,
    matrix=None,
    provenance: dict[str, Any] | None = None,
) -> str:
    """Writes one target, labelled SIMULATED when ``simulated``."""
    metadata = dict(provenance or {})
    if simulated:
        metadata["label"] = SIMULATED_LABEL
    return targets.save_target(
        path, stimuli, similarity=matrix, embedding=embedding, kind=kind, simulated=simulated, metadata=metadata
    )


def stream_model_target(
    path: str,
    scans,
    stimuli_fn,
    n_stimuli: int,
    stimulus_shape: tuple[int, int],
    *,
    simulated: bool,
    projection_dims: int | None = None,
    chunk: int = 4096,
    provenance: dict[str, Any] | None = None,
    log=None,
) -> str:
    """The Neural (model) target for stimuli too many to hold: streamed to disk.

    Like the in-memory ``neural_model`` kind (``builtin_kinds``), but the
    predictions are made chunk by chunk (twice: once for the mean, once for the
    rows) and written straight to ``embedding.npy``
    (``streaming.stream_averaged_embedding_target``; see there for
    ``projection_dims``).

    Args:
        path: target directory.
        scans: ``ScanAnalysis`` objects with fitted predictors.
        stimuli_fn: (start, stop) -> (stop - start, height, width, 1) images in [0, 1].
        n_stimuli: N.
        stimulus_shape: (height, width).
        simulated: label of the target.
        projection_dims: optional random-projection dimension.
        chunk: stimuli per chunk.
        provenance: extra metadata.
        log: progress sink.

    Returns:
        ``path``.
    """
    from neuroreg_tf.neural import streaming

    specs = [
        (lambda start, stop, scan=scan: scan.predictor.predict_neutral(stimuli_fn(start, stop)), scan.recording.n_neurons, scan.model_weights)
        for scan in scans
    ]
    metadata = dict(provenance or {})
    metadata["method"] = "Eq 6: neutral-state predictions x w_a v_a, averaged over scans (streamed)"
    if simulated:
        metadata["label"] = SIMULATED_LABEL
    return streaming.stream_averaged_embedding_target(
        path, n_stimuli=n_stimuli, stimulus_shape=stimulus_shape, stimuli_fn=stimuli_fn, scans=specs,
        projection_dims=projection_dims, kind="neural_model", simulated=simulated, metadata=metadata,
        chunk=chunk, log=log,
    )


def pixel_embedding(stimuli) -> np.ndarray:
    """Eq 2 on the stimuli's own pixels: is any image-derived similarity enough?"""
    stimuli = np.asarray(stimuli, dtype=np.float32)
    return similarity.stimulus_embedding(stimuli.reshape(stimuli.shape[0], -1)).astype(np.float32)


def gabor_v1_embedding(stimuli, n_neurons: int = GABOR_NEURONS, seed: int = GABOR_SEED) -> np.ndarray:
    """Eq 2 on the noiseless responses of a fixed bank of Gabor simple and complex cells.

    A model-V1 control in the spirit of VOneNet: the simulator's receptive-field model
    (``simulation.make_v1_population``, drawn with its own seed) with no noise, no behaviour
    and no recording, so it can stand beside real data. On SIMULATED data it shares the
    simulated population's model class (but not its cells), which the report says.
    """
    stimuli = np.asarray(stimuli, dtype=np.float32)
    population = make_v1_population(n_neurons, stimuli.shape[1:3], seed=seed)
    return similarity.stimulus_embedding(population.visual_drive(stimuli)).astype(np.float32)
