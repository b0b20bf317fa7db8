"""Recordings -> predictive models -> similarity targets, report and figures.

``build_targets`` is the library behind ``build_target.py``; it works the same
on real recordings (FileTree folders or zips / HDF5, see ``recordings``) and on
SIMULATED ones (``simulation.simulate_experiment``), where it also measures how
close each target is to the noiseless ground truth.

Scans need not have seen the same images. Each scan's weights (Eq 1), oracle
similarity (Eq 3) and Fig. 1D numbers come from its own repeated images. The
Neural (model) target is built on any stimulus set: by default every image any
scan saw, or a folder / array of images none of them saw (``stimuli``, streamed
to disk): each scan's model predicts its neurons' responses to every stimulus and
the scans' embeddings are averaged. What needs the same images in every scan --
the Neural (data) target (shared images), the oracle target, Fig. 1A/B and the
across-scan fluctuation of Fig. 1C (shared oracle images) -- is reported as
unavailable, with the reason, when the scans do not share enough images.

``check_build_config`` validates a ``configs/build_target.py`` config and
``build_from_config`` runs it: what ``build_target.py`` does, and what
``train.py`` runs for its default SIMULATED target.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Sequence

import numpy as np

from neuroreg_tf import similarity, workdir as workdir_files
from neuroreg_tf.errors import ConfigError, InputError
from neuroreg_tf.fileio import fingerprint, write_json_atomic
from neuroreg_tf.neural import figures, statistics, target_kinds
from neuroreg_tf.neural.predictive import READOUTS, PredictiveModelConfig, fit_predictive_models
from neuroreg_tf.neural.recordings import (
    ReadOptions,
    Recording,
    check_ids_agree_across_scans,
    read_recording,
)
from neuroreg_tf.neural.recordings import formats as recording_formats
from neuroreg_tf.neural.recordings import images as image_ops
from neuroreg_tf.neural.recordings import treatments
from neuroreg_tf.neural.simulation import (
    PRESETS,
    SIMULATED_LABEL,
    SimulatedExperiment,
    simulate_experiment,
    write_experiment,
)
from neuroreg_tf.neural.stimulus_sets import StimulusSet, open_stimulus_set, prepare_to_file
from neuroreg_tf.progress import Reporter, print_line, reporter

NEEDS_MODEL = ("neural_model", "shuffle", "random")
# Kinds that exist with a stimulus set of its own (``stimuli``): the model target and its controls
# on that set, and the recorded-image targets (neural_data, oracle) on the images the scans saw.
STREAMABLE_KINDS = ("neural_model", "shuffle", "random", "vgg", "neural_data", "oracle")
MIN_SHARED = 3
PREPARED_STIMULI = ".stimuli_prepared.npy"
STIMULUS_NAMES = "stimulus_names.txt"


def similarity_r(first, second) -> float:
    """Pearson r over the i < j pairs of two similarity matrices (``similarity.pair_correlation``)."""
    return float(similarity.pair_correlation(np.asarray(first, np.float64), np.asarray(second, np.float64)))


def _scan_metrics(scan: target_kinds.ScanAnalysis) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fig. 1D for one scan on its own oracle images: r(S_data, S_oracle) over trial pairs, r(S_model, S_oracle)."""
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
            ids, images, _ = scan.recording.unique_images()
            oracle_images = images[np.searchsorted(ids, scan.oracle_ids)]
            model_oracle = similarity.similarity_matrix(scan.predictor.predict_neutral(oracle_images), scan.model_weights)
            metrics["r_model_vs_oracle"] = similarity_r(model_oracle, scan.oracle_similarity)
            extras["model_oracle"] = model_oracle
    return metrics, extras


def _mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


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
    stimuli: StimulusSet | None = None,
    predictors: Sequence[Any] | None = None,
    workers: int | None = None,
    chunk: int = 4096,
    projection_dims: int | None = None,
    log: Callable[[str], Any] | None = print,
) -> dict[str, Any]:
    """Builds similarity targets from one or more scans, with a report and figures.

    The primary target goes to ``out_dir/target``, the others to
    ``out_dir/targets/<kind>``; ``out_dir/target_report.json`` and
    ``out_dir/figures/*.png`` describe them.

    Args:
        recordings: the scans; they may have seen different images (ids must name the
            same image in every scan that shows it).
        out_dir: output directory.
        primary_kind: the kind written to ``out_dir/target``.
        extra_kinds: further kinds, each to ``out_dir/targets/<kind>``; an extra kind the
            scans cannot support (e.g. ``neural_data`` without shared images) is skipped
            and listed under ``unavailable`` in the report.
        predictor_config: predictive-model hyper-parameters.
        experiment: the ``SimulatedExperiment`` the recordings came from, if any;
            enables the ground-truth comparisons and the ``ground_truth`` kind.
        vgg_weights: VGG19 weights file, required for the ``vgg`` kind.
        make_figures: write the Fig. 1-like PNGs.
        target_path: where the primary target goes (default ``out_dir/target``).
        seed: seed of the shuffle and random controls.
        stimuli: a stimulus set (``stimulus_sets.open_stimulus_set``) for the Neural (model)
            target and its controls, streamed to disk; default: every image any scan saw.
        predictors: already fitted predictive models, one per scan (skips fitting).
        workers: processes fitting the predictive models at once (``fit_predictive_models``;
            None: one per scan; 0: in this process, not reproducible bit for bit).
        chunk: stimuli per chunk when streaming.
        projection_dims: random-projection dimension of a streamed embedding (None: exact).
        log: progress sink; None for silence.

    Returns:
        The report (also written as JSON).

    Raises:
        ConfigError: an unknown or impossible kind.
        InputError: recordings that cannot give the primary kind.
    """
    log = log or (lambda message: None)
    kinds = [primary_kind] + [k for k in extra_kinds if k != primary_kind]
    unknown = [k for k in kinds if k not in target_kinds.RESPONSE_KINDS]
    if unknown:
        raise ConfigError(f"Target kinds must be among {target_kinds.RESPONSE_KINDS}. Received: kinds={unknown}")
    if "ground_truth" in kinds and experiment is None:
        raise ConfigError("The 'ground_truth' kind exists only for simulated experiments. Received: experiment=None")
    if "vgg" in kinds and not vgg_weights:
        raise ConfigError(f"The 'vgg' kind needs VGG19 weights. {target_kinds.VGG_WEIGHTS_HELP} Received: vgg_weights={vgg_weights!r}")
    if stimuli is not None and (primary_kind != "neural_model" or set(kinds) - set(STREAMABLE_KINDS)):
        raise ConfigError(
            f"On a stimulus set of its own (stimuli=...) the primary kind must be 'neural_model' and the others "
            f"among {STREAMABLE_KINDS}. "
            f"Received: kinds={kinds}"
        )
    if not recordings:
        raise InputError("Need at least one recording. Received: recordings=[]")
    if predictors is not None and len(predictors) != len(recordings):
        raise ValueError(f"Need one predictor per scan. Received: {len(predictors)} for {len(recordings)} scans")
    simulated = any(r.simulated for r in recordings) or experiment is not None
    started = time.time()
    label = f" [{SIMULATED_LABEL}]" if simulated else ""
    log(f"Building targets {kinds} from {len(recordings)} scan(s){label}")

    shapes = {r.image_shape for r in recordings}
    if len(shapes) != 1:
        raise InputError(
            "Every scan's images must have the same size to share a predictive-model input; read them with "
            "one ImageOptions.size (build_target.py: --config.images.size=36,64). Received: sizes "
            + ", ".join(f"{r.source}: {r.image_shape[0]}x{r.image_shape[1]}" for r in recordings)
        )
    check_ids_agree_across_scans(recordings)
    if stimuli is not None and stimuli.shape != recordings[0].image_shape:
        raise InputError(
            f"The stimulus set {stimuli.path} is prepared to {stimuli.shape[0]}x{stimuli.shape[1]} but the scans' "
            f"images are {recordings[0].image_shape[0]}x{recordings[0].image_shape[1]}; read both with the same "
            f"ImageOptions.size. Received: stimuli shape {stimuli.shape}"
        )
    scans = [target_kinds.analyse_scan(r) for r in recordings]
    for h, scan in enumerate(scans):
        log(
            f"scan {h + 1}: {scan.recording.n_trials} trials, {scan.recording.n_neurons} neurons, "
            f"{scan.oracle_ids.size} oracle images, median oracle correlation {np.median(scan.oracle_correlation):.3f}"
        )
    oracle_ids = target_kinds.shared_oracle_ids(recordings)
    shared_ids, shared_images = target_kinds.shared_stimuli(recordings)
    union_ids, union_images = target_kinds.union_stimuli(recordings)
    unavailable: dict[str, str] = {}
    if len(scans) >= 2 and oracle_ids.size < MIN_SHARED:
        reason = (
            f"the scans share {oracle_ids.size} repeated (oracle) image(s); comparing scans needs at least {MIN_SHARED}"
        )
        for key in ("oracle", "fluctuation_std_across_scans", "fluctuation_std_across_repeats", "fig1ab_similarity_matrices", "fig1c_fluctuations"):
            unavailable[key] = reason
    if shared_ids.size < MIN_SHARED:
        unavailable["neural_data"] = (
            f"the scans share {shared_ids.size} image(s); Neural (data) needs the responses of every scan to at "
            f"least {MIN_SHARED} common images"
        )
    if primary_kind in unavailable:
        raise InputError(
            f"The primary target {primary_kind!r} cannot be built from these scans: {unavailable[primary_kind]}. "
            "Choose --config.target.kind=neural_model (any stimulus set). Received: "
            + ", ".join(r.source for r in recordings)
        )
    skipped = [k for k in kinds if k in unavailable]
    kinds = [k for k in kinds if k not in unavailable]
    for kind in skipped:
        log(f"skipping the {kind} target: {unavailable[kind]}")

    fit_models = any(k in NEEDS_MODEL for k in kinds)
    if fit_models:
        if predictors is None:
            predictors = fit_predictive_models(
                [scan.recording for scan in scans], predictor_config, workers=workers, log=log
            )
        for scan, predictor in zip(scans, predictors):
            scan.predictor = predictor

    provenance: dict[str, Any] = {
        "n_scans": len(scans),
        "neurons_per_scan": [s.recording.n_neurons for s in scans],
        "sources": [s.recording.source for s in scans],
    }
    treatments_applied = {s.recording.source: s.recording.metadata["treatments"] for s in scans if s.recording.metadata.get("treatments")}
    if treatments_applied:
        provenance["read_treatments"] = treatments_applied
    if experiment is not None:
        provenance["simulation"] = experiment.parameters
    os.makedirs(out_dir, exist_ok=True)
    log("computing embeddings")
    data_embedding = None
    if "neural_data" in kinds or (experiment is not None and shared_ids.size >= MIN_SHARED):
        data_embedding = target_kinds.average_embeddings(target_kinds.data_embedding(s, shared_ids) for s in scans)
    model_embedding = None
    stimulus_info: dict[str, Any]
    prepared_path = None
    if stimuli is not None:
        prepared_path = os.path.join(out_dir, PREPARED_STIMULI)
        log(f"preparing {stimuli.n} stimuli from {stimuli.path}")
        prepared = prepare_to_file(stimuli, prepared_path, chunk=chunk)
        stimuli_fn = lambda start, stop: np.asarray(prepared[start:stop])  # noqa: E731
        n_stimuli = stimuli.n
        stimulus_info = {"stimuli_source": os.path.abspath(stimuli.path), "stimuli_order": "sorted file names" if stimuli.names else "array order"}
        if stimuli.names:
            with open(os.path.join(out_dir, STIMULUS_NAMES), "w") as f:
                f.write("\n".join(stimuli.names) + "\n")
    else:
        prepared = union_images
        stimuli_fn = lambda start, stop: union_images[start:stop]  # noqa: E731
        n_stimuli = int(union_ids.size)
        stimulus_info = {"image_ids": union_ids, "stimuli_source": "every image the scans saw"}
        if fit_models:
            model_embedding = target_kinds.average_embeddings(target_kinds.model_embedding(s, union_images) for s in scans)
    truth_embedding = None
    if experiment is not None and stimuli is None:
        truth_embedding = similarity.stimulus_embedding(experiment.ground_truth_rates(union_ids)).astype(np.float32)

    written: dict[str, str] = {}
    model_target = None
    try:
        for kind in kinds:
            path = (target_path or os.path.join(out_dir, workdir_files.TARGET)) if kind == primary_kind else os.path.join(out_dir, workdir_files.TARGETS, kind)
            extra: dict[str, Any] = {}
            if kind == "oracle":
                ids, unique_images, _ = union_ids, union_images, None
                target_kinds.write_target(
                    path,
                    kind,
                    unique_images[np.searchsorted(ids, oracle_ids)],
                    simulated=simulated,
                    matrix=_oracle_matrix(scans, oracle_ids),
                    provenance={**provenance, "image_ids": oracle_ids, "method": "Eq 3 on the shared oracle images, averaged over scans"},
                )
                written[kind] = path
                log(f"wrote {kind} target ({oracle_ids.size} stimuli) to {path}")
                continue
            if kind == "neural_data":
                target_kinds.write_target(
                    path, kind, shared_images, simulated=simulated, embedding=data_embedding,
                    provenance={**provenance, "image_ids": shared_ids, "method": "Eq 1-2 on the first single trial of each image shown in every scan, averaged over scans"},
                )
                written[kind] = path
                log(f"wrote {kind} target ({shared_ids.size} stimuli) to {path}")
                continue
            if stimuli is not None:
                written[kind] = _streamed_kind(kind, path, scans, stimuli_fn, n_stimuli, recordings[0].image_shape, model_target,
                                               simulated=simulated, seed=seed, chunk=chunk, projection_dims=projection_dims,
                                               vgg_weights=vgg_weights, prepared=prepared,
                                               provenance={**provenance, **stimulus_info}, log=log)
                if kind == "neural_model":
                    model_target = written[kind]
                log(f"wrote {kind} target ({n_stimuli} stimuli) to {written[kind]}")
                continue
            if kind == "neural_model":
                arrays = {"embedding": model_embedding}
                extra["method"] = "Eq 6: neutral-state predictions x w_a v_a, averaged over scans"
            elif kind == "shuffle":
                shuffled, _ = target_kinds.shuffle_embedding(model_embedding, seed)
                arrays = {"embedding": shuffled}
                extra.update(method="neural_model target with stimulus identities permuted", permutation_seed=seed)
            elif kind == "random":
                spread = target_kinds.similarity_spread(model_embedding, seed=seed)
                arrays = {"embedding": target_kinds.random_embedding(n_stimuli, spread, seed)}
                extra.update(method="Eq 2 on Gaussian noise with the neural_model spread", spread=spread)
            elif kind == "ground_truth":
                arrays = {"embedding": truth_embedding}
                extra["method"] = "Eq 2 on the noiseless neutral-state rates of all recorded neurons"
            elif kind == "gabor_v1":
                arrays = {"embedding": target_kinds.gabor_v1_embedding(union_images)}
                extra.update(
                    method="Eq 2 on a fixed, noiseless Gabor filter bank (simple and complex cells)",
                    n_filters=target_kinds.GABOR_NEURONS, filter_seed=target_kinds.GABOR_SEED,
                )
            elif kind == "pixel":
                arrays = {"embedding": target_kinds.pixel_embedding(union_images)}
                extra["method"] = "Eq 2 on the stimuli's pixels"
            else:  # vgg
                log(f"computing VGG19 {target_kinds.VGG_LAYER} features")
                arrays = {"embedding": target_kinds.vgg_embedding(union_images, vgg_weights)}
                extra.update(method=f"Eq 9 on VGG19 {target_kinds.VGG_LAYER} features", vgg_weights=vgg_weights)
            target_kinds.write_target(path, kind, union_images, simulated=simulated, provenance={**provenance, **stimulus_info, **extra}, **arrays)
            written[kind] = path
            log(f"wrote {kind} target ({n_stimuli} stimuli) to {path}")
    finally:
        if prepared_path and os.path.exists(prepared_path):
            del prepared
            os.remove(prepared_path)

    log("measuring the targets (Fig. 1D)")
    per_scan, extras = zip(*(_scan_metrics(s) for s in scans))
    for metrics in per_scan:
        if metrics["r_data_vs_oracle"] is None:
            metrics["unavailable"] = f"{metrics['n_oracle']} oracle image(s); Fig. 1D needs at least {MIN_SHARED}"
    report: dict[str, Any] = {
        "kind": primary_kind,
        "n_stimuli": int(n_stimuli),
        "n_oracle_shared": int(oracle_ids.size),
        "n_images_shared": int(shared_ids.size),
        "simulated": bool(simulated),
        "label": SIMULATED_LABEL if simulated else "recorded data",
        "targets": written,
        "r_data_vs_oracle": _mean_or_none(m["r_data_vs_oracle"] for m in per_scan),
        "r_model_vs_oracle": _mean_or_none(m.get("r_model_vs_oracle") for m in per_scan) if fit_models else None,
        "definitions": {
            "r_data_vs_oracle": "Pearson r over oracle pairs i < j between single-trial S_data (every repeat "
            "combination) and S_oracle (Eq 3), per scan on its own oracle images, averaged over the scans "
            "where it is available (Fig. 1D).",
            "r_model_vs_oracle": "Pearson r over oracle pairs i < j between S_model (Eq 6, neutral state) "
            "and S_oracle, per scan on its own oracle images, averaged over scans (Fig. 1D).",
            "r_data_vs_truth": "Pearson r over all (or 200k sampled) stimulus pairs i < j between the "
            "neural_data target and the noiseless ground-truth similarity (simulated only).",
            "r_model_vs_truth": "As r_data_vs_truth, for the neural_model target.",
            "unavailable": "what could not be computed from these scans, and why (never reported as 0).",
        },
        "scans": list(per_scan),
        "stimuli": {k: v for k, v in stimulus_info.items() if k != "image_ids"},
    }
    if len(scans) >= 2 and "fluctuation_std_across_scans" not in unavailable:
        repeated = _shared_repeats(scans, oracle_ids)
        delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(repeated, [s.weights for s in scans])
        report["fluctuation_std_across_scans"] = float(np.std(delta_scan))
        report["fluctuation_std_across_repeats"] = float(np.std(delta_repeat))
    elif len(scans) >= 2:
        report["fluctuation_std_across_scans"] = report["fluctuation_std_across_repeats"] = None
    if truth_embedding is not None:
        if data_embedding is not None:
            truth_shared = similarity.stimulus_embedding(experiment.ground_truth_rates(shared_ids)).astype(np.float32)
            report["r_data_vs_truth"] = target_kinds.pair_correlation_from_embeddings(data_embedding, truth_shared)
        if model_embedding is not None:
            report["r_model_vs_truth"] = target_kinds.pair_correlation_from_embeddings(model_embedding, truth_embedding)
        if oracle_ids.size >= MIN_SHARED:
            truth_oracle = similarity.similarity_matrix(experiment.ground_truth_rates(oracle_ids))
            oracle_per_scan = [_oracle_similarity_on(s, oracle_ids) for s in scans]
            report["oracle_images"] = {
                "r_oracle_vs_truth": float(np.mean([similarity_r(o, truth_oracle) for o in oracle_per_scan])),
            }
            if fit_models:
                report["oracle_images"]["r_model_vs_truth"] = float(
                    np.mean([similarity_r(_model_similarity_on(s, oracle_ids), truth_oracle) for s in scans])
                )
    if make_figures:
        report["figures"], report["fig1d_labels"] = _figures(out_dir, scans, per_scan, extras, report, oracle_ids, unavailable, simulated, fit_models)
    if unavailable:
        report["unavailable"] = unavailable
    report["seconds"] = round(time.time() - started, 1)
    write_json_atomic(os.path.join(out_dir, workdir_files.TARGET_REPORT), report)
    log(f"wrote {os.path.join(out_dir, workdir_files.TARGET_REPORT)}")
    for key in ("r_data_vs_oracle", "r_model_vs_oracle", "r_data_vs_truth", "r_model_vs_truth"):
        if key in report:
            log(f"  {key} = {'unavailable' if report[key] is None else f'{report[key]:.3f}'}")
    for key, reason in unavailable.items():
        log(f"  {key}: unavailable ({reason})")
    return report


def _shared_repeats(scans, oracle_ids) -> list[np.ndarray]:
    """Each scan's responses to the shared oracle images, trimmed to the fewest repeats of any scan."""
    repeated = [s.recording.repeated_responses(oracle_ids) for s in scans]
    n_repeats = min(r.shape[1] for r in repeated)
    return [r[:, :n_repeats] for r in repeated]


def _oracle_similarity_on(scan, oracle_ids) -> np.ndarray:
    return similarity.oracle_similarity(scan.recording.repeated_responses(oracle_ids), scan.weights)


def _model_similarity_on(scan, image_ids) -> np.ndarray:
    ids, images, _ = scan.recording.unique_images()
    return similarity.similarity_matrix(scan.predictor.predict_neutral(images[np.searchsorted(ids, image_ids)]), scan.model_weights)


def _oracle_matrix(scans, oracle_ids) -> np.ndarray:
    """Mean over scans of S_oracle (Eq 3) on the shared oracle images, clipped, unit diagonal."""
    matrix = np.mean([_oracle_similarity_on(s, oracle_ids) for s in scans], axis=0)
    matrix = np.clip((matrix + matrix.T) / 2.0, -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)
    return matrix


def _streamed_kind(kind, path, scans, stimuli_fn, n_stimuli, shape, model_target, *, simulated, seed, chunk,
                   projection_dims, vgg_weights, prepared, provenance, log) -> str:
    """One kind on a streamed stimulus set: the model target streamed, its controls from its rows."""
    from neuroreg_tf import targets
    from neuroreg_tf.neural import streaming

    if kind == "neural_model":
        return target_kinds.stream_model_target(
            path, scans, stimuli_fn, n_stimuli, shape, simulated=simulated, projection_dims=projection_dims,
            chunk=chunk, provenance=provenance, log=log,
        )
    if kind == "vgg":
        embedding = target_kinds.vgg_embedding(prepared, vgg_weights)
        return target_kinds.write_target(path, kind, np.asarray(prepared), simulated=simulated, embedding=embedding,
                                         provenance={**provenance, "method": f"Eq 9 on VGG19 {target_kinds.VGG_LAYER} features"})
    if model_target is None:
        raise ConfigError(f"The {kind!r} control is made from the neural_model target; build that first. Received: kinds without it")
    embedding = targets.load_target(model_target).embedding
    metadata = dict(provenance)
    if simulated:
        metadata["label"] = SIMULATED_LABEL
    if kind == "shuffle":
        permutation = np.random.default_rng(seed).permutation(n_stimuli)

        def rows_fn(start, stop):
            wanted = permutation[start:stop]
            ordered = np.sort(wanted)  # memory-mapped rows are read in file order
            return np.asarray(embedding[ordered])[np.searchsorted(ordered, wanted)]

        metadata.update(method="neural_model target with stimulus identities permuted", permutation_seed=seed)
        dims = embedding.shape[1]
    else:  # random
        spread = target_kinds.similarity_spread(embedding, seed=seed)
        noise = target_kinds.random_embedding(n_stimuli, spread, seed)
        rows_fn = lambda start, stop: noise[start:stop]  # noqa: E731
        metadata.update(method="Eq 2 on Gaussian noise with the neural_model spread", spread=spread)
        dims = noise.shape[1]
    return streaming.stream_rows_target(
        path, n_stimuli=n_stimuli, stimulus_shape=shape, stimuli_fn=stimuli_fn, rows_fn=rows_fn, dims=dims,
        kind=kind, simulated=simulated, metadata=metadata, chunk=chunk,
    )


def _short_source(source: str) -> str:
    """``/data/static1.zip:static1`` -> ``static1``; ``/data/scan.h5`` -> ``scan.h5``."""
    source = str(source).split(".zip:")[0].rstrip("/")
    return os.path.basename(source[:-4] if source.endswith(".zip") else source)


def _figures(out_dir, scans, per_scan, extras, report, oracle_ids, unavailable, simulated, fit_models):
    figure_dir = os.path.join(out_dir, workdir_files.FIGURES)
    os.makedirs(figure_dir, exist_ok=True)
    paths, labels = [], None
    if "fig1ab_similarity_matrices" not in unavailable:
        ids = oracle_ids if len(scans) >= 2 else scans[0].oracle_ids
        if ids.size >= MIN_SHARED:
            paths.append(
                figures.plot_similarity_matrices(
                    os.path.join(figure_dir, "fig1ab_similarity_matrices.png"),
                    [_oracle_similarity_on(s, ids) for s in scans],
                    [_model_similarity_on(s, ids) for s in scans] if fit_models else None,
                    simulated=simulated,
                )
            )
    if len(scans) >= 2 and report.get("fluctuation_std_across_scans") is not None:
        delta_scan, delta_repeat = statistics.scan_and_repeat_fluctuations(_shared_repeats(scans, oracle_ids), [s.weights for s in scans])
        paths.append(figures.plot_fluctuations(os.path.join(figure_dir, "fig1c_fluctuations.png"), delta_scan, delta_repeat, simulated=simulated))
    if fit_models:
        panels = []
        for h, (scan, metrics, extra) in enumerate(zip(scans, per_scan, extras)):
            if metrics["r_data_vs_oracle"] is None or "model_oracle" not in extra:
                continue
            n_repeats = scan.repeated.shape[1]
            panels.append(
                figures.ScatterPanel(
                    title=f"scan {h + 1}: {_short_source(metrics['source'])}\n({metrics['n_oracle']} oracle images)",
                    oracle_pairs=np.repeat(extra["oracle_upper"], n_repeats**2),
                    data_pairs=extra["trial_pairs"].reshape(-1),
                    model_pairs=(extra["oracle_upper"], similarity.upper_triangle(extra["model_oracle"])),
                    r_data=metrics["r_data_vs_oracle"],
                    r_model=metrics["r_model_vs_oracle"],
                )
            )
        if panels:
            path, labels = figures.plot_scatter(
                os.path.join(figure_dir, "fig1d_scatter.png"),
                panels,
                r_data=report["r_data_vs_oracle"],
                r_model=report["r_model_vs_oracle"],
                simulated=simulated,
            )
            paths.append(path)
    return paths, labels


# ----------------------------------------------------------------------------
# configs/build_target.py
# ----------------------------------------------------------------------------

_CONFIG_KEYS = {
    "recordings", "stimuli", "simulation", "target", "model", "vgg", "figures", "images", "read", "streaming",
    "overwrite",
}


def _config_error(key: str, message: str, value) -> ConfigError:
    return ConfigError(f"config.{key}: {message} Received: config.{key}={value!r}")


def _kinds(text: str) -> list[str]:
    return [k.strip() for k in str(text).split(",") if k.strip()]


def _paths(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def check_build_config(config) -> None:
    """Validates every key of a ``configs/build_target.py`` config before any work starts.

    Raises:
        ConfigError: one or two lines naming the key (e.g. ``config.target.kind``), the accepted
            values and the value received.
    """
    unknown = sorted(set(config.keys()) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown}; the build config has {sorted(_CONFIG_KEYS)}. Received: {unknown}")
    for path in _paths(config.recordings):
        if not os.path.exists(path):
            raise _config_error("recordings", f"no recording at {path!r}; give comma-separated paths, each {recording_formats.described()}.", config.recordings)
        if recording_formats.find_format(path) is None:
            raise _config_error("recordings", f"{path!r} is not {recording_formats.described()}.", config.recordings)
    if config.stimuli:
        if not os.path.exists(config.stimuli):
            raise _config_error("stimuli", "no stimulus set there; give a folder of images or a .npy/.npz file (or '' for the images the scans saw).", config.stimuli)
        if not (os.path.isdir(config.stimuli) or str(config.stimuli).endswith((".npy", ".npz"))):
            raise _config_error("stimuli", "must be a folder of images or a .npy/.npz file.", config.stimuli)
    if config.simulation.preset not in PRESETS:
        raise _config_error("simulation.preset", f"must be one of {sorted(PRESETS)}.", config.simulation.preset)
    if int(config.simulation.seed) < 0:
        raise _config_error("simulation.seed", "must be >= 0.", config.simulation.seed)
    if not 0.0 <= float(config.simulation.complex_fraction) <= 1.0:
        raise _config_error("simulation.complex_fraction", "must be in [0, 1].", config.simulation.complex_fraction)
    low, high = (float(v) for v in config.simulation.wavelength_range)
    if not 0 < low <= high:
        raise _config_error("simulation.wavelength_range", "must be (low, high) pixels with 0 < low <= high.", config.simulation.wavelength_range)
    if not float(config.simulation.rate_scale) > 0:
        raise _config_error("simulation.rate_scale", "must be > 0.", config.simulation.rate_scale)
    for name, minimum in (("neurons_per_scan", 2), ("n_scans", 1)):
        if 0 < int(config.simulation[name]) < minimum or int(config.simulation[name]) < 0:
            raise _config_error(f"simulation.{name}", f"must be 0 (the preset's) or at least {minimum}.", config.simulation[name])
    if config.simulation.save_recordings and config.recordings:
        raise _config_error("simulation.save_recordings", "saves SIMULATED scans; with config.recordings set nothing is simulated (set it False).", True)
    kinds = target_kinds.RESPONSE_KINDS
    if config.target.kind not in kinds:
        raise _config_error("target.kind", f"must be one of {kinds}.", config.target.kind)
    extra = _kinds(config.target.extra_kinds)
    bad = [k for k in extra if k not in kinds]
    if bad:
        raise _config_error("target.extra_kinds", f"comma-separated kinds among {kinds}; {bad} unknown.", config.target.extra_kinds)
    requested = [config.target.kind, *extra]
    if "ground_truth" in requested and config.recordings:
        raise _config_error(
            "target.extra_kinds" if config.target.kind != "ground_truth" else "target.kind",
            "'ground_truth' exists only for SIMULATED data; with config.recordings drop it "
            "(e.g. --config.target.extra_kinds=neural_data,oracle,shuffle,random).",
            config.target.extra_kinds if config.target.kind != "ground_truth" else config.target.kind,
        )
    if "vgg" in requested and not config.vgg.weights:
        raise _config_error("vgg.weights", f"the 'vgg' kind needs a VGG19 weights file. {target_kinds.VGG_WEIGHTS_HELP}", config.vgg.weights)
    if config.vgg.weights and not os.path.isfile(config.vgg.weights):
        raise _config_error("vgg.weights", "no such file.", config.vgg.weights)
    if config.stimuli:
        if config.target.kind != "neural_model":
            raise _config_error("target.kind", "must be 'neural_model' with config.stimuli: only a predictive model responds to images no scan saw.", config.target.kind)
        bad = [k for k in extra if k not in STREAMABLE_KINDS]
        if bad:
            raise _config_error("target.extra_kinds", f"with config.stimuli only {STREAMABLE_KINDS} exist; drop {bad}.", config.target.extra_kinds)
    if int(config.target.seed) < 0:
        raise _config_error("target.seed", "must be >= 0.", config.target.seed)
    if config.model.readout not in READOUTS:
        raise _config_error("model.readout", f"must be one of {READOUTS}.", config.model.readout)
    for name in ("channels", "input_kernel", "hidden_kernel", "readout_pool", "batch_size", "max_epochs", "patience"):
        if int(config.model[name]) < 1:
            raise _config_error(f"model.{name}", "must be a positive integer.", config.model[name])
    for name in ("laplace_weight", "readout_l1"):
        if float(config.model[name]) < 0:
            raise _config_error(f"model.{name}", "must be >= 0.", config.model[name])
    if not float(config.model.learning_rate) > 0:
        raise _config_error("model.learning_rate", "must be > 0.", config.model.learning_rate)
    if int(config.model.seed) < 0:
        raise _config_error("model.seed", "must be >= 0.", config.model.seed)
    if int(config.model.workers) < -1:
        raise _config_error("model.workers", "must be -1 (one process per scan), 0 (in-process) or a positive count.", config.model.workers)
    try:
        image_ops.ImageOptions(color=config.images.color, size=image_ops.parse_size(config.images.size),
                               scale=config.images.get("scale", "auto"))
    except image_ops.ImageFormatError as error:
        key = "images.color" if "color" in str(error) else "images.scale" if "scale" in str(error) else "images.size"
        raise _config_error(key, str(error).split(" Received:")[0], config.images[key.split(".")[1]]) from None
    for name, accepted in (("dead_neurons", treatments.DEAD_NEURONS), ("nonfinite", treatments.NONFINITE), ("unknown_tiers", treatments.UNKNOWN_TIERS)):
        if config.read[name] not in accepted:
            raise _config_error(f"read.{name}", f"must be one of {accepted}.", config.read[name])
    if int(config.streaming.chunk) < 1:
        raise _config_error("streaming.chunk", "must be a positive number of stimuli per chunk.", config.streaming.chunk)
    if int(config.streaming.projection_dims) < 0:
        raise _config_error("streaming.projection_dims", "must be 0 (exact) or a positive dimension.", config.streaming.projection_dims)


def simulation_arguments(section) -> dict[str, Any]:
    """``simulate_experiment``'s keyword arguments from a build config's ``simulation`` section."""
    arguments = {
        "preset": section.preset,
        "seed": int(section.seed),
        "complex_fraction": float(section.complex_fraction),
        "wavelength_range": tuple(float(v) for v in section.wavelength_range),
        "rate_scale": float(section.rate_scale),
    }
    for name in ("neurons_per_scan", "n_scans"):
        if int(section[name]) > 0:
            arguments[name] = int(section[name])
    return arguments


def read_options(config) -> ReadOptions:
    """The ``ReadOptions`` of a build config's ``images`` and ``read`` sections."""
    return ReadOptions(
        images=image_ops.ImageOptions(color=config.images.color, size=image_ops.parse_size(config.images.size),
                                      scale=config.images.get("scale", "auto")),
        dead_neurons=config.read.dead_neurons,
        nonfinite=config.read.nonfinite,
        unknown_tiers=config.read.unknown_tiers,
    )


def build_from_config(config, out_dir: str, *, progress: Reporter = print_line) -> dict[str, Any]:
    """Builds the targets a ``configs/build_target.py`` config describes into ``out_dir``.

    Checks the config (``check_build_config``), reads ``config.recordings`` (FileTree folders,
    zipped FileTrees, HDF5 files) or, when it is empty, simulates the ``config.simulation``
    preset (SIMULATED V1), fits the predictive models and writes ``out_dir/target``
    (``config.target.kind``, on ``config.stimuli`` when given), ``out_dir/targets/<kind>`` for
    ``config.target.extra_kinds``, the report and the figures.

    Args:
        config: the ConfigDict of ``configs/build_target.py``.
        out_dir: the build's workdir.
        progress: progress reporter (None: silent).

    Returns:
        The report (``out_dir/target_report.json``).
    """
    check_build_config(config)
    log = reporter(progress)
    os.makedirs(out_dir, exist_ok=True)
    experiment = None
    options = read_options(config)
    if config.recordings:
        paths = _paths(config.recordings)
        log(f"reading {len(paths)} recording(s)")
        scans = []
        for path in paths:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=treatments.RecordingWarning)
                scan = read_recording(path, options)
            for message in scan.metadata.get("treatments", []):
                log(f"  warning: {message}")
            log(f"  {path}: {scan.n_trials} trials, {scan.n_neurons} neurons, images {scan.image_shape[0]}x{scan.image_shape[1]}")
            scans.append(scan)
    else:
        log(f"simulating V1 ({SIMULATED_LABEL}), preset {config.simulation.preset!r}")
        experiment = simulate_experiment(**simulation_arguments(config.simulation))
        scans = experiment.recordings
        if config.simulation.save_recordings:
            recordings_dir = os.path.join(out_dir, workdir_files.RECORDINGS)
            write_experiment(recordings_dir, experiment)
            log(f"wrote {len(scans)} simulated scans and their ground truth to {recordings_dir}")
    stimuli = open_stimulus_set(config.stimuli, options.images, chunk=int(config.streaming.chunk)) if config.stimuli else None
    return build_targets(
        scans,
        out_dir,
        primary_kind=config.target.kind,
        extra_kinds=_kinds(config.target.extra_kinds),
        predictor_config=PredictiveModelConfig(
            **{k: v for k, v in config.model.to_dict().items() if k != "workers"}
        ),
        workers=config.model.workers if config.model.workers >= 0 else None,
        experiment=experiment,
        vgg_weights=config.vgg.weights or None,
        make_figures=config.figures,
        seed=config.target.seed,
        stimuli=stimuli,
        chunk=int(config.streaming.chunk),
        projection_dims=int(config.streaming.projection_dims) or None,
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
    with workdir_files.locked(out_dir, "target build", progress=progress):
        return _ensure_built(config, out_dir, progress)


def _ensure_built(config, out_dir: str, progress: Reporter) -> str:
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
