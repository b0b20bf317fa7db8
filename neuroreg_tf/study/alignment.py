"""Each study run's brain alignment (``neural.alignment``), beside its robustness numbers.

For a study on the SIMULATED population, every finished run's classifier is read out against the
main build's SIMULATED animal on new stimuli: the held-out, noise-ceiling normalised V1
predictivity of each tapped layer, and its best layer's (the run's "alignment"). Every run is
measured against the same animal (the main build's, also for ablation conditions trained on
another population), so the numbers compare across conditions.

Results are kept in ``<study>/alignment/<condition>/seed_<k>.json`` with the fingerprint of the
model the run's evaluation scored, the settings and the simulation, and computed again only when
one of them changed. Studies of recorded data get none (their held-out recordings would be needed).
"""

from __future__ import annotations

import dataclasses
import os

import keras
import ml_collections

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.fileio import read_json, write_json_atomic
from neuroreg_tf.neural import alignment, build_config
from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.study.conditions import MAIN_BUILD
from neuroreg_tf.study.plan import Run, StudyPlan
from neuroreg_tf.study.transfer import scored_artifact

DIRECTORY = "alignment"


def settings_of(config) -> alignment.AlignmentSettings:
    """The study config's ``alignment`` section as ``AlignmentSettings``."""
    section = config.get("alignment") or ml_collections.ConfigDict()
    fields = {field.name for field in dataclasses.fields(alignment.AlignmentSettings)}
    return alignment.AlignmentSettings(**{k: v for k, v in section.items() if k in fields})


def applies(config) -> bool:
    """Whether the study measures alignment: asked for, and its main build SIMULATED."""
    section = config.get("alignment")
    return bool(section and section.get("enabled", False)) and not config.build.recordings


def result_path(plan: StudyPlan, run: Run) -> str:
    return os.path.join(plan.workdir, DIRECTORY, run.condition.name, f"seed_{run.seed}.json")


def run_alignments(config, plan: StudyPlan, finished: set, progress: Reporter = print_line) -> int:
    """Measures the missing or outdated alignments of the finished runs; returns how many ran.

    Args:
        config: the study config (its ``alignment`` section and main build's ``simulation``).
        plan: the study's plan.
        finished: keys (``Run.key``) of the runs whose evaluation scored the model they hold.
        progress: a line per layer and per run.
    """
    log = reporter(progress)
    settings = settings_of(config)
    simulation = build_config.simulation_arguments(plan.builds[MAIN_BUILD].simulation if MAIN_BUILD in plan.builds
                                                   else config.build.simulation)
    pending = []
    for run in plan.runs:
        if run.key not in finished:
            continue
        identity = {"model": scored_artifact(run), "settings": dataclasses.asdict(settings),
                    "simulation": {k: list(v) if isinstance(v, tuple) else v for k, v in simulation.items()}}
        path = result_path(plan, run)
        if not (os.path.isfile(path) and read_json(path, "an alignment result").get("identity") == identity):
            pending.append((run, identity, path))
    if not pending:
        return 0
    log(f"alignment: {len(pending)} run(s) to read out against the SIMULATED V1 population "
        f"({settings.n_train} + {settings.n_test} x {settings.n_repeats} new stimuli, {settings.n_neurons} neurons)")
    responses = alignment.simulated_responses(simulation, settings)
    for count, (run, identity, path) in enumerate(pending, start=1):
        try:
            # The Keras classifier (its layers), saved beside the export the evaluation scored.
            classifier = keras.models.load_model(workdir_files.path(run.directory, workdir_files.CLASSIFIER),
                                                 compile=False)
            layers = list(read_json(workdir_files.path(run.directory, workdir_files.SUMMARY), "a run's summary")["gamma"])
            result = alignment.network_alignment(classifier, layers, responses, settings)
        except Exception as error:  # noqa: BLE001 - one unreadable run must not cost the report
            log(f"alignment {count}/{len(pending)} {run.key}: not measured ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''})")
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json_atomic(path, {"identity": identity, **result})
        log(f"alignment {count}/{len(pending)} {run.key}: {result['alignment']:.3f} ({result['best_layer']})"
            if result["alignment"] is not None else f"alignment {count}/{len(pending)} {run.key}: no reliable neuron")
    return len(pending)


def read_alignment(plan: StudyPlan, run: Run) -> dict | None:
    """The alignment result of ``run``, if measured for the model it holds now."""
    path = result_path(plan, run)
    if not os.path.isfile(path):
        return None
    result = read_json(path, "an alignment result")
    return result if result.get("identity", {}).get("model") == scored_artifact(run) else None
