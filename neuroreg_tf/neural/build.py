"""Similarity targets from (recorded or SIMULATED) neural responses."""

from __future__ import annotations

import numpy as np

from neuroreg_tf import similarity, targets
from neuroreg_tf.neural.simulation import SimulatedRecording


def neural_data_similarity(responses: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    """"Neural (data)" similarity: Eq 1 SNR weights from the repeats, then Eq 2."""
    return similarity.similarity_matrix(responses, similarity.snr_weights(repeated))


def save_recording_target(path: str, recording: SimulatedRecording, *, kind: str = "neural_data") -> str:
    """Writes the "neural_data" (Eq 1-2 on single trials) or "ground_truth" target.

    ``ground_truth`` uses the noiseless rates, which only a simulation has.
    """
    if kind == "neural_data":
        matrix = neural_data_similarity(recording.responses, recording.oracle_responses)
    elif kind == "ground_truth":
        matrix = similarity.similarity_matrix(recording.ground_truth)
    else:
        raise ValueError(f"`kind` must be 'neural_data' or 'ground_truth'. Received: kind={kind!r}")
    return targets.save_target(
        path,
        recording.stimuli,
        similarity=matrix,
        kind=kind,
        simulated=recording.simulated,
        metadata={
            "label": recording.label,
            "n_neurons": int(recording.responses.shape[1]),
            "n_oracle": int(recording.oracle_indices.size),
            "n_repeats": int(recording.oracle_responses.shape[1]),
        },
    )
