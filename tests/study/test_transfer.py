"""The study-level transfer check: crafted on each seed's None model, scored on the other runs,
kept per run and computed again only when a model changes."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

from conftest import REPO_ROOT
from neuroreg_tf import cli, fileio, workdir
from neuroreg_tf.robustness.loading import artifact_fingerprint
from neuroreg_tf.study import plan as plan_lib
from neuroreg_tf.study import report, transfer

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "robustness"))
from test_attacks import exact_linear_distances, linear_model, mid_gray_images  # noqa: E402


def _fake_evaluated_run(run, model, x, y, distances, median):
    os.makedirs(run.evaluation_directory, exist_ok=True)
    model.save(os.path.join(run.directory, workdir.CLASSIFIER))
    with open(os.path.join(run.evaluation_directory, workdir.ADVERSARIAL_CSV), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "index", "label", "clean_correct", "linf_distance", "linf_attack"])
        for index, (label, distance) in enumerate(zip(y, distances)):
            writer.writerow(["m", index, label, True, distance, "pgd"])
    with open(os.path.join(run.evaluation_directory, workdir.ROBUSTNESS_JSON), "w") as handle:
        json.dump({"models": [{"adversarial": {"linf": {"median": median}}}]}, handle)
    _record_evaluation(run)


def _record_evaluation(run):
    """The evaluation's identity.json, naming the model file it scored, as evaluate_models writes it."""
    identity = {"kind": "evaluation", "models": [{"label": "m", "artifact": artifact_fingerprint(run.directory)}],
                **(run.evaluation_settings or {})}
    fileio.write_json_atomic(os.path.join(run.evaluation_directory, workdir.IDENTITY),
                             {**identity, "fingerprint": workdir.fingerprint_of(identity)})


def test_transfer_checks_are_computed_once_per_pair_of_models_and_reach_the_report(tmp_path):
    model, kernel, bias = linear_model(num_classes=2, seed=2)
    x = mid_gray_images(8, seed=8)
    y = np.asarray(model(x)).argmax(axis=1)
    exact = exact_linear_distances(x, y, kernel, bias, "linf")
    study = cli.load_config("study.py", "runlocal")
    study.conditions = "none,pixel"
    study.seeds = (0,)
    plan = plan_lib.make_plan(study, str(tmp_path))
    none, pixel = plan.runs
    _fake_evaluated_run(none, model, x, y, exact, float(np.median(exact)))
    _fake_evaluated_run(pixel, model, x, y, exact, float(np.median(exact)))
    finished = {none.key, pixel.key}
    assert transfer.run_transfer_checks(plan, finished, x, y, ("linf",), progress=None) == 1
    check = transfer.read_transfer(plan, pixel)["linf"]
    assert check["status"] == "pass" and check["epsilon"] == float(np.median(exact))
    assert transfer.read_transfer(plan, none) is None  # the source is not checked against itself
    assert transfer.run_transfer_checks(plan, finished, x, y, ("linf",), progress=None) == 0  # kept
    os.utime(os.path.join(pixel.directory, workdir.CLASSIFIER), (1, 1))  # same bytes: still the same model
    assert transfer.run_transfer_checks(plan, finished, x, y, ("linf",), progress=None) == 0
    model.get_layer("logits").set_weights([kernel * 2, bias * 2])
    model.save(os.path.join(pixel.directory, workdir.CLASSIFIER))  # another model, evaluated again:
    _record_evaluation(pixel)                                       # checked again
    assert transfer.run_transfer_checks(plan, finished, x, y, ("linf",), progress=None) == 1
    lines = report._diagnostics_lines(
        [{"condition": "pixel", "seed": 0, "status": "finished",
          "diagnostics": {"linf": {"checks": {"transfer": check["status"]}, "effort_curve": {}}}}],
        [pixel.condition])
    assert lines[-1].startswith("| Pixel | linf | 0/1 |")
