"""study.py end to end on :runlocal (every condition kind), its statistics, resuming, and bad configs."""

import csv
import json
import math
import os
import signal
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from scipy import stats

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S, needs_fashion_mnist
from neuroreg_tf import cli
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.study import conditions, plan

KINDS = ["none", "neural_model", "neural_data", "shuffle", "random", "ground_truth", "gabor_v1", "pixel",
         "neural_model_cka"]


def study(workdir, *flags, expect=0, **popen):
    command = [sys.executable, os.path.join(REPO_ROOT, "study.py"), "--config=configs/study.py:runlocal",
               f"--workdir={workdir}", "--config.workers=0", *flags]
    if popen:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == expect, completed.stderr[-3000:]
    return completed


def rows(workdir):
    with open(os.path.join(workdir, "study.csv")) as handle:
        return {(r["condition"], int(r["seed"])): r for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """:runlocal with every condition kind at seed 0, then grown to seed 1 for None and Neural (model)."""
    workdir = str(tmp_path_factory.mktemp("study"))
    first = study(workdir, "--config.seeds=(0,)")
    grown = study(workdir, "--config.seeds=(0,1)", "--config.conditions=none,neural_model")
    return workdir, first.stdout, grown.stdout


@pytest.mark.slow
@needs_fashion_mnist
def test_every_condition_kind_runs_and_the_report_is_written(finished):
    workdir, first, grown = finished
    assert "run 9/9" in first and "about" in first  # one progress line per run, with an ETA
    assert "vgg" in first and "VGG19 weights" in first  # listed as skipped, with the reason
    assert "2 already finished, 2 to run" in grown  # the grown study reuses its finished runs
    for kind in KINDS:
        assert os.path.isfile(os.path.join(workdir, "runs", kind, "seed_0", "evaluation", "robustness.json")), kind
    report = json.load(open(os.path.join(workdir, "study.json")))
    assert report["counts"] == {"finished": 4, "stale": 0, "failed": 0, "missing": 0}
    assert [c["name"] for c in report["conditions"]] == ["none", "neural_model"]
    assert report["label"] == "SIMULATED V1 / fashion_mnist"
    for name in ("report.md", "study.csv", "figures/noise_curves.png", "figures/adversarial.png", "figures/gamma.png"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    config = json.load(open(os.path.join(workdir, "config.json")))
    cka = next(c for c in plan.make_plan(ml_collections.ConfigDict({**config, "conditions": ",".join(KINDS)}),
                                             workdir).conditions if c.name == "neural_model_cka")
    assert cka.similarity_loss == "cka" and cka.alpha == 2.0
    none = next(c for c in report["conditions"] if c["name"] == "none")
    assert none["alpha"] == 0.0
    runs = json.load(open(os.path.join(workdir, "runs", "neural_model_cka", "seed_0", "config.json")))
    assert runs["similarity"]["loss"] == "cka" and runs["alpha"] == 2.0
    markdown = open(os.path.join(workdir, "report.md")).read()
    assert "SIMULATED" in markdown and "paired t-test" in markdown
    # The Neural (model) target's diagnostics beside the condition, read from its build's report.
    build_report = json.load(open(os.path.join(workdir, "targets", "main", "target_report.json")))
    model_diagnostics = build_report["target_diagnostics"]["kinds"]["neural_model"]
    assert report["target_diagnostics"]["neural_model"]["participation_ratio"] == model_diagnostics["participation_ratio"]
    assert "| Neural (model) | 312 | " in markdown


@pytest.mark.slow
@needs_fashion_mnist
def test_report_numbers_equal_a_recomputation_from_the_per_run_table(finished):
    workdir, _, _ = finished
    report = json.load(open(os.path.join(workdir, "study.json")))
    table = rows(workdir)
    for name in ("none", "neural_model"):
        values = [float(table[(name, seed)]["clean"]) for seed in (0, 1)]
        summary = report["summaries"][name]["clean"]
        assert summary["n"] == 2 and summary["mean"] == pytest.approx(np.mean(values))
        assert summary["sem"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(2))
        noisy = [float(table[(name, seed)]["noise_0.2"]) for seed in (0, 1)]
        assert report["summaries"][name]["noise_0.2"]["mean"] == pytest.approx(np.mean(noisy))
    for name in ("neural_model",):
        ours = report["comparisons"]["none"]["clean"][name]
        a = np.array([float(table[(name, s)]["clean"]) for s in (0, 1)])
        b = np.array([float(table[("none", s)]["clean"]) for s in (0, 1)])
        assert ours["difference"] == pytest.approx((a - b).mean())
        if ours["p"] is not None:
            assert ours["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


@pytest.mark.slow
@needs_fashion_mnist
def test_an_interrupted_study_resumes_to_the_uninterrupted_numbers(finished, tmp_path):
    workdir, _, _ = finished
    target = os.path.join(workdir, "targets", "main", "target")
    flags = [f"--config.conditions=path:neural={target}"]
    process = study(str(tmp_path / "resumed"), *flags, popen=True)
    try:
        process.wait(timeout=np.random.default_rng(7).uniform(6.0, 14.0))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    study(str(tmp_path / "resumed"), *flags)
    resumed, uninterrupted = rows(tmp_path / "resumed"), rows(workdir)
    for seed in (0, 1):  # (runlocal scores L-inf only: the report has no L2 column)
        for column in ("clean", "noise_0.2", "linf_median", "similarity_r"):
            assert resumed[("neural", seed)][column] == uninterrupted[("neural_model", seed)][column], column


@pytest.mark.slow
@needs_fashion_mnist
def test_records_of_another_model_are_stale_and_a_retrained_run_is_evaluated_again(finished, tmp_path):
    import shutil

    from neuroreg_tf.fileio import sha256_tree
    from neuroreg_tf.workdir import read_identity

    copy = str(tmp_path / "study")
    shutil.copytree(finished[0], copy)
    flags = ["--config.seeds=(0,1)", "--config.conditions=none,neural_model"]
    run = os.path.join(copy, "runs", "none", "seed_1")
    # The model file changes after its evaluation: the report must not use that evaluation.
    os.makedirs(os.path.join(run, "export", "assets"), exist_ok=True)
    with open(os.path.join(run, "export", "assets", "changed.txt"), "w") as f:
        f.write("another model")
    reported = study(copy, *flags, "--config.report_only=True", expect=1)
    assert "1 run(s) of this study did not finish (stale)" in reported.stderr
    report = json.load(open(os.path.join(copy, "study.json")))
    assert report["counts"] == {"finished": 3, "stale": 1, "failed": 0, "missing": 0}
    (stale,) = [r for r in report["runs"] if r["status"] == "stale"]
    assert (stale["condition"], stale["seed"]) == ("none", 1) and "scored another model" in stale["error"]
    assert "clean" not in stale and rows(copy)[("none", 1)]["clean"] == ""
    assert "none seed 1: stale (its evaluation scored another model" in open(os.path.join(copy, "report.md")).read()
    # A run that lost its summary is trained again; its old evaluation is replaced, not reused.
    # (In a worker process: the study's config reaches it on its standard input.)
    os.remove(os.path.join(run, "export", "assets", "changed.txt"))
    os.remove(os.path.join(run, "summary.json"))
    again = study(copy, *flags, "--config.workers=1")
    assert "1 to run" in again.stdout and "4 finished, 0 stale, 0 failed, 0 missing" in again.stdout
    scored = read_identity(os.path.join(run, "evaluation"))["models"][0]["artifact"]
    assert scored == sha256_tree(os.path.join(run, "export"))
    assert json.load(open(os.path.join(copy, "study.json")))["counts"]["finished"] == 4


def _config(**changes):
    config = cli.load_config("study.py", "runlocal")
    for key, value in changes.items():
        section = config
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    return config


@pytest.mark.parametrize("changes, message", [
    ({"conditions": "none,neural_modle"}, "Unknown condition 'neural_modle'"),
    ({"alpha": -1.0}, "config.alpha must be a finite number in \\[0, inf\\)"),
    ({"seeds": ()}, "config.seeds must be a non-empty list"),
    ({"seeds": (0, 0)}, "distinct training seeds"),
    ({"shard": "3/2"}, "config.shard must be K/N"),
    ({"conditions": "none,ground_truth", "build.recordings": REPO_ROOT}, "needs the SIMULATED population's ground truth"),
    ({"conditions": "none,low_snr_model", "build.recordings": REPO_ROOT}, "is a simulator ablation"),
    ({"train.epochs": 0}, "config.epochs must be an integer >= 1"),
    ({"conditions": "path:x=/nonexistent"}, "no target at '/nonexistent'"),
])
def test_bad_study_configs_are_refused_before_anything_runs(changes, message):
    with pytest.raises(ConfigError, match=message):
        plan.check_config(_config(**changes))


def test_condition_names_cover_sweeps_and_ablations():
    assert conditions.alpha_sweep((0, 2, 40)) == ["none", "neural_model_alpha2", "neural_model_alpha40"]
    swept = conditions.resolve("neural_model_alpha5", alpha=20, alpha_cka=2)
    assert swept.alpha == 5.0 and swept.kind == "neural_model"
    ablation = conditions.resolve("low_snr_data", alpha=20, alpha_cka=2)
    assert ablation.build == "low_snr" and ablation.kind == "neural_data"
    config = _config(conditions="none,high_sf_model,high_sf_data")
    study_plan = plan.make_plan(config, "/tmp/x")
    assert study_plan.builds["high_sf"].simulation.wavelength_range == (6.0, 12.0)
    assert study_plan.builds["high_sf"].target.extra_kinds == "neural_data"
    assert [r.key for r in study_plan.runs][:3] == ["none/seed_0", "none/seed_1", "high_sf_model/seed_0"]
    sharded = plan.make_plan(_config(shard="2/3"), "/tmp/x")
    assert [r.index % 3 for r in sharded.shard_runs()] == [1] * len(sharded.shard_runs())


def test_shards_together_run_every_run_exactly_once():
    everything = [r.key for r in plan.make_plan(_config(), "/tmp/x").runs]
    for count in (1, 2, 3, 5):
        shards = [[r.key for r in plan.make_plan(_config(shard=f"{k}/{count}"), "/tmp/x").shard_runs()]
                  for k in range(1, count + 1)]
        assert sorted(key for shard in shards for key in shard) == sorted(everything), count
        assert max(len(shard) for shard in shards) - min(len(shard) for shard in shards) <= 1  # balanced


def test_each_run_trains_with_its_conditions_settings_and_its_own_seed():
    config = _config(conditions="none,neural_model,neural_model_cka,neural_model_alpha5,noise_augmentation,"
                                "low_snr_model")
    study_plan = plan.make_plan(config, "/tmp/x")
    expected_alpha = {"none": 0.0, "neural_model": config.alpha, "neural_model_cka": config.alpha_cka,
                      "neural_model_alpha5": 5.0, "noise_augmentation": 0.0, "low_snr_model": config.alpha}
    for run in study_plan.runs:
        trained = study_plan.train_config(config.train, run)
        name = run.condition.name
        assert (trained.seed, trained.alpha) == (run.seed, expected_alpha[name]), run.key
        assert trained.similarity.loss == ("cka" if name == "neural_model_cka" else "arctanh")
        assert trained.robust_training.noise_max_sigma == (0.5 if name == "noise_augmentation" else 0.0)
        build = "low_snr" if name == "low_snr_model" else "main"
        if name != "none":
            assert trained.target.path.startswith(os.path.join("/tmp/x", "targets", build)), (run.key, trained.target.path)
        assert trained.epochs == config.train.epochs and trained.data.train_limit == config.train.data.train_limit
    assert config.train.seed == cli.load_config("study.py", "runlocal").train.seed  # the template is not changed


def test_the_advice_for_a_changed_study_config_works_when_followed(tmp_path):
    import shutil

    from neuroreg_tf import workdir
    from neuroreg_tf.errors import WorkdirError
    from neuroreg_tf.study import runner

    path = str(tmp_path / "study")
    workdir.claim(path, plan.study_identity(_config()), what="study", finished_marker="(never)", overwrite=False)
    changed = _config(**{"train.alpha": 5.0}, report_only=True)
    with pytest.raises(WorkdirError) as refused:
        runner.run_study(changed, path, progress=None)
    assert f"delete {path} (or move it aside) to start this study over" in str(refused.value)
    assert "--config.overwrite=True" not in str(refused.value)  # study.py never overwrites
    shutil.rmtree(path)  # the advice, followed
    report = runner.run_study(changed, path, progress=None)  # report_only: nothing trains
    assert report["counts"]["missing"] == len(report["runs"]) > 0
    assert len(report["unfinished_in_this_shard"]) == len(report["runs"])
