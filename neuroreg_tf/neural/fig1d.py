"""How good a build's targets are: the paper's Fig. 1D numbers and ``target_report.json``.

Per scan, on its own repeated (oracle) images: r(S_data, S_oracle) over every single-trial
combination and r(S_model, S_oracle); across scans, the fluctuation of similarities between
scans and between repeats (Fig. 1C); for SIMULATED data, how close the Neural (data) and Neural
(model) targets come to the noiseless ground truth. ``measure`` assembles the report the target
build writes; what the scans cannot support is listed as unavailable with the reason, never 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroreg_tf import similarity
from neuroreg_tf.neural import statistics, target_kinds
from neuroreg_tf.neural.simulation import SIMULATED_LABEL
from neuroreg_tf.neural.target_registry import MIN_SHARED, BuildContext

# Report entries that need at least MIN_SHARED repeated images shared by every scan.
ACROSS_SCAN_MEASURES = (
    "fluctuation_std_across_scans", "fluctuation_std_across_repeats", "fig1ab_similarity_matrices",
    "fig1c_fluctuations",
)
DEFINITIONS = {
    "r_data_vs_oracle": "Pearson r over oracle pairs i < j between single-trial S_data (every repeat "
    "combination) and S_oracle (Eq 3), per scan on its own oracle images, averaged over the scans "
    "where it is available (Fig. 1D).",
    "r_model_vs_oracle": "Pearson r over oracle pairs i < j between S_model (Eq 6, neutral state) "
    "and S_oracle, per scan on its own oracle images, averaged over scans (Fig. 1D).",
    "r_data_vs_truth": "Pearson r over all (or 200k sampled) stimulus pairs i < j between the "
    "neural_data target and the noiseless ground-truth similarity (simulated only).",
    "r_model_vs_truth": "As r_data_vs_truth, for the neural_model target.",
    "unavailable": "what could not be computed from these scans, and why (never reported as 0).",
}


def similarity_r(first, second) -> float:
    """Pearson r over the i < j pairs of two similarity matrices (``similarity.pair_correlation``)."""
    return float(similarity.pair_correlation(np.asarray(first, np.float64), np.asarray(second, np.float64)))


def scan_metrics(scan: target_kinds.ScanAnalysis) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fig. 1D for one scan on its own oracle images: (metrics, arrays the scatter plot draws)."""
    n_images, n_repeats, _ = scan.repeated.shape
    metrics: dict[str, Any] = {
        "source": scan.recording.source,
        "n_neurons": scan.recording.n_neurons,
        "n_oracle": int(n_images),
        "n_repeats": int(n_repeats),
        "median_oracle_correlation": float(np.median(scan.oracle_correlation)),
        "median_snr_weight": float(np.median(scan.weights)),
        "r_data_vs_oracle": None,
    }
    extras: dict[str, Any] = {}
    if n_images >= MIN_SHARED:
        oracle_upper = similarity.upper_triangle(scan.oracle_similarity)
        trial_pairs = statistics.trial_pair_similarities(scan.repeated, scan.weights)
        metrics["r_data_vs_oracle"] = float(
            np.corrcoef(np.repeat(oracle_upper, n_repeats**2), trial_pairs.reshape(-1))[0, 1]
        )
        extras.update(oracle_upper=oracle_upper, trial_pairs=trial_pairs)
    if scan.predictor is not None:
        metrics.update(
            {
                "r_model_vs_oracle": None,
                "mean_test_correlation": float(np.mean(scan.predictor.test_correlation)),
                "median_feve": float(np.nanmedian(scan.predictor.feve)),
                "epochs_trained": len(scan.predictor.history),
                "best_validation_correlation": float(max(h["validation_correlation"] for h in scan.predictor.history)),
            }
        )
        if n_images >= MIN_SHARED:
            model_oracle = target_kinds.model_similarity_on(scan, scan.oracle_ids)
            metrics["r_model_vs_oracle"] = similarity_r(model_oracle, scan.oracle_similarity)
            extras["model_oracle"] = model_oracle
    if metrics["r_data_vs_oracle"] is None:
        metrics["unavailable"] = f"{metrics['n_oracle']} oracle image(s); Fig. 1D needs at least {MIN_SHARED}"
    return metrics, extras


def shared_repeats(scans, oracle_ids) -> list[np.ndarray]:
    """Each scan's responses to the shared oracle images, trimmed to the fewest repeats of any scan."""
    repeated = [s.recording.repeated_responses(oracle_ids) for s in scans]
    n_repeats = min(r.shape[1] for r in repeated)
    return [r[:, :n_repeats] for r in repeated]


def _mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def measure(context: BuildContext, *, primary_kind: str, per_scan, unavailable: dict, fit_models: bool,
            descriptions: dict[str, str]) -> dict[str, Any]:
    """The target report (without figures and timing): Fig. 1D, Fig. 1C and the ground-truth comparisons.

    Args:
        context: the build's context, its targets written (``context.written``).
        primary_kind: the kind at ``target/``.
        per_scan: ``scan_metrics(scan)[0]`` of each scan.
        unavailable: what could not be built or measured, and why.
        fit_models: whether the build fitted predictive models.
        descriptions: one line per written kind (the registry's).
    """
    scans, oracle_ids, experiment = context.scans, context.oracle_ids, context.experiment
    report: dict[str, Any] = {
        "kind": primary_kind,
        "n_stimuli": int(context.n_stimuli),
        "n_oracle_shared": int(oracle_ids.size),
        "n_images_shared": int(context.shared_ids.size),
        "simulated": bool(context.simulated),
        "label": SIMULATED_LABEL if context.simulated else "recorded data",
        "targets": dict(context.written),
        "kinds": descriptions,
        "r_data_vs_oracle": _mean_or_none(m["r_data_vs_oracle"] for m in per_scan),
        "r_model_vs_oracle": _mean_or_none(m.get("r_model_vs_oracle") for m in per_scan) if fit_models else None,
        "definitions": DEFINITIONS,
        "scans": list(per_scan),
        "stimuli": {k: v for k, v in context.stimulus_info.items() if k != "image_ids"},
    }
    if len(scans) >= 2 and "fluctuation_std_across_scans" not in unavailable:
        delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(
            shared_repeats(scans, oracle_ids), [s.weights for s in scans])
        report["fluctuation_std_across_scans"] = float(np.std(delta_scan))
        report["fluctuation_std_across_repeats"] = float(np.std(delta_repeat))
    elif len(scans) >= 2:
        report["fluctuation_std_across_scans"] = report["fluctuation_std_across_repeats"] = None
    if experiment is not None and not context.streamed:
        truth = context.truth_embedding()
        if context.shared_ids.size >= MIN_SHARED:
            truth_shared = similarity.stimulus_embedding(experiment.ground_truth_rates(context.shared_ids)).astype(np.float32)
            report["r_data_vs_truth"] = target_kinds.pair_correlation_from_embeddings(context.data_embedding(), truth_shared)
        if fit_models:
            report["r_model_vs_truth"] = target_kinds.pair_correlation_from_embeddings(context.model_embedding(), truth)
        if oracle_ids.size >= MIN_SHARED:
            truth_oracle = similarity.similarity_matrix(experiment.ground_truth_rates(oracle_ids))
            oracle_per_scan = [target_kinds.oracle_similarity_on(s, oracle_ids) for s in scans]
            report["oracle_images"] = {
                "r_oracle_vs_truth": float(np.mean([similarity_r(o, truth_oracle) for o in oracle_per_scan])),
            }
            if fit_models:
                report["oracle_images"]["r_model_vs_truth"] = float(
                    np.mean([similarity_r(target_kinds.model_similarity_on(s, oracle_ids), truth_oracle) for s in scans])
                )
    return report
