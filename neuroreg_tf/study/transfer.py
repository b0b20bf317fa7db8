"""The study-level gradient-masking check: adversarials crafted on the None model of each seed,
scored on every other condition's model of that seed (``robustness.diagnostics.transfer_check``).

Run after the evaluations when ``evaluation.adversarial.diagnostics`` is on; each result is kept in
``<study>/transfer/<condition>/seed_<k>.json`` with the fingerprints of the two models and the
budget, and computed again only when one of them changed. The budget is the None model's median
minimal distance of that seed, per norm.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.fileio import read_json, write_json_atomic
from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import diagnostics
from neuroreg_tf.robustness.loading import load_classifier
from neuroreg_tf.study.plan import Run, StudyPlan

DIRECTORY = "transfer"
SOURCE = "none"


def result_path(plan: StudyPlan, run: Run) -> str:
    return os.path.join(plan.workdir, DIRECTORY, run.condition.name, f"seed_{run.seed}.json")


def _distances(run: Run, norm: str) -> np.ndarray:
    with open(os.path.join(run.evaluation_directory, workdir_files.ADVERSARIAL_CSV)) as handle:
        return np.array([float(row[f"{norm}_distance"]) for row in csv.DictReader(handle)])


def scored_artifact(run: Run) -> str:
    """The fingerprint of the model a finished run's evaluation scored: what its ``identity.json``
    records, which ``report.run_state`` has checked against the model the run holds (no hashing)."""
    return workdir_files.read_identity(run.evaluation_directory)["models"][0]["artifact"]


def _median(run: Run, norm: str) -> float:
    robustness = read_json(os.path.join(run.evaluation_directory, workdir_files.ROBUSTNESS_JSON), "an evaluation")
    return float(robustness["models"][0]["adversarial"][norm]["median"])


def run_transfer_checks(plan: StudyPlan, finished: set, x, y, norms, progress: Reporter = print_line) -> int:
    """Computes the missing or outdated transfer checks of the finished runs; returns how many ran.

    Args:
        plan: the study's plan.
        finished: keys (``Run.key``) of the runs that finished (``report.run_state``: their
            evaluation scored the model they hold).
        x, y: the study's evaluation examples (the adversarial subset is their first rows).
        norms: the norms evaluated.
        progress: one line per computed check.
    """
    log = reporter(progress)
    sources = {run.seed: run for run in plan.runs if run.condition.name == SOURCE and run.key in finished}
    computed = 0
    for run in plan.runs:
        source = sources.get(run.seed)
        if source is None or run is source or run.key not in finished:
            continue
        identity = {"source": scored_artifact(source), "target": scored_artifact(run),
                    "budgets": {norm: _median(source, norm) for norm in norms}}
        path = result_path(plan, run)
        if os.path.isfile(path) and read_json(path, "a transfer check").get("identity") == identity:
            continue
        source_model, target_model = load_classifier(source.directory), load_classifier(run.directory)
        checks = {}
        for norm in norms:
            distances = _distances(run, norm)
            count = len(distances)
            epsilon = identity["budgets"][norm]
            if not np.isfinite(epsilon) or epsilon <= 0:
                continue
            checks[norm] = diagnostics.transfer_check(source_model, target_model, x[:count], y[:count], norm,
                                                      epsilon, distances)
            log(f"transfer {SOURCE} -> {run.key} ({norm}): {checks[norm]['status']} "
                f"(transfer {checks[norm]['transfer_success']:.2f}, white-box {checks[norm]['white_box_success']:.2f} "
                f"at {epsilon:.4g})")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json_atomic(path, {"identity": identity, "checks": checks})
        computed += 1
    return computed


def read_transfer(plan: StudyPlan, run: Run) -> dict | None:
    """The transfer checks of ``run`` ({norm: check}), if computed."""
    path = result_path(plan, run)
    return read_json(path, "a transfer check").get("checks") if os.path.isfile(path) else None
