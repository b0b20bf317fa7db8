"""Prediction quality of a fitted model on a scan's test trials: v_a and FEVE."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neuroreg_tf.neural import statistics
from neuroreg_tf.neural.recordings import Recording

if TYPE_CHECKING:
    from neuroreg_tf.neural.predictive.training import FittedPredictor


def evaluate_predictor(fitted: FittedPredictor, recording: Recording) -> None:
    """Sets ``test_correlation`` (v_a) and ``feve`` from the 'test' trials.

    v_a is the per-neuron correlation between prediction and single trials on
    the test tier (the repeats); FEVE compares the prediction averaged over
    each oracle image's repeats with the repeats' responses.
    """
    test = np.flatnonzero(recording.tiers == "test")
    if test.size < 2:
        raise ValueError(f"Evaluation needs 'test' trials. Received: {test.size} test trials")
    predicted = fitted.predict(recording.images[test], recording.behavior[test], recording.pupil_center[test])
    fitted.test_correlation = statistics.prediction_correlation(recording.responses[test], predicted)
    trials = recording.repeated_trials()
    predicted_repeats = fitted.predict(
        recording.images[trials.reshape(-1)],
        recording.behavior[trials.reshape(-1)],
        recording.pupil_center[trials.reshape(-1)],
    ).reshape(trials.shape + (-1,))
    # The image-driven part of the prediction: averaged over the repeats, so
    # that per-trial behaviour (which also drives the across-repeat "noise")
    # cannot push FEVE above 1.
    fitted.feve = statistics.fraction_explainable_variance_explained(
        recording.responses[trials], predicted_repeats.mean(axis=1)
    )

