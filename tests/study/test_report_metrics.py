"""The study report is driven by its declared metrics: each one's numbers, and a new one is one entry.

The runs here are written by hand (summary, evaluation, model file and identities), so the report
is checked against numbers chosen in the test, without training anything.
"""

import csv
import json
import os

import numpy as np
import pytest

from neuroreg_tf import cli, workdir
from neuroreg_tf.fileio import sha256_tree, write_json_atomic
from neuroreg_tf.study import plan as plan_lib
from neuroreg_tf.study import report


def _numbers(condition_index, seed):
    """The numbers of one hand-written run, distinct per run."""
    base = 0.5 + 0.1 * condition_index + 0.01 * seed
    return {"clean": base, "noise": {0.1: base - 0.2, 0.3: base - 0.4}, "linf": 0.01 * (1 + seed + condition_index),
            "l2": 0.1 * (1 + seed), "r": 0.05 * (condition_index + seed)}


def _write_run(run, numbers):
    identity = {"kind": "training run", "config": {"seed": run.seed, "condition": run.condition.name}}
    workdir.claim(run.directory, identity, what="training run", finished_marker="summary.json", overwrite=False)
    model_file = os.path.join(run.directory, "classifier.keras")
    with open(model_file, "w") as f:
        f.write(f"model {run.key}")
    write_json_atomic(os.path.join(run.directory, "summary.json"), {
        "identity": workdir.read_identity(run.directory)["fingerprint"],
        "final": {"val_similarity_r": numbers["r"]}, "gamma": {"stage4": 1.0},
    })
    evaluation = {"kind": "evaluation", "models": [{"label": run.condition.label, "artifact": sha256_tree(model_file)}],
                  **run.evaluation_settings}
    workdir.claim(run.evaluation_directory, evaluation, what="evaluation", finished_marker="robustness.json",
                  overwrite=False)
    noise = [{"sigma": 0.0, "accuracy": numbers["clean"]}] + [
        {"sigma": sigma, "accuracy": accuracy} for sigma, accuracy in numbers["noise"].items()]
    write_json_atomic(os.path.join(run.evaluation_directory, "robustness.json"), {"models": [{
        "clean_accuracy": numbers["clean"], "noise": noise,
        "adversarial": {"linf": {"median": numbers["linf"]}, "l2": {"median": numbers["l2"]}},
    }]})


@pytest.fixture
def written(tmp_path):
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model,shuffle"
    config.seeds = (0, 1, 2)
    config.report_only = True
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    names = [c.name for c in study_plan.conditions]
    for run in study_plan.runs:
        _write_run(run, _numbers(names.index(run.condition.name), run.seed))
    return config, study_plan, names


def _report(config, study_plan):
    result = report.write_report(config, study_plan, seconds=0.0, progress=None)
    with open(os.path.join(study_plan.workdir, "study.csv")) as f:
        rows = list(csv.DictReader(f))
    markdown = open(os.path.join(study_plan.workdir, "report.md")).read()
    return result, rows, markdown


def test_every_declared_metric_is_summarised_from_the_runs_numbers(written):
    config, study_plan, names = written
    result, rows, markdown = _report(config, study_plan)
    assert result["counts"] == {"finished": 9, "stale": 0, "failed": 0, "missing": 0}
    for index, name in enumerate(names):
        runs = [_numbers(index, seed) for seed in (0, 1, 2)]
        expected = {
            "clean": [n["clean"] for n in runs],
            "noise_0.1": [n["noise"][0.1] for n in runs],
            "noise_0.3": [n["noise"][0.3] for n in runs],
            "noise_mean": [(n["noise"][0.1] + n["noise"][0.3]) / 2 for n in runs],
            "linf_median": [n["linf"] for n in runs],
            "l2_median": [n["l2"] for n in runs],
            "similarity_r": [n["r"] for n in runs],
        }
        for metric, values in expected.items():
            summary = result["summaries"][name][metric]
            sem = np.std(values, ddof=1) / np.sqrt(3)
            assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-12), (name, metric)
            assert summary["sem"] == pytest.approx(sem, abs=1e-12), (name, metric)
    header = list(rows[0])
    assert header[:10] == ["condition", "seed", "status", "clean", "noise_0.1", "noise_0.3", "linf_median",
                           "l2_median", "similarity_r", "gamma_stage4"]
    assert "| condition | clean ↑ | σ = 0.1 ↑ | σ = 0.3 ↑ | noise (mean over σ) ↑ | L∞ median ↑ | L2 median ↑ | held-out r ↑ |" in markdown
    # Compared by seed: the declared ones marked so, and the noisiest level only.
    assert "| condition | clean ↑: Δ, d_z, p (p_holm) | σ = 0.3 ↑: Δ, d_z, p (p_holm) | noise (mean over σ) ↑: Δ, d_z" in markdown


def test_a_new_metric_is_one_entry(written, monkeypatch):
    config, study_plan, names = written
    error = report.Metric("clean_error", "clean error", 3, False, True, True,
                          lambda summary, model: 1.0 - model["clean_accuracy"])
    monkeypatch.setattr(report, "METRICS", (*report.METRICS, error))
    monkeypatch.setattr(report, "_BY_NAME", {**report._BY_NAME, "clean_error": error})
    result, rows, markdown = _report(config, study_plan)
    for row in rows:
        index = names.index(row["condition"])
        assert float(row["clean_error"]) == pytest.approx(1.0 - _numbers(index, int(row["seed"]))["clean"], abs=1e-12)
    assert "clean error ↓" in markdown and "clean error ↓: Δ, d_z, p (p_holm)" in markdown
    difference = result["comparisons"]["none"]["clean_error"]["shuffle"]["difference"]
    assert difference == pytest.approx(-0.2, abs=1e-12)  # shuffle's clean is 0.2 higher, its error 0.2 lower
    json.dumps(result["summaries"])  # the report stays JSON


def test_an_evaluation_recorded_with_other_settings_is_stale_and_says_why(written):
    config, study_plan, names = written
    run = study_plan.runs[0]
    recorded = workdir.read_identity(run.evaluation_directory)
    changed = {**recorded, "adversarial": {**recorded["adversarial"], "norms": [*recorded["adversarial"]["norms"], "l0"]}}
    del changed["fingerprint"]
    write_json_atomic(os.path.join(run.evaluation_directory, workdir.IDENTITY),
                      {**changed, "fingerprint": workdir.fingerprint_of(changed)})
    status, reason = report.run_state(run)
    assert status == "stale" and "other settings (adversarial" in reason
    assert [report.run_state(r)[0] for r in study_plan.runs[1:]] == ["finished"] * (len(study_plan.runs) - 1)
