"""Recordings -> predictive models -> similarity targets, report and figures.

``build_targets`` is the library behind ``build_target.py``; it works the same
on real recordings (FileTree / HDF5, see ``recordings``) and on SIMULATED
ones (``simulation.simulate_experiment``), where it also measures how close
each target is to the noiseless ground truth.

``build_from_config`` does the same from a ``configs/build_target.py`` config: it is what
``build_target.py`` runs, and what ``train.py`` runs for its default SIMULATED target.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Callable, Sequence

import numpy as np

from neuroreg_tf import similarity, workdir as workdir_files
from neuroreg_tf.fileio import fingerprint, json_default, write_json_atomic
from neuroreg_tf.neural import figures, statistics, target_kinds
from neuroreg_tf.neural.predictive import PredictiveModelConfig, fit_predictive_model
from neuroreg_tf.neural.recordings import Recording, read_recording
from neuroreg_tf.neural.simulation import (
    SIMULATED_LABEL,
    SimulatedExperiment,
    simulate_experiment,
    write_experiment,
)
from neuroreg_tf.progress import Reporter, print_line, reporter

NEEDS_MODEL = ("neural_model", "shuffle", "random")


def similarity_r(first, second) -> float:
    """Pearson r over the i < j pairs of two similarity matrices (``similarity.pair_correlation``)."""
    return float(similarity.pair_correlation(np.asarray(first, np.float64), np.asarray(second, np.float64)))


def _scan_metrics(scan: target_kinds.ScanAnalysis) -> dict[str, Any]:
    """Fig. 1D for one scan: r(S_data, S_oracle) over trial pairs, r(S_model, S_oracle)."""
    n_images, n_repeats, _ = scan.repeated.shape
    oracle_upper = similarity.upper_triangle(scan.oracle_similarity)
    trial_pairs = statistics.trial_pair_similarities(scan.repeated, scan.weights)
    metrics = {
        "n_neurons": scan.recording.n_neurons,
        "median_oracle_correlation": float(np.median(scan.oracle_correlation)),
        "median_snr_weight": float(np.median(scan.weights)),
        "r_data_vs_oracle": float(np.corrcoef(np.repeat(oracle_upper, n_repeats**2), trial_pairs.reshape(-1))[0, 1]),
    }
    extras = {"oracle_upper": oracle_upper, "trial_pairs": trial_pairs}
    if scan.predictor is not None:
        ids, images, _ = scan.recording.unique_images()
        oracle_images = images[np.searchsorted(ids, scan.oracle_ids)]
        model_oracle = similarity.similarity_matrix(scan.predictor.predict_neutral(oracle_images), scan.model_weights)
        metrics.update(
            {
                "r_model_vs_oracle": similarity_r(model_oracle, scan.oracle_similarity),
                "mean_test_correlation": float(np.mean(scan.predictor.test_correlation)),
                "median_feve": float(np.nanmedian(scan.predictor.feve)),
                "epochs_trained": len(scan.predictor.history),
                "best_validation_correlation": float(
                    max(h["validation_correlation"] for h in scan.predictor.history)
                ),
            }
        )
        extras["model_oracle"] = model_oracle
    return metrics, extras


def build_targets(
    recordings: Sequence[Recording],
    out_dir: str,
    *,
    primary_kind: str = "neural_model",
    extra_kinds: Sequence[str] = ("neural_data", "oracle", "shuffle", "random"),
    predictor_config: PredictiveModelConfig | None = None,
    experiment: SimulatedExperiment | None = None,
    vgg_weights: str | None = None,
    make_figures: bool = True,
    target_path: str | None = None,
    seed: int = 0,
    log: Callable[[str], Any] | None = print,
) -> dict[str, Any]:
    """Builds similarity targets from one or more scans, with a report and figures.

    The primary target goes to ``out_dir/target``, the others to
    ``out_dir/targets/<kind>``; ``out_dir/target_report.json`` and
    ``out_dir/figures/*.png`` describe them.

    Args:
        recordings: the scans; they must share the stimuli and oracle images.
        out_dir: output directory.
        primary_kind: the kind written to ``out_dir/target``.
        extra_kinds: further kinds, each to ``out_dir/targets/<kind>``.
        predictor_config: predictive-model hyper-parameters.
        experiment: the ``SimulatedExperiment`` the recordings came from, if any;
            enables the ground-truth comparisons and the ``ground_truth`` kind.
        vgg_weights: VGG19 weights file, required for the ``vgg`` kind.
        make_figures: write the Fig. 1-like PNGs.
        target_path: where the primary target goes (default ``out_dir/target``).
        seed: seed of the shuffle and random controls.
        log: progress sink; None for silence.

    Returns:
        The report (also written as JSON).
    """
    log = log or (lambda message: None)
    kinds = [primary_kind] + [k for k in extra_kinds if k != primary_kind]
    unknown = [k for k in kinds if k not in target_kinds.RESPONSE_KINDS]
    if unknown:
        raise ValueError(f"Target kinds must be among {target_kinds.RESPONSE_KINDS}. Received: kinds={unknown}")
    if "ground_truth" in kinds and experiment is None:
        raise ValueError("The 'ground_truth' kind exists only for simulated experiments. Received: experiment=None")
    if "vgg" in kinds and not vgg_weights:
        raise ValueError(f"The 'vgg' kind needs VGG19 weights. {target_kinds.VGG_WEIGHTS_HELP} Received: vgg_weights={vgg_weights!r}")
    if not recordings:
        raise ValueError("Need at least one recording. Received: recordings=[]")
    simulated = any(r.simulated for r in recordings) or experiment is not None
    started = time.time()
    label = f" [{SIMULATED_LABEL}]" if simulated else ""
    log(f"Building targets {kinds} from {len(recordings)} scan(s){label}")

    oracle_ids = target_kinds.shared_oracle_ids(recordings)
    image_ids, images = target_kinds.shared_stimuli(recordings)
    scans = [target_kinds.analyse_scan(r, oracle_ids) for r in recordings]
    for h, scan in enumerate(scans):
        log(
            f"scan {h + 1}: {scan.recording.n_trials} trials, {scan.recording.n_neurons} neurons, "
            f"median oracle correlation {np.median(scan.oracle_correlation):.3f}"
        )
    fit_models = any(k in NEEDS_MODEL for k in kinds)
    if fit_models:
        for h, scan in enumerate(scans):
            log(f"scan {h + 1}/{len(scans)}: training the predictive model")
            scan.predictor = fit_predictive_model(scan.recording, predictor_config, log=log)

    provenance = {
        "n_scans": len(scans),
        "neurons_per_scan": [s.recording.n_neurons for s in scans],
        "image_ids": image_ids,
        "sources": [s.recording.metadata.get("source", "in-memory") for s in scans],
    }
    if experiment is not None:
        provenance["simulation"] = experiment.parameters
    embeddings: dict[str, np.ndarray] = {}
    log("computing embeddings")
    data_embedding = target_kinds.average_embeddings(target_kinds.data_embedding(s, image_ids) for s in scans)
    model_embedding = (
        target_kinds.average_embeddings(target_kinds.model_embedding(s, images) for s in scans) if fit_models else None
    )
    truth_embedding = None
    if experiment is not None:
        truth_embedding = similarity.stimulus_embedding(experiment.ground_truth_rates(image_ids)).astype(np.float32)

    written = {}
    for kind in kinds:
        if kind == primary_kind:
            path = target_path or os.path.join(out_dir, workdir_files.TARGET)
        else:
            path = os.path.join(out_dir, workdir_files.TARGETS, kind)
        extra = {}
        if kind == "neural_model":
            arrays = {"embedding": model_embedding}
            extra["method"] = "Eq 6: neutral-state predictions x w_a v_a, averaged over scans"
        elif kind == "neural_data":
            arrays = {"embedding": data_embedding}
            extra["method"] = "Eq 1-2 on the first single trial of each image, averaged over scans"
        elif kind == "shuffle":
            shuffled, permutation = target_kinds.shuffle_embedding(model_embedding, seed)
            arrays = {"embedding": shuffled}
            extra.update(method="neural_model target with stimulus identities permuted", permutation_seed=seed)
        elif kind == "random":
            spread = target_kinds.similarity_spread(model_embedding, seed=seed)
            arrays = {"embedding": target_kinds.random_embedding(len(image_ids), spread, seed)}
            extra.update(method="Eq 2 on Gaussian noise with the neural_model spread", spread=spread)
        elif kind == "ground_truth":
            arrays = {"embedding": truth_embedding}
            extra["method"] = "Eq 2 on the noiseless neutral-state rates of all recorded neurons"
        elif kind == "vgg":
            log(f"computing VGG19 {target_kinds.VGG_LAYER} features")
            arrays = {"embedding": target_kinds.vgg_embedding(images, vgg_weights)}
            extra.update(method=f"Eq 9 on VGG19 {target_kinds.VGG_LAYER} features", vgg_weights=vgg_weights)
        else:  # oracle
            ids, unique_images, _ = recordings[0].unique_images()
            target_kinds.write_target(
                path,
                kind,
                unique_images[np.searchsorted(ids, oracle_ids)],
                simulated=simulated,
                matrix=target_kinds.oracle_target_matrix(scans),
                provenance={**provenance, "image_ids": oracle_ids, "method": "Eq 3, averaged over scans"},
            )
            written[kind] = path
            log(f"wrote {kind} target ({oracle_ids.size} stimuli) to {path}")
            continue
        target_kinds.write_target(path, kind, images, simulated=simulated, provenance={**provenance, **extra}, **arrays)
        embeddings[kind] = arrays["embedding"]
        written[kind] = path
        log(f"wrote {kind} target ({len(image_ids)} stimuli) to {path}")

    log("measuring the targets (Fig. 1D)")
    per_scan, extras = zip(*(_scan_metrics(s) for s in scans))
    report: dict[str, Any] = {
        "kind": primary_kind,
        "n_stimuli": int(len(image_ids)),
        "n_oracle": int(oracle_ids.size),
        "simulated": bool(simulated),
        "label": SIMULATED_LABEL if simulated else "recorded data",
        "targets": written,
        "r_data_vs_oracle": float(np.mean([m["r_data_vs_oracle"] for m in per_scan])),
        "r_model_vs_oracle": (
            float(np.mean([m["r_model_vs_oracle"] for m in per_scan])) if fit_models else None
        ),
        "definitions": {
            "r_data_vs_oracle": "Pearson r over oracle pairs i < j between single-trial S_data (every repeat "
            "combination) and S_oracle (Eq 3), per scan, averaged over scans (Fig. 1D).",
            "r_model_vs_oracle": "Pearson r over oracle pairs i < j between S_model (Eq 6, neutral state) "
            "and S_oracle, per scan, averaged over scans (Fig. 1D).",
            "r_data_vs_truth": "Pearson r over all (or 200k sampled) stimulus pairs i < j between the "
            "neural_data target and the noiseless ground-truth similarity (simulated only).",
            "r_model_vs_truth": "As r_data_vs_truth, for the neural_model target.",
        },
        "scans": list(per_scan),
    }
    if len(scans) >= 2:
        delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(
            [s.repeated for s in scans], [s.weights for s in scans]
        )
        report["fluctuation_std_across_scans"] = float(np.std(delta_scan))
        report["fluctuation_std_across_repeats"] = float(np.std(delta_repeat))
    if truth_embedding is not None:
        report["r_data_vs_truth"] = target_kinds.pair_correlation_from_embeddings(data_embedding, truth_embedding)
        if fit_models:
            report["r_model_vs_truth"] = target_kinds.pair_correlation_from_embeddings(model_embedding, truth_embedding)
        truth_oracle = similarity.similarity_matrix(experiment.ground_truth_rates(oracle_ids))
        report["oracle_images"] = {
            "r_oracle_vs_truth": float(
                np.mean([similarity_r(s.oracle_similarity, truth_oracle) for s in scans])
            ),
        }
        if fit_models:
            report["oracle_images"]["r_model_vs_truth"] = float(
                np.mean([similarity_r(e["model_oracle"], truth_oracle) for e in extras])
            )
    if make_figures:
        figure_dir = os.path.join(out_dir, workdir_files.FIGURES)
        os.makedirs(figure_dir, exist_ok=True)
        paths = [
            figures.plot_similarity_matrices(
                os.path.join(figure_dir, "fig1ab_similarity_matrices.png"),
                [s.oracle_similarity for s in scans],
                [e["model_oracle"] for e in extras] if fit_models else None,
                simulated=simulated,
            )
        ]
        if len(scans) >= 2:
            paths.append(
                figures.plot_fluctuations(
                    os.path.join(figure_dir, "fig1c_fluctuations.png"), delta_scan, delta_repeat, simulated=simulated
                )
            )
        if fit_models:
            n_repeats = scans[0].repeated.shape[1]
            paths.append(
                figures.plot_scatter(
                    os.path.join(figure_dir, "fig1d_scatter.png"),
                    np.repeat(extras[0]["oracle_upper"], n_repeats**2),
                    extras[0]["trial_pairs"].reshape(-1),
                    (extras[0]["oracle_upper"], similarity.upper_triangle(extras[0]["model_oracle"])),
                    r_data=per_scan[0]["r_data_vs_oracle"],
                    r_model=per_scan[0]["r_model_vs_oracle"],
                    simulated=simulated,
                )
            )
        report["figures"] = paths
    report["seconds"] = round(time.time() - started, 1)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, workdir_files.TARGET_REPORT), "w") as f:
        json.dump(report, f, indent=2, default=json_default)
    log(f"wrote {os.path.join(out_dir, workdir_files.TARGET_REPORT)}")
    for key in ("r_data_vs_oracle", "r_model_vs_oracle", "r_data_vs_truth", "r_model_vs_truth"):
        if report.get(key) is not None:
            log(f"  {key} = {report[key]:.3f}")
    return report


def build_from_config(config, out_dir: str, *, progress: Reporter = print_line) -> dict[str, Any]:
    """Builds the targets a ``configs/build_target.py`` config describes into ``out_dir``.

    Reads ``config.recordings`` (FileTree folders / HDF5 files) or, when it is empty, simulates
    the ``config.simulation`` preset (SIMULATED V1), fits the predictive models and writes
    ``out_dir/target`` (``config.target.kind``), ``out_dir/targets/<kind>`` for
    ``config.target.extra_kinds`` (``ground_truth`` only for simulated data), the report and the
    figures. ``build_target.py`` is this function behind flags; ``train.py`` calls it for its
    default SIMULATED target.

    Args:
        config: the ConfigDict of ``configs/build_target.py``.
        out_dir: the build's workdir.
        progress: progress reporter (None: silent).

    Returns:
        The report (``out_dir/target_report.json``).
    """
    log = reporter(progress)
    os.makedirs(out_dir, exist_ok=True)
    experiment = None
    if config.recordings:
        paths = [p.strip() for p in config.recordings.split(",") if p.strip()]
        log(f"reading {len(paths)} recording(s)")
        scans = [read_recording(p) for p in paths]
    else:
        log(f"simulating V1 ({SIMULATED_LABEL}), preset {config.simulation.preset!r}")
        experiment = simulate_experiment(preset=config.simulation.preset, seed=config.simulation.seed)
        scans = experiment.recordings
        if config.simulation.save_recordings:
            recordings_dir = os.path.join(out_dir, workdir_files.RECORDINGS)
            write_experiment(recordings_dir, experiment)
            log(f"wrote {len(scans)} simulated scans and their ground truth to {recordings_dir}")
    requested = [k.strip() for k in config.target.extra_kinds.split(",") if k.strip()]
    extra_kinds = [k for k in requested if not (k == "ground_truth" and experiment is None)]
    return build_targets(
        scans,
        out_dir,
        primary_kind=config.target.kind,
        extra_kinds=extra_kinds,
        predictor_config=PredictiveModelConfig(**config.model.to_dict()),
        experiment=experiment,
        vgg_weights=config.vgg.weights or None,
        make_figures=config.figures,
        seed=config.target.seed,
        log=log,
    )


def _input_identity(path: str) -> dict:
    """What a build records of a recording file or folder: names, sizes and modification times."""
    entries = []
    if os.path.isdir(path):
        for root, directories, files in os.walk(path):
            directories.sort()
            for name in sorted(files):
                info = os.stat(os.path.join(root, name))
                entries.append([os.path.relpath(os.path.join(root, name), path), info.st_size, info.st_mtime_ns])
    elif os.path.exists(path):
        info = os.stat(path)
        entries.append([os.path.basename(path), info.st_size, info.st_mtime_ns])
    return {"path": os.path.abspath(path), "files": fingerprint(entries)}


def build_identity(config) -> dict:
    """A target build's identity: its config (without ``overwrite``) and its recordings' files."""
    relevant = {key: value for key, value in config.to_dict().items() if key != "overwrite"}
    paths = [p.strip() for p in str(config.get("recordings", "")).split(",") if p.strip()]
    return {"kind": "target build", "config": relevant, "recordings": [_input_identity(p) for p in paths]}


_BUILD_OUTPUTS = (
    workdir_files.TARGET, workdir_files.TARGETS, workdir_files.FIGURES, workdir_files.RECORDINGS,
    workdir_files.TARGET_REPORT,
)


def ensure_built(config, out_dir: str, *, progress: Reporter = print_line) -> str:
    """Claims ``out_dir`` for the build ``config`` describes, builds unless already finished.

    A finished build of the same config and recordings is reused; an interrupted one is built
    again from scratch (its partial outputs removed first; building is deterministic); a
    build of another config is refused unless ``config.overwrite`` (``workdir.claim``).

    Returns:
        The primary target's path, ``out_dir/target``.
    """
    log = reporter(progress)
    status = workdir_files.claim(
        out_dir, build_identity(config), what="target build",
        finished_marker=workdir_files.TARGET_REPORT, overwrite=bool(config.get("overwrite", False)),
    )
    target_path = os.path.join(out_dir, workdir_files.TARGET)
    if status == workdir_files.FINISHED:
        log(f"{out_dir} already holds this target build (same config and recordings); reusing it.")
        return target_path
    if status == workdir_files.RESUME:
        log(f"{out_dir} holds an unfinished build of this config: building it again from the start.")
        for name in _BUILD_OUTPUTS:
            leftover = os.path.join(out_dir, name)
            if os.path.isdir(leftover):
                shutil.rmtree(leftover)
            elif os.path.exists(leftover):
                os.remove(leftover)
    write_json_atomic(os.path.join(out_dir, workdir_files.CONFIG), config.to_dict())
    build_from_config(config, out_dir, progress=progress)
    return target_path
