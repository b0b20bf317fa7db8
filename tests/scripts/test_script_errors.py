"""The scripts refuse bad input in one or two lines (exit 2, no traceback), from any directory."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S, needs_fashion_mnist


def run(script, *flags, cwd):
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *flags],
        cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )


def assert_short_error(completed, *fragments):
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr and "oneDNN" not in completed.stderr
    error_lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(error_lines) <= 2, completed.stderr
    for fragment in fragments:
        assert fragment in completed.stderr, completed.stderr


@pytest.mark.parametrize("script, flags, fragments", [
    ("train.py", ["--config=configs/demo.py:fast"],
     ["configs/demo.py has no variant 'fast'", "configs/demo.py:runlocal"]),
    ("train.py", ["--config.similarity.lss=cka"],
     ["config.similarity has no field 'lss'", "Did you mean --config.similarity.loss?"]),
    ("train.py", ["--config.foo=1"], ["config has no field 'foo'", "alpha, batch_norm"]),
    ("train.py", ["--config.alpha=nan"], ["config.alpha must be a finite number", "Received: nan"]),
    ("train.py", ["--config.epochs=0"], ["config.epochs must be an integer >= 1", "Received: 0"]),
    ("evaluate.py", ["--config.adversarial.num_examples=-1"],
     ["config.adversarial.num_examples must be an integer >= 1", "Received: -1"]),
    ("evaluate.py", ["--config.noise.sigmas=(0.1,-0.2)"],
     ["config.noise.sigmas must be a non-empty list of finite numbers >= 0"]),
    ("build_target.py", ["--config.target.kind=imagenet"], ["config.target.kind", "'neural_model'"]),
    ("demo.py", ["--config.evaluation.noise.seeds=()"], ["config.evaluation.noise.seeds must be a non-empty list"]),
    # Old spellings are refused with the new name.
    ("demo.py", ["--config.evaluation.seeds=(0,)"],
     ["config.evaluation.seeds is now config.evaluation.noise.seeds", "use --config.evaluation.noise.seeds"]),
    ("build_target.py", ["--config.vgg.weights=/x.h5"], ["config.vgg.weights is now config.kinds.vgg.weights"]),
    ("study.py", ["--config.vgg_weights=/x.h5"], ["config.vgg_weights is now config.build.kinds.vgg.weights"]),
    ("study.py", ["--config.evaluation.noise_seeds=(0,)"], ["is now config.evaluation.noise.seeds"]),
    ("evaluate.py", ["--adversarial"], ["--adversarial is now --config.adversarial.enabled=True"]),
])
def test_bad_config_is_refused_in_one_line_from_any_directory(tmp_path, script, flags, fragments):
    completed = run(script, f"--workdir={tmp_path / 'out'}", *flags, cwd=tmp_path)
    assert_short_error(completed, *fragments)
    assert not (tmp_path / "out").exists(), "nothing was started"


def test_help_lists_the_config_fields(tmp_path):
    completed = run("train.py", "--help", cwd=tmp_path)  # absl exits with status 1 after --help
    assert "--config.alpha=20.0" in completed.stdout
    assert "--config.similarity.loss='arctanh'" in completed.stdout
    assert "--workdir" in completed.stdout and "--[no]debug" in completed.stdout


@needs_fashion_mnist
def test_a_demo_of_another_config_in_the_same_workdir_is_refused(tmp_path):
    workdir = str(tmp_path / "demo")
    first = run("demo.py", "--config=configs/demo.py:runlocal", f"--workdir={workdir}", cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run("demo.py", "--config=configs/demo.py:runlocal", f"--workdir={workdir}", cwd=REPO_ROOT)
    assert again.returncode == 0 and again.stdout.count("reusing it") == 4  # target, 2 runs, evaluation
    table = lambda output: output[output.index("\nmodel "):].split("\nwrote")[0].strip()  # noqa: E731
    assert table(again.stdout) == table(first.stdout)
    full = run("demo.py", f"--workdir={workdir}", cwd=REPO_ROOT)
    assert_short_error_lines = full.returncode == 2 and "Traceback" not in full.stderr
    assert assert_short_error_lines, full.stderr[-2000:]
    assert "config.simulation.preset: \"tiny\" there, \"small\" here" in full.stderr
    assert "--config.overwrite=True" in full.stderr


@pytest.mark.parametrize("workdir, fragment", [
    ("", "--workdir is empty"),
    ("a_file", "is a file, not a directory"),
    ("a_file/run", "which is a file"),
])
def test_a_workdir_that_cannot_be_a_directory_is_refused_in_one_line(tmp_path, workdir, fragment):
    (tmp_path / "a_file").write_text("not a directory")
    completed = run("train.py", "--config=configs/demo.py:runlocal", f"--workdir={workdir}", cwd=tmp_path)
    assert_short_error(completed, fragment)
