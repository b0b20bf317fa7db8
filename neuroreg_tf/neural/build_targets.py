"""Recordings -> predictive models -> similarity targets, report and figures: the build loop.

``build_targets`` is the library behind ``build_target.py``; it works the same on real
recordings (FileTree folders or zips / HDF5, see ``recordings``) and on SIMULATED ones
(``simulation.simulate_experiment``), where it also measures how close each target is to the
noiseless ground truth. It builds each requested kind through its ``target_registry`` entry
(what the kind needs, how it is built), measures the targets (``fig1d``) and draws the figures
(``figures.plot_build_figures``).

Scans need not have seen the same images. Each scan's weights (Eq 1), oracle similarity (Eq 3)
and Fig. 1D numbers come from its own repeated images. The Neural (model) target is built on any
stimulus set: by default every image any scan saw, or a folder / array of images none of them
saw (``stimuli``, streamed to disk). A kind whose needs the scans cannot meet -- the Neural
(data) target needs images every scan saw, the oracle target repeated images every scan saw --
is reported as unavailable, with the reason.

``build_from_config`` runs a ``configs/build_target.py`` config (``build_config`` validates it);
``ensure_built`` does so in a claimed workdir, reusing a finished build and extending it with
kinds it lacks.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.errors import ConfigError, InputError
from neuroreg_tf.fileio import fingerprint, read_json, write_json_atomic
from neuroreg_tf.neural import build_config, fig1d, figures, target_diagnostics, target_kinds, target_registry
from neuroreg_tf.neural.build_config import check_build_config  # noqa: F401  (build_target.py's check)
from neuroreg_tf.neural.predictive import PredictiveModelConfig, fit_predictive_models
from neuroreg_tf.neural.recordings import ReadOptions, Recording, check_ids_agree_across_scans, read_recording
from neuroreg_tf.neural.recordings import treatments
from neuroreg_tf.neural.simulation import SIMULATED_LABEL, SimulatedExperiment, simulate_experiment, write_experiment
from neuroreg_tf.neural.stimulus_sets import StimulusSet, open_stimulus_set, prepare_to_file
from neuroreg_tf.neural.target_registry import MIN_SHARED, PREDICTIVE_MODEL, SHARED_IMAGES, SHARED_ORACLE
from neuroreg_tf.progress import Reporter, print_line, reporter

PREPARED_STIMULI = ".stimuli_prepared.npy"
STIMULUS_NAMES = "stimulus_names.txt"


def _unmet_needs(scans, oracle_ids, shared_ids) -> dict[str, str]:
    """{need: why these scans cannot meet it} for the needs that depend on what the scans share."""
    unmet = {}
    if len(scans) >= 2 and oracle_ids.size < MIN_SHARED:
        unmet[SHARED_ORACLE] = (
            f"the scans share {oracle_ids.size} repeated (oracle) image(s); comparing scans needs at least {MIN_SHARED}"
        )
    if shared_ids.size < MIN_SHARED:
        unmet[SHARED_IMAGES] = (
            f"the scans share {shared_ids.size} image(s); Neural (data) needs the responses of every scan to at "
            f"least {MIN_SHARED} common images"
        )
    return unmet


def _unavailable(unmet: dict[str, str]) -> dict[str, str]:
    """What cannot be built or measured, and why: every registered kind with an unmet need, and the
    across-scan measures when the scans share too few oracle images."""
    unavailable: dict[str, str] = {}
    kinds = [target_registry.get_target_kind(n) for n in target_registry.target_kind_names()]
    for need in (SHARED_ORACLE, SHARED_IMAGES):
        if need not in unmet:
            continue
        for kind in kinds:
            if need in kind.needs:
                unavailable.setdefault(kind.name, unmet[need])
        if need == SHARED_ORACLE:
            for key in fig1d.ACROSS_SCAN_MEASURES:
                unavailable[key] = unmet[need]
    return unavailable


def build_targets(
    recordings: Sequence[Recording],
    out_dir: str,
    *,
    primary_kind: str = "neural_model",
    extra_kinds: Sequence[str] = ("neural_data", "oracle", "shuffle", "random"),
    predictor_config: PredictiveModelConfig | None = None,
    experiment: SimulatedExperiment | None = None,
    kind_options: dict[str, dict] | None = None,
    make_figures: bool = True,
    target_path: str | None = None,
    seed: int = 0,
    stimuli: StimulusSet | None = None,
    predictors: Sequence[Any] | None = None,
    workers: int | None = None,
    chunk: int = 4096,
    projection_dims: int | None = None,
    already_written: dict[str, str] | None = None,
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
        primary_kind: the kind written to ``out_dir/target`` (``target_registry``).
        extra_kinds: further kinds, each to ``out_dir/targets/<kind>``; an extra kind the
            scans cannot support (e.g. ``neural_data`` without shared images) is skipped
            and listed under ``unavailable`` in the report.
        predictor_config: predictive-model hyper-parameters.
        experiment: the ``SimulatedExperiment`` the recordings came from, if any;
            enables the ground-truth comparisons and the ``ground_truth`` kind.
        kind_options: ``{kind: {option: value}}``, e.g. ``{"vgg": {"weights": path}}``.
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
        already_written: kinds a finished build of the same data already holds (kind -> path):
            they are not written again, only measured and reported.
        log: progress sink; None for silence.

    Returns:
        The report (also written as JSON).

    Raises:
        ConfigError: an unknown or impossible kind.
        InputError: recordings that cannot give the primary kind.
    """
    log = log or (lambda message: None)
    options = dict(kind_options or {})
    kinds = [primary_kind] + [k for k in extra_kinds if k != primary_kind]
    problem = build_config.kind_problem(primary_kind, kinds[1:], simulated_data=experiment is not None,
                                        stimulus_set=stimuli is not None, options=options)
    if problem:
        key, message, value = problem
        raise ConfigError(f"{message} Received: {key}={value!r}")
    if not recordings:
        raise InputError("Need at least one recording. Received: recordings=[]")
    if predictors is not None and len(predictors) != len(recordings):
        raise ValueError(f"Need one predictor per scan. Received: {len(predictors)} for {len(recordings)} scans")
    simulated = any(r.simulated for r in recordings) or experiment is not None
    started = time.time()
    label = f" [{SIMULATED_LABEL}]" if simulated else ""
    log(f"Building targets {kinds} from {len(recordings)} scan(s){label}")
    _check_images(recordings, stimuli)
    scans = [target_kinds.analyse_scan(r) for r in recordings]
    for h, scan in enumerate(scans):
        log(
            f"scan {h + 1}: {scan.recording.n_trials} trials, {scan.recording.n_neurons} neurons, "
            f"{scan.oracle_ids.size} oracle images, median oracle correlation {np.median(scan.oracle_correlation):.3f}"
        )
    oracle_ids = target_kinds.shared_oracle_ids(recordings)
    shared_ids, shared_images = target_kinds.shared_stimuli(recordings)
    union_ids, union_images = target_kinds.union_stimuli(recordings)
    unavailable = _unavailable(_unmet_needs(scans, oracle_ids, shared_ids))
    if primary_kind in unavailable:
        raise InputError(
            f"The primary target {primary_kind!r} cannot be built from these scans: {unavailable[primary_kind]}. "
            "Choose --config.target.kind=neural_model (any stimulus set). Received: "
            + ", ".join(r.source for r in recordings)
        )
    for kind in [k for k in kinds if k in unavailable]:
        log(f"skipping the {kind} target: {unavailable[kind]}")
    kinds = [k for k in kinds if k not in unavailable]

    fit_models = any(PREDICTIVE_MODEL in target_registry.get_target_kind(k).needs for k in kinds)
    if fit_models:
        if predictors is None:
            predictors = fit_predictive_models(
                [scan.recording for scan in scans], predictor_config, workers=workers, log=log
            )
        for scan, predictor in zip(scans, predictors):
            scan.predictor = predictor

    os.makedirs(out_dir, exist_ok=True)
    context = target_registry.BuildContext(
        scans=scans, experiment=experiment, simulated=simulated, union_ids=union_ids, union_images=union_images,
        shared_ids=shared_ids, shared_images=shared_images, oracle_ids=oracle_ids, seed=seed,
        provenance=_provenance(scans, experiment), stimulus_info={}, stimuli_fn=None, n_stimuli=0,
        streamed=stimuli is not None, prepared=None, image_shape=recordings[0].image_shape, chunk=chunk,
        projection_dims=projection_dims, options=options, log=log,
    )
    log("computing embeddings")
    prepared_path = _set_stimuli(context, stimuli, out_dir, chunk, log)
    try:
        for kind in kinds:
            path = (target_path or os.path.join(out_dir, workdir_files.TARGET)) if kind == primary_kind \
                else os.path.join(out_dir, workdir_files.TARGETS, kind)
            if already_written and kind in already_written:
                context.written[kind] = already_written[kind]
                continue
            n_written = target_registry.get_target_kind(kind).build(context, path)
            context.written[kind] = path
            log(f"wrote {kind} target ({n_written} stimuli) to {path}")
    finally:
        context.prepared = None
        if prepared_path and os.path.exists(prepared_path):
            os.remove(prepared_path)

    log("measuring the targets (Fig. 1D)")
    per_scan, extras = zip(*(fig1d.scan_metrics(s) for s in scans))
    descriptions = {k: target_registry.get_target_kind(k).description for k in context.written}
    report = fig1d.measure(context, primary_kind=primary_kind, per_scan=per_scan, unavailable=unavailable,
                           fit_models=fit_models, descriptions=descriptions)
    if make_figures:
        report["figures"], report["fig1d_labels"] = figures.plot_build_figures(
            os.path.join(out_dir, workdir_files.FIGURES), scans, per_scan, extras, report, oracle_ids, unavailable,
            simulated=simulated, fit_models=fit_models,
        )
    log("target diagnostics (spectrum, pixel and spatial-frequency similarity, kinds against each other)")
    report["target_diagnostics"] = target_diagnostics.diagnose_targets(context.written, seed=seed)
    report["kind_options"] = {k: context.kind_options(k) for k in context.written
                              if target_registry.get_target_kind(k).options}
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


def _check_images(recordings, stimuli) -> None:
    """Every scan's images (and the stimulus set) share one size, and ids name one image across scans."""
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


def _provenance(scans, experiment) -> dict[str, Any]:
    """What every target of the build records about its scans (and the simulation)."""
    provenance: dict[str, Any] = {
        "n_scans": len(scans),
        "neurons_per_scan": [s.recording.n_neurons for s in scans],
        "sources": [s.recording.source for s in scans],
    }
    treatments_applied = {s.recording.source: s.recording.metadata["treatments"] for s in scans
                          if s.recording.metadata.get("treatments")}
    if treatments_applied:
        provenance["read_treatments"] = treatments_applied
    if experiment is not None:
        provenance["simulation"] = experiment.parameters
    return provenance


def _set_stimuli(context, stimuli, out_dir: str, chunk: int, log) -> str | None:
    """The build's stimuli: a stimulus set prepared to a file (returned, removed after the build),
    or every image the scans saw."""
    if stimuli is None:
        context.stimuli_fn = lambda start, stop: context.union_images[start:stop]
        context.n_stimuli = int(context.union_ids.size)
        context.stimulus_info = {"image_ids": context.union_ids, "stimuli_source": "every image the scans saw"}
        return None
    prepared_path = os.path.join(out_dir, PREPARED_STIMULI)
    log(f"preparing {stimuli.n} stimuli from {stimuli.path}")
    prepared = prepare_to_file(stimuli, prepared_path, chunk=chunk)
    context.prepared = prepared
    context.stimuli_fn = lambda start, stop: np.asarray(prepared[start:stop])
    context.n_stimuli = stimuli.n
    context.stimulus_info = {"stimuli_source": os.path.abspath(stimuli.path),
                             "stimuli_order": "sorted file names" if stimuli.names else "array order"}
    if stimuli.names:
        with open(os.path.join(out_dir, STIMULUS_NAMES), "w") as f:
            f.write("\n".join(stimuli.names) + "\n")
    return prepared_path


def read_scans(config, options: ReadOptions, log) -> tuple[list[Recording], SimulatedExperiment | None]:
    """The scans a build config names (``config.recordings``), read with ``options``, or its
    SIMULATED experiment's."""
    paths = build_config.recording_paths(config)
    if not paths:
        log(f"simulating V1 ({SIMULATED_LABEL}), preset {config.simulation.preset!r}")
        experiment = simulate_experiment(**build_config.simulation_arguments(config.simulation))
        return experiment.recordings, experiment
    log(f"reading {len(paths)} recording(s)")
    scans = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=treatments.RecordingWarning)
            scan = read_recording(path, options)
        for message in scan.metadata.get("treatments", []):
            log(f"  warning: {message}")
        log(f"  {path}: {scan.n_trials} trials, {scan.n_neurons} neurons, images {scan.image_shape[0]}x{scan.image_shape[1]}")
        scans.append(scan)
    return scans, None


def build_from_config(config, out_dir: str, *, progress: Reporter = print_line,
                      already_written: dict[str, str] | None = None) -> dict[str, Any]:
    """Builds the targets a ``configs/build_target.py`` config describes into ``out_dir``.

    Checks the config (``build_config.check_build_config``), reads ``config.recordings``
    (FileTree folders, zipped FileTrees, HDF5 files) or, when it is empty, simulates the
    ``config.simulation`` preset (SIMULATED V1), fits the predictive models and writes
    ``out_dir/target`` (``config.target.kind``, on ``config.stimuli`` when given),
    ``out_dir/targets/<kind>`` for ``config.target.extra_kinds``, the report and the figures.

    Args:
        config: the ConfigDict of ``configs/build_target.py``.
        out_dir: the build's workdir.
        progress: progress reporter (None: silent).
        already_written: kinds already in ``out_dir`` (``build_targets``).

    Returns:
        The report (``out_dir/target_report.json``).
    """
    build_config.check_build_config(config)
    log = reporter(progress)
    os.makedirs(out_dir, exist_ok=True)
    options = build_config.read_options(config)
    scans, experiment = read_scans(config, options, log)
    if experiment is not None and config.simulation.save_recordings:
        recordings_dir = os.path.join(out_dir, workdir_files.RECORDINGS)
        write_experiment(recordings_dir, experiment)
        log(f"wrote {len(scans)} simulated scans and their ground truth to {recordings_dir}")
    stimuli = open_stimulus_set(config.stimuli, options.images, chunk=int(config.streaming.chunk)) if config.stimuli else None
    return build_targets(
        scans,
        out_dir,
        primary_kind=config.target.kind,
        extra_kinds=build_config.requested_kinds(config.target)[1:],
        predictor_config=build_config.predictor_config(config.model),
        workers=config.model.workers if config.model.workers >= 0 else None,
        experiment=experiment,
        kind_options=build_config.kind_options(config),
        make_figures=config.figures,
        seed=config.target.seed,
        stimuli=stimuli,
        chunk=int(config.streaming.chunk),
        projection_dims=int(config.streaming.projection_dims) or None,
        already_written=already_written,
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


# Config keys a build's identity leaves out: which kinds it holds grows (``ensure_built`` extends a
# finished build with the kinds it lacks) and each kind's options are checked per kind.
_NOT_IN_IDENTITY = ("overwrite", "kinds", "vgg")
_NOT_IN_IDENTITY_TARGET = ("extra_kinds",)


def _identity_config(config: dict) -> dict:
    relevant = build_config.with_added_simulation_keys(
        {key: value for key, value in config.items() if key not in _NOT_IN_IDENTITY})
    relevant["target"] = {k: v for k, v in relevant.get("target", {}).items() if k not in _NOT_IN_IDENTITY_TARGET}
    return relevant


def build_identity(config) -> dict:
    """A target build's identity: its config (without the kinds it holds) and its recordings' files."""
    return {"kind": "target build", "config": _identity_config(config.to_dict()),
            "recordings": [_input_identity(p) for p in build_config.recording_paths(config)]}


def upgrade_identity(recorded: dict) -> dict:
    """A build identity recorded by an older version, in today's form (``workdir.claim``'s ``upgrade``)."""
    return {**recorded, "config": _identity_config(recorded.get("config", {}))}


def legacy_build_identity(config) -> dict:
    """The identity versions before the kind registry recorded for this build (train.py's target id)."""
    relevant = build_config.legacy_config({k: v for k, v in config.to_dict().items() if k != "overwrite"})
    return {"kind": "target build", "config": relevant,
            "recordings": [_input_identity(p) for p in build_config.recording_paths(config)]}


_BUILD_OUTPUTS = (
    workdir_files.TARGET, workdir_files.TARGETS, workdir_files.FIGURES, workdir_files.RECORDINGS,
    workdir_files.TARGET_REPORT,
)


def ensure_built(config, out_dir: str, *, progress: Reporter = print_line) -> str:
    """Claims ``out_dir`` for the build ``config`` describes, builds unless already finished.

    A finished build of the same config and recordings is reused, and extended with the
    requested kinds it lacks (or holds with other options; the others are not written again);
    an interrupted one is built again from scratch (its partial outputs removed first; building
    is deterministic); a build of another config is refused unless ``config.overwrite``
    (``workdir.claim``).

    Returns:
        The primary target's path, ``out_dir/target``.
    """
    with workdir_files.locked(out_dir, "target build", progress=progress):
        return _ensure_built(config, out_dir, progress)


def missing_kinds(config, report: dict) -> list[str]:
    """The kinds ``config`` asks for that a finished build's ``report`` neither holds (with the same
    options) nor lists as unavailable for its scans."""
    written, unavailable = report.get("targets", {}), report.get("unavailable", {})
    recorded_options = report.get("kind_options", {})
    wanted_options = build_config.kind_options(config)
    missing = []
    for kind in build_config.requested_kinds(config.target):
        if kind in unavailable:
            continue
        wanted = {**target_registry.get_target_kind(kind).options, **wanted_options.get(kind, {})}
        same_options = kind not in recorded_options or recorded_options[kind] == wanted
        if kind not in written or not same_options:
            missing.append(kind)
    return missing


def _ensure_built(config, out_dir: str, progress: Reporter) -> str:
    log = reporter(progress)
    status = workdir_files.claim(
        out_dir, build_identity(config), what="target build",
        finished_marker=workdir_files.TARGET_REPORT, overwrite=bool(config.get("overwrite", False)),
        upgrade=upgrade_identity,
    )
    target_path = os.path.join(out_dir, workdir_files.TARGET)
    if status == workdir_files.FINISHED:
        report = read_json(os.path.join(out_dir, workdir_files.TARGET_REPORT), "the build's report")
        missing = missing_kinds(config, report)
        if not missing:
            log(f"{out_dir} already holds this target build (same config and recordings); reusing it.")
            if "target_diagnostics" not in report:  # a build from before the diagnostics existed
                log("adding the target diagnostics to its report")
                report["target_diagnostics"] = target_diagnostics.diagnose_targets(
                    report.get("targets", {}), seed=int(config.target.seed))
                write_json_atomic(os.path.join(out_dir, workdir_files.TARGET_REPORT), report)
            return target_path
        log(f"{out_dir} holds this target build without {missing}: adding them.")
        kept = {k: v for k, v in report.get("targets", {}).items() if k not in missing}
        _build(config, out_dir, progress, kept)
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
    _build(config, out_dir, progress, {})
    return target_path


def _build(config, out_dir: str, progress: Reporter, kept: dict[str, str]) -> None:
    """Builds into ``out_dir``, keeping the ``kept`` kinds; an extension asks for every kind the
    build holds plus the new ones, so that the report lists them all."""
    if kept:
        config = copy.deepcopy(config)
        primary = config.target.kind
        kinds = [*kept, *build_config.requested_kinds(config.target)]
        config.target.extra_kinds = ",".join(dict.fromkeys(k for k in kinds if k != primary))
    build_from_config(config, out_dir, progress=progress, already_written=kept)
