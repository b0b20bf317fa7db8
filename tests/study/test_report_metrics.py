"""The study report is driven by its declared metrics: each one's numbers, and a new one is one entry.

The runs here are written by hand (summary, evaluation, model file and identities), so the report
is checked against numbers chosen in the test, without training anything.
"""

import csv
import json
import os

import numpy as np
import pytest
from scipy import stats as scipy_stats

from neuroreg_tf import cli, workdir
from neuroreg_tf.models import resnet
from neuroreg_tf.fileio import sha256_tree, write_json_atomic
from neuroreg_tf.study import plan as plan_lib
from neuroreg_tf.study import report
from conftest import needs_fashion_mnist


def _numbers(condition_index, seed):
    """The numbers of one hand-written run, distinct per run."""
    base = 0.5 + 0.1 * condition_index + 0.01 * seed
    return {"clean": base, "noise": {0.1: base - 0.2, 0.3: base - 0.4}, "linf": 0.01 * (1 + seed + condition_index),
            "l2": 0.1 * (1 + seed), "r": 0.05 * (condition_index + seed)}


def _write_run(run, numbers, classifier=None):
    """``classifier``: a Keras model saved as the run's classifier (default: a placeholder file)."""
    identity = {"kind": "training run", "config": {"seed": run.seed, "condition": run.condition.name}}
    workdir.claim(run.directory, identity, what="training run", finished_marker="summary.json", overwrite=False)
    model_file = os.path.join(run.directory, "classifier.keras")
    if classifier is None:
        with open(model_file, "w") as f:
            f.write(f"model {run.key}")
    else:
        classifier.save(model_file)
    gamma = {"stage4": 1.0} if classifier is None else {name: 0.2 for name in resnet.paper_tap_layers(classifier)}
    write_json_atomic(os.path.join(run.directory, "summary.json"), {
        "identity": workdir.read_identity(run.directory)["fingerprint"],
        "final": {"val_similarity_r": numbers["r"]}, "gamma": gamma,
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


def _hand_written_study(tmp_path, *, claimed=False, classifiers=None, conditions="none,neural_model,shuffle",
                        seeds=(0, 1, 2)):
    """A report-only runlocal study of ``conditions`` (default None, Neural (model) and Shuffle) and
    ``seeds``, its runs written by hand (``claimed``: its workdir claimed first, as study.py does;
    ``classifiers``: a function of the run giving the Keras model saved as its classifier)."""
    config = cli.load_config("study.py", "runlocal")
    config.conditions = conditions
    config.seeds = seeds
    config.report_only = True
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    if claimed:
        workdir.claim(study_plan.workdir, plan_lib.study_identity(config), what="study", finished_marker="(never)",
                      overwrite=False)
    names = [c.name for c in study_plan.conditions]
    for run in study_plan.runs:
        _write_run(run, _numbers(names.index(run.condition.name), run.seed), classifiers and classifiers(run))
    return config, study_plan, names


@pytest.fixture
def written(tmp_path):
    return _hand_written_study(tmp_path)


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


def test_conditions_are_paired_by_seed_whatever_order_the_runs_come_in(tmp_path):
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model"
    config.seeds = (3, 1, 4, 0)  # not in order either
    config.report_only = True
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    rng = np.random.default_rng(7)
    clean = {(run.condition.name, run.seed): float(rng.uniform(0.6, 0.9)) for run in study_plan.runs}
    for run in study_plan.runs:
        _write_run(run, {**_numbers(0, run.seed), "clean": clean[(run.condition.name, run.seed)]})
    seeds = (0, 1, 3, 4)
    condition = [clean[("neural_model", s)] for s in seeds]
    reference = [clean[("none", s)] for s in seeds]
    expected = scipy_stats.ttest_rel(condition, reference)
    misaligned = scipy_stats.ttest_rel(condition, reference[1:] + reference[:1])
    assert not np.isclose(expected.pvalue, misaligned.pvalue)  # the test can tell a wrong pairing
    records = report.collect(study_plan)
    for order in (list(range(len(records))), list(reversed(range(len(records)))), list(rng.permutation(len(records)))):
        _, comparisons = report.summarize(study_plan, [dict(records[i]) for i in order])
        entry = comparisons["none"]["clean"]["neural_model"]
        assert entry["n"] == 4
        assert entry["p"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert entry["t"] == pytest.approx(expected.statistic, rel=1e-12)
    # A seed one condition lacks is left out of the pairs, not matched with another seed.
    kept = [r for r in records if not (r["condition"] == "none" and r["seed"] == 4)]
    _, comparisons = report.summarize(study_plan, kept)
    assert comparisons["none"]["clean"]["neural_model"]["p"] == pytest.approx(
        scipy_stats.ttest_rel(condition[:3], reference[:3]).pvalue, rel=1e-12)


def test_the_report_names_the_noise_levels_its_mean_averages(written):
    config, study_plan, _ = written
    result, _, markdown = _report(config, study_plan)
    assert report.noise_sigmas(result["runs"]) == [0.1, 0.3]  # sigma 0 is the clean accuracy, not noise
    assert "noise (mean over σ) averages the accuracies at σ = 0.1, 0.3." in markdown


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


def _write_comparison(run, linf_median):
    """The run's scoring with the compared preset, as the study's runner writes it."""
    evaluation = {"kind": "evaluation", "models": [
        {"label": run.condition.label, "artifact": sha256_tree(os.path.join(run.directory, "classifier.keras"))}]}
    workdir.claim(run.comparison_directory, evaluation, what="evaluation", finished_marker="robustness.json",
                  overwrite=False)
    write_json_atomic(os.path.join(run.comparison_directory, "robustness.json"),
                      {"models": [{"adversarial": {"linf": {"median": linf_median}}}]})


def test_the_audit_sections_rank_the_cheap_schedule_and_answer_from_the_paired_numbers(tmp_path):
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model,shuffle,noise_augmentation"
    config.seeds = (0, 1, 2)
    config.report_only = True
    config.evaluation.adversarial.compare_preset = "study"
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    names = [c.name for c in study_plan.conditions]
    assert all(run.compare_preset == "study" for run in study_plan.runs)
    cheap = {}
    jitter = {0: 0.0, 1: 0.004, 2: -0.002}  # Neural (model)'s L-inf medians vary around None's + 0.01
    for run in study_plan.runs:
        numbers = _numbers(names.index(run.condition.name), run.seed)
        if run.condition.name == "neural_model":
            numbers["linf"] += jitter[run.seed]
        _write_run(run, numbers)
        # The cheap schedule overstates every median by 20 %, and swaps the last two conditions.
        swap = {"shuffle": 0.03, "noise_augmentation": -0.03}.get(run.condition.name, 0.0)
        cheap[run.key] = 1.2 * numbers["linf"] + swap
        assert report.run_state(run)[0] == "missing"  # its compared scoring is part of a finished run
        _write_comparison(run, cheap[run.key])
        assert report.run_state(run)[0] == "finished"
    result, _, markdown = _report(config, study_plan)

    check = result["schedule_check"]["linf"]
    strong_means = {n: np.mean([_numbers(i, s)["linf"] + (jitter[s] if n == "neural_model" else 0.0)
                                for s in (0, 1, 2)]) for i, n in enumerate(names)}
    cheap_means = {n: np.mean([cheap[f"{n}/seed_{s}"] for s in (0, 1, 2)]) for n in names}
    by_name = {row["condition"]: row for row in check["conditions"]}
    for n in names:
        assert by_name[n]["strong"] == pytest.approx(strong_means[n]) and by_name[n]["cheap"] == pytest.approx(cheap_means[n])
    # Spearman's rho without ties: 1 - 6 sum d^2 / (n (n^2 - 1)), the ranks by hand.
    rank = lambda means: {n: 1 + sum(means[m] > means[n] for m in names) for n in names}  # noqa: E731
    strong_rank, cheap_rank = rank(strong_means), rank(cheap_means)
    d2 = sum((strong_rank[n] - cheap_rank[n]) ** 2 for n in names)
    assert check["spearman_rho"] == pytest.approx(1 - 6 * d2 / (4 * (16 - 1)))
    assert check["same_order"] is (strong_rank == cheap_rank)
    assert "## Does the cheap schedule rank the conditions as the strong ensemble does?" in markdown

    # Neural (model) vs None on L-inf: the paired differences by hand, and the verdict they give.
    neural, none = names.index("neural_model"), names.index("none")
    differences = [_numbers(neural, s)["linf"] + jitter[s] - _numbers(none, s)["linf"] for s in (0, 1, 2)]
    found = result["answers"]["advantage"]["none"]["linf_median"]
    assert found["difference"] == pytest.approx(np.mean(differences))
    t = np.mean(differences) / (np.std(differences, ddof=1) / np.sqrt(3))
    p = 2 * scipy_stats.t.sf(abs(t), df=2)
    compared = result["comparisons"]["none"]["linf_median"]
    assert compared["neural_model"]["p"] == pytest.approx(p)
    # A declared primary hypothesis (the default family) takes that family's adjusted p.
    primary = next(h for h in result["primary"] if (h["condition"], h["reference"], h["metric"])
                   == ("neural_model", "none", "linf_median"))
    assert found["family"] == "primary" and found["p_holm"] == primary["p_holm"] >= p
    assert result["answers"]["advantage"]["none"]["clean"]["family"] == "exploratory"
    assert found["verdict"] == ("higher" if found["p_holm"] < 0.05 else "no significant difference")
    baseline = result["answers"]["baselines"]["noise_augmentation"]["clean"]
    assert baseline["baseline"] == pytest.approx(np.mean([_numbers(names.index("noise_augmentation"), s)["clean"] for s in (0, 1, 2)]))
    assert "- Neural (model) against None:" in markdown


@needs_fashion_mnist  # the study loads its test examples for the checks
def test_transfer_checks_get_the_budget_norms_only(tmp_path, monkeypatch):
    from neuroreg_tf.study import runner, transfer

    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model"
    config.seeds = (0,)
    config.workers = 0
    config.evaluation.adversarial.preset = "strong"
    config.evaluation.adversarial.norms = ("linf", "l1", "l0")
    config.evaluation.adversarial.diagnostics = True
    config.alignment.enabled = False  # the hand-written runs hold no real classifier
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    workdir.claim(study_plan.workdir, plan_lib.study_identity(config), what="study", finished_marker="(never)",
                  overwrite=False)
    for run in study_plan.runs:
        _write_run(run, _numbers(0, run.seed))
    seen = []
    monkeypatch.setattr(transfer, "run_transfer_checks", lambda plan, finished, x, y, norms, progress: seen.append(norms))
    monkeypatch.setattr(runner.build_targets, "ensure_built", lambda *args, **kwargs: None)
    runner.run_study(config, str(tmp_path / "study"), progress=None)
    assert seen == [("linf",)]


def test_the_declared_primary_family_is_tested_together_with_holm_by_hand(tmp_path):
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model,shuffle"
    config.seeds = (0, 1, 2)
    config.report_only = True
    config.primary = "neural_model>none:linf_median,neural_model>shuffle:linf_median,shuffle>none:clean,pixel>none:clean"
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    names = [c.name for c in study_plan.conditions]
    jitter = {("neural_model", 1): 0.004, ("neural_model", 2): -0.002, ("shuffle", 2): 0.01}
    values = {}
    for run in study_plan.runs:
        numbers = _numbers(names.index(run.condition.name), run.seed)
        numbers["linf"] += jitter.get((run.condition.name, run.seed), 0.0)
        numbers["clean"] += 0.003 * run.seed**2 if run.condition.name == "shuffle" else 0.0
        values[run.key] = numbers
        _write_run(run, numbers)
    result, _, markdown = _report(config, study_plan)
    primary = result["primary"]
    assert [(h["condition"], h["reference"], h["metric"]) for h in primary] == [
        ("neural_model", "none", "linf_median"), ("neural_model", "shuffle", "linf_median"), ("shuffle", "none", "clean")]
    p_values = []
    for h in primary:
        key = "linf" if h["metric"] == "linf_median" else "clean"
        d = [values[f"{h['condition']}/seed_{s}"][key] - values[f"{h['reference']}/seed_{s}"][key] for s in (0, 1, 2)]
        t = np.mean(d) / (np.std(d, ddof=1) / np.sqrt(3))
        p_values.append(2 * scipy_stats.t.sf(abs(t), df=2))
        assert h["difference"] == pytest.approx(np.mean(d)) and h["p"] == pytest.approx(p_values[-1])
    # Holm by hand: sorted p times (m - rank), running maximum, capped at 1.
    order = np.argsort(p_values)
    expected, running = [0.0] * 3, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * p_values[index]))
        expected[index] = running
    assert [h["p_holm"] for h in primary] == pytest.approx(expected)
    assert "## Primary hypotheses (declared in the config before the study ran; Holm over this family)" in markdown
    assert "(paired by seed; exploratory)" in markdown
    assert "noise (mean over σ) averages the accuracies at σ = 0.1, 0.3." in markdown


def test_non_finite_values_are_counted_not_dropped_silently():
    from neuroreg_tf.study import statistics

    summary = statistics.summarize([0.1, float("inf"), None, 0.3, float("nan")])
    assert summary.n == 2 and summary.n_nonfinite == 2 and summary.mean == pytest.approx(0.2)
    text = report._format({"mean": 0.2, "sem": 0.1, "n": 2, "n_nonfinite": 2})
    assert "2 non-finite left out" in text


def test_a_malformed_primary_hypothesis_is_refused_with_the_expected_form():
    from neuroreg_tf.errors import ConfigError

    config = cli.load_config("study.py", "runlocal")
    config.primary = "neural_model:none"
    with pytest.raises(ConfigError, match="config.primary: expected comma-separated 'condition>reference:metric'"):
        plan_lib.check_config(config)


def test_a_training_length_sweep_stretches_the_schedule_and_gets_its_figure(tmp_path):
    from neuroreg_tf.errors import ConfigError
    from neuroreg_tf.study import conditions

    six = conditions.resolve("neural_model_epochs6", alpha=20.0, alpha_cka=2.0)
    assert six.kind == "neural_model" and six.alpha == 20.0 and six.label == "Neural (model), 6 ep"
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none_epochs1,none_epochs6,noise_augmentation_epochs12"
    config.seeds = (0, 1)
    config.report_only = True
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    trained = {run.condition.name: study_plan.train_config(config.train, run) for run in study_plan.runs}
    assert (trained["none_epochs1"].epochs, trained["none_epochs1"].optim.step_epochs) == (1, 1)
    assert (trained["none_epochs6"].epochs, trained["none_epochs6"].optim.step_epochs) == (6, 2)
    noisy = trained["noise_augmentation_epochs12"]  # the base condition's own settings stay
    assert (noisy.epochs, noisy.optim.step_epochs, noisy.robust_training.noise_max_sigma) == (12, 4, 0.5)
    with pytest.raises(ConfigError, match="Unknown condition 'nothing'"):
        conditions.resolve("nothing_epochs3", alpha=20.0, alpha_cka=2.0)
    names = [c.name for c in study_plan.conditions]
    for run in study_plan.runs:
        _write_run(run, _numbers(names.index(run.condition.name), run.seed))
    _report(config, study_plan)
    assert os.path.isfile(os.path.join(study_plan.workdir, "figures", "epochs.png"))
    assert cli.load_config("study.py", "epochs").conditions.split(",")[:4] == [
        "none_epochs1", "none_epochs3", "none_epochs6", "none_epochs12"]


def test_the_alpha_sweep_figure_shows_accuracy_and_each_adversarial_median_against_alpha(tmp_path, saved_figures):
    config, study_plan, names = _hand_written_study(
        tmp_path, conditions="none,neural_model_alpha2,neural_model_alpha20", seeds=(0, 1))
    _report(config, study_plan)
    accuracy, linf, l2 = saved_figures["alpha.png"].axes
    by_alpha = {0.0: "none", 2.0: "neural_model_alpha2", 20.0: "neural_model_alpha20"}
    for axis, key, label in ((accuracy, "clean", "clean"), (linf, "linf", "L-inf"), (l2, "l2", "L2")):
        line = next(c for c in axis.containers if c.get_label() == label).lines[0]  # the errorbar's data line
        expected = [np.mean([_numbers(names.index(by_alpha[a]), seed)[key] for seed in (0, 1)]) for a in (0.0, 2.0, 20.0)]
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.0, 2.0, 20.0])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), expected)


def test_the_effort_curves_of_the_checks_are_averaged_over_seeds_in_table_and_figure(tmp_path):
    config = cli.load_config("study.py", "runlocal")
    config.conditions = "none,neural_model"
    config.seeds = (0, 1)
    config.report_only = True
    study_plan = plan_lib.make_plan(config, str(tmp_path / "study"))
    names = [c.name for c in study_plan.conditions]
    curves = {}
    for run in study_plan.runs:
        _write_run(run, _numbers(names.index(run.condition.name), run.seed))
        path = os.path.join(run.evaluation_directory, "robustness.json")
        evaluated = json.load(open(path))
        curve = [{"iterations": k, "median": 0.02 + 0.001 * run.seed - 0.0005 * i} for i, k in enumerate((10, 30, 100))]
        curves[run.key] = curve
        evaluated["models"][0]["adversarial"]["linf"]["diagnostics"] = {
            "effort_curve": curve, "checks": [{"name": "effort", "status": "flag" if run.seed else "pass"}]}
        write_json_atomic(path, evaluated)
    _, _, markdown = _report(config, study_plan)
    assert os.path.isfile(os.path.join(study_plan.workdir, "figures", "effort.png"))
    mean_last = np.mean([curves[f"none/seed_{s}"][-1]["median"] for s in (0, 1)])
    row = next(line for line in markdown.splitlines() if line.startswith("| None | linf |"))
    assert row.split("|")[3].strip() == "1/2"  # one of two seeds flagged
    assert row.rstrip(" |").endswith(f"{mean_last:.4g}")


def test_the_report_can_be_rewritten_while_the_study_runs(tmp_path):
    import socket
    import subprocess
    import sys

    from neuroreg_tf.errors import WorkdirError
    from neuroreg_tf.study import runner

    config, study_plan, _ = _hand_written_study(tmp_path, claimed=True)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # another live process holds the study
        write_json_atomic(os.path.join(study_plan.workdir, workdir.LOCK),
                          {"pid": running.pid, "host": socket.gethostname(), "what": "study", "since": "now"})
        result = runner.run_study(config, study_plan.workdir, progress=None)
        assert result["counts"]["finished"] == 9
        config.report_only = False
        with pytest.raises(WorkdirError, match="is in use by"):
            runner.run_study(config, study_plan.workdir, progress=None)
    finally:
        running.kill()
