"""Target kinds that take the Ground truth and Neural (model) targets apart (issue 21's puzzle).

On the SIMULATED population the predictive model's target (Neural (model)) regularizes better than
the noiseless ground truth it was fitted to. The two differ in more than noise:

* ``ground_truth`` is Eq 2 on the noiseless rates of *all recorded neurons pooled*, unweighted;
* ``neural_model`` is Eq 6: per scan, the model's predictions with each neuron scaled by its SNR
  weight times its test correlation (w_a v_a), and the scans' similarities averaged.

Each kind here changes one step between them, so that a study can say which step accounts for the
difference:

* ``ground_truth_scans``: the ground truth per scan (unweighted), scans averaged: the structure;
* ``ground_truth_model_weights``: the same with each neuron scaled by the model's w_a v_a: the
  weighting, without denoising;
* ``neural_model_unweighted``: the model's predictions without w_a v_a, scans averaged: the
  predictor without its weighting;
* ``ground_truth_low_sf`` / ``ground_truth_high_sf``: the ground truth of the recorded neurons whose
  preferred wavelength is above / at most the median (low / high preferred spatial frequency).

Registered with the built-in kinds; each is a study condition by its name.
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf import similarity
from neuroreg_tf.neural import target_kinds
from neuroreg_tf.neural.target_registry import GROUND_TRUTH, PREDICTIVE_MODEL, BuildContext, TargetKind, register_target_kind


def _scan_truth(context: BuildContext, scan_index: int) -> np.ndarray:
    """The noiseless rates of the neurons scan ``scan_index`` recorded, on every image the scans saw."""
    neurons = context.experiment.scan_neurons[scan_index]
    return context.experiment.ground_truth_rates(context.union_ids, neurons=neurons)


def scan_truth_embedding(context: BuildContext, weighted: bool) -> np.ndarray:
    """Eq 2 per scan on its neurons' noiseless rates (scaled by the scan's w_a v_a when
    ``weighted``), scans averaged (``target_kinds.average_embeddings``)."""
    return target_kinds.average_embeddings(
        similarity.stimulus_embedding(_scan_truth(context, h), scan.model_weights if weighted else None)
        for h, scan in enumerate(context.scans))


def unweighted_model_embedding(context: BuildContext, batch_size: int = 256) -> np.ndarray:
    """The model's neutral-state predictions per scan, Eq 2 without w_a v_a, scans averaged."""
    return target_kinds.average_embeddings(
        similarity.stimulus_embedding(scan.predictor.predict_neutral(context.union_images, batch_size=batch_size))
        for scan in context.scans)


def spatial_frequency_neurons(context: BuildContext, low: bool) -> np.ndarray:
    """The recorded neurons with preferred wavelength above (``low`` spatial frequency) or at most
    the median preferred wavelength of the recorded neurons."""
    recorded = context.experiment.recorded_neurons
    wavelength = context.experiment.population.wavelength[recorded]
    median = np.median(wavelength)
    return recorded[wavelength > median] if low else recorded[wavelength <= median]


def _writer(kind: str, embedding_fn, method: str):
    def build(context: BuildContext, path: str) -> int:
        return context.write(path, kind, context.union_images, embedding=embedding_fn(context).astype(np.float32),
                             method=method)
    return build


def _sf_embedding(low: bool):
    def embedding(context: BuildContext) -> np.ndarray:
        rates = context.experiment.ground_truth_rates(context.union_ids, neurons=spatial_frequency_neurons(context, low))
        return similarity.stimulus_embedding(rates)
    return embedding


for _kind in (
    TargetKind("ground_truth_scans", "Ground truth, per scan",
               "the SIMULATED noiseless rates per scan, unweighted, scans averaged (Neural (model)'s structure)",
               _writer("ground_truth_scans", lambda c: scan_truth_embedding(c, weighted=False),
                       "Eq 2 per scan on the noiseless rates of its neurons, scans averaged"),
               needs={GROUND_TRUTH}),
    TargetKind("ground_truth_model_weights", "Ground truth, model weights",
               "the SIMULATED noiseless rates per scan, each neuron scaled by the model's w_a v_a (Eq 6's "
               "weighting without denoising), scans averaged",
               _writer("ground_truth_model_weights", lambda c: scan_truth_embedding(c, weighted=True),
                       "Eq 6's weighting (w_a v_a) on the noiseless rates per scan, scans averaged"),
               needs={GROUND_TRUTH, PREDICTIVE_MODEL}),
    TargetKind("neural_model_unweighted", "Neural (model), unweighted",
               "the predictive model's responses without Eq 6's w_a v_a, scans averaged",
               _writer("neural_model_unweighted", unweighted_model_embedding,
                       "Eq 2 on neutral-state predictions per scan, unweighted, scans averaged"),
               needs={PREDICTIVE_MODEL}),
    TargetKind("ground_truth_low_sf", "Ground truth, low-SF neurons",
               "the SIMULATED noiseless rates of the recorded neurons preferring wavelengths above the median",
               _writer("ground_truth_low_sf", _sf_embedding(low=True),
                       "Eq 2 on the noiseless rates of the neurons with preferred wavelength above the median"),
               needs={GROUND_TRUTH}),
    TargetKind("ground_truth_high_sf", "Ground truth, high-SF neurons",
               "the SIMULATED noiseless rates of the recorded neurons preferring wavelengths at most the median",
               _writer("ground_truth_high_sf", _sf_embedding(low=False),
                       "Eq 2 on the noiseless rates of the neurons with preferred wavelength at most the median"),
               needs={GROUND_TRUTH}),
):
    register_target_kind(_kind)
