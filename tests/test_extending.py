"""Each everyday extension is one registration, and everything downstream takes it.

A target kind (``tests/plugins/inverted_pixel_kind.py``, loaded as a user's module would be,
through ``NEUROREG_TF_PLUGINS``) and a study condition are added here; the similarity loss, the
recording format and the report metric have their own tests (``tests/models/test_regularized.py``,
``tests/neural/test_recordings.py``, ``tests/study/test_report_metrics.py``). Then: a finished
target build grows with a kind it lacks instead of being refused, and workdirs recorded with the
config's old key names are the same work under the new ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S

from neuroreg_tf import cli, fileio, plugins, targets, workdir
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import build_config, build_targets, target_registry
from neuroreg_tf.study import conditions, plan

PLUGIN = "inverted_pixel_kind"
PLUGIN_DIR = os.path.join(REPO_ROOT, "tests", "plugins")


@pytest.fixture
def plugin_kind(monkeypatch):
    """The test kind, registered through NEUROREG_TF_PLUGINS as a script would load it."""
    monkeypatch.syspath_prepend(PLUGIN_DIR)
    monkeypatch.setenv(plugins.VARIABLE, PLUGIN)
    plugins.load()
    yield target_registry.get_target_kind("inverted_pixel")
    target_registry.unregister_target_kind("inverted_pixel")
    sys.modules.pop(PLUGIN, None)


def _script_env():
    return {**os.environ, plugins.VARIABLE: PLUGIN,
            "PYTHONPATH": os.pathsep.join([PLUGIN_DIR, REPO_ROOT, os.environ.get("PYTHONPATH", "")])}


def test_a_kind_from_a_plugin_module_is_listed_by_build_target_help(tmp_path):
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "build_target.py"), "--help"],
                               cwd=tmp_path, env=_script_env(), capture_output=True, text=True,
                               timeout=SUBPROCESS_TIMEOUT_S)
    assert "  inverted_pixel: Eq 2 on the pixels of 1 - image (a test kind)" in completed.stdout
    assert "  vgg: VGG19 block3_conv1" in completed.stdout  # the built-in kinds are listed too
    assert "--config.kinds.vgg.weights=''" in completed.stdout


def test_a_registered_kind_is_built_checked_and_a_study_condition(plugin_kind, tmp_path):
    config = cli.load_config("build_target.py", "runlocal")
    config.target.extra_kinds = "inverted_pixel"
    target_path = build_targets.ensure_built(config, str(tmp_path / "build"), progress=None)
    built = targets.load_target(str(tmp_path / "build" / "targets" / "inverted_pixel"))
    # Independent oracle (Eq 2 by hand): centre each inverted pixel over stimuli, unit rows, products.
    inverted = 1.0 - np.asarray(built.stimuli, np.float64).reshape(built.n_stimuli, -1)
    centred = inverted - inverted.mean(axis=0, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(built.similarity(np.arange(built.n_stimuli)), unit @ unit.T, atol=1e-5)
    np.testing.assert_array_equal(built.stimuli, targets.load_target(target_path).stimuli)
    report = json.load(open(tmp_path / "build" / "target_report.json"))
    assert report["kinds"]["inverted_pixel"] == plugin_kind.description
    # The study: a condition of the same name on the main build, trained with that target.
    study = cli.load_config("study.py", "runlocal")
    study.conditions = "none,inverted_pixel"
    study_plan = plan.make_plan(study, str(tmp_path / "study"))
    condition = study_plan.conditions[1]
    assert (condition.name, condition.label, condition.kind, condition.alpha) == (
        "inverted_pixel", "Inverted pixel", "inverted_pixel", study.alpha)
    assert study_plan.builds["main"].target.extra_kinds == "inverted_pixel"
    assert study_plan.target_path(condition).endswith(os.path.join("targets", "main", "targets", "inverted_pixel"))


def test_an_unknown_kind_names_the_closest_one_and_every_kind():
    with pytest.raises(ConfigError, match=r"Unknown target kind 'neural_modl'\. Did you mean 'neural_model'\?.*vgg"):
        target_registry.get_target_kind("neural_modl")
    with pytest.raises(ValueError, match="already registered"):
        target_registry.register_target_kind(target_registry.TargetKind(
            "pixel", "Pixel", "another pixel kind", build=lambda context, path: 0))
    with pytest.raises(ValueError, match="needs"):
        target_registry.TargetKind("x", "X", "x", build=lambda context, path: 0, needs={"a_brain"})


def test_a_registered_condition_is_accepted_by_the_study(tmp_path):
    extra = conditions.Condition("neural_model_quarter", "Neural (model), alpha / 4", conditions.MAIN_BUILD,
                                 "neural_model", 5.0, note="a test condition")
    conditions.register_condition(extra)
    try:
        study = cli.load_config("study.py", "runlocal")
        study.conditions = "none,neural_model_quarter"
        study_plan = plan.make_plan(study, str(tmp_path))
        assert [r.key for r in study_plan.runs] == [
            "none/seed_0", "none/seed_1", "neural_model_quarter/seed_0", "neural_model_quarter/seed_1"]
        assert study_plan.train_config(study.train, study_plan.runs[2]).alpha == 5.0
    finally:
        conditions.unregister_condition("neural_model_quarter")
    with pytest.raises(ConfigError, match="Unknown condition 'neural_model_quarter'"):
        conditions.resolve("neural_model_quarter", alpha=20.0, alpha_cka=2.0)


def _sha(path):
    return {name: fileio.sha256_file(os.path.join(path, name)) for name in sorted(os.listdir(path))}


def test_a_finished_build_grows_with_a_kind_it_lacks_and_keeps_what_it_has(tmp_path):
    out = str(tmp_path / "build")
    config = cli.load_config("build_target.py", "runlocal")  # neural_data only
    build_targets.ensure_built(config, out, progress=None)
    before = _sha(os.path.join(out, "target"))
    messages = []
    config.target.extra_kinds = "pixel"
    build_targets.ensure_built(config, out, progress=messages.append)
    assert any("without ['pixel']: adding them" in m for m in messages), messages
    assert _sha(os.path.join(out, "target")) == before, "the kept target is not written again"
    report = json.load(open(os.path.join(out, "target_report.json")))
    assert sorted(report["targets"]) == ["neural_data", "pixel"]
    assert targets.load_target(os.path.join(out, "targets", "pixel")).kind == "pixel"
    # Asking for fewer kinds reuses the build as it is.
    messages.clear()
    config.target.extra_kinds = ""
    build_targets.ensure_built(config, out, progress=messages.append)
    assert any("reusing it" in m for m in messages), messages
    # Another config (not only other kinds) is still refused.
    config.target.seed = 5
    with pytest.raises(workdir.WorkdirError, match="target.seed"):
        build_targets.ensure_built(config, out, progress=None)


def test_a_build_recorded_with_the_old_key_names_is_the_same_build(tmp_path):
    out = str(tmp_path / "build")
    config = cli.load_config("build_target.py", "runlocal")
    build_targets.ensure_built(config, out, progress=None)
    # What a build made before the kind registry recorded, written by hand: the "vgg" section
    # instead of "kinds", and the extra kinds in the identity.
    old_config = {k: v for k, v in config.to_dict().items() if k not in ("kinds", "overwrite")}
    old_config["vgg"] = {"weights": ""}
    old_config["simulation"] = {k: v for k, v in old_config["simulation"].items() if k != "latent_strength"}
    old = {"kind": "target build", "config": old_config, "recordings": []}
    fileio.write_json_atomic(os.path.join(out, workdir.IDENTITY), {**old, "fingerprint": workdir.fingerprint_of(old)})
    messages = []
    build_targets.ensure_built(config, out, progress=messages.append)
    assert any("reusing it" in m for m in messages), messages
    assert json.load(open(os.path.join(out, workdir.IDENTITY)))["fingerprint"] == workdir.fingerprint_of(
        build_targets.build_identity(config))
    # train.py's target id of such a build: the fingerprint of the old identity.
    assert workdir.fingerprint_of(build_targets.legacy_build_identity(config)) == workdir.fingerprint_of(old)


def test_a_study_recorded_with_the_old_key_names_is_the_same_study():
    config = cli.load_config("study.py")
    config.build.kinds.vgg.weights = "/weights/vgg19.h5"
    new = config.to_dict()
    old = json.loads(json.dumps(new))  # the names before the one vocabulary, by hand
    old["vgg_weights"] = "/weights/vgg19.h5"
    del old["build"]["kinds"]
    old["build"]["vgg"] = {"weights": ""}
    evaluation = old["evaluation"]
    evaluation["sigmas"] = evaluation["noise"]["sigmas"]
    evaluation["noise_seeds"] = evaluation.pop("noise")["seeds"]
    evaluation["adversarial_examples"] = evaluation["adversarial"]["num_examples"]
    evaluation["norms"] = evaluation["adversarial"]["norms"]
    evaluation["attacks"] = evaluation.pop("adversarial")["preset"]
    recorded = {"kind": "study", "config": {k: v for k, v in old.items() if k not in plan.IDENTITY_EXCLUDED}}
    assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) == workdir.fingerprint_of(plan.study_identity(config))
    recorded["config"]["alpha"] = 2.0  # another study is still another study
    assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) != workdir.fingerprint_of(plan.study_identity(config))


def test_a_build_recorded_before_latent_strength_existed_is_the_same_build(tmp_path):
    out = str(tmp_path / "build")
    config = cli.load_config("build_target.py", "runlocal")
    build_targets.ensure_built(config, out, progress=None)
    recorded = json.load(open(os.path.join(out, workdir.IDENTITY)))
    del recorded["config"]["simulation"]["latent_strength"]  # what builds before the key recorded
    del recorded["fingerprint"]
    fileio.write_json_atomic(os.path.join(out, workdir.IDENTITY), {**recorded, "fingerprint": workdir.fingerprint_of(recorded)})
    messages = []
    build_targets.ensure_built(config, out, progress=messages.append)
    assert any("reusing it" in m for m in messages), messages
    # train.py's target id for builds of the versions before the kind registry holds no such key.
    assert "latent_strength" not in build_targets.legacy_build_identity(config)["config"]["simulation"]
    study = cli.load_config("study.py")
    recorded_study = plan.study_identity(study)
    del recorded_study["config"]["build"]["simulation"]["latent_strength"]
    assert workdir.fingerprint_of(plan.upgrade_identity(recorded_study)) == workdir.fingerprint_of(plan.study_identity(study))
    # Another noise level is another build, named in the refusal.
    config.simulation.latent_strength = 0.8
    assert "latent_strength" in build_targets.legacy_build_identity(config)["config"]["simulation"]
    with pytest.raises(workdir.WorkdirError, match="simulation.latent_strength"):
        build_targets.ensure_built(config, out, progress=None)
    config.simulation.latent_strength = -1.0
    with pytest.raises(ConfigError, match="config.simulation.latent_strength: must be >= 0"):
        build_config.check_simulation(config)


def test_studies_recorded_before_the_validation_split_are_the_same_studies():
    for variant in (None, "audit", "runlocal"):
        study = cli.load_config("study.py", variant)
        recorded = plan.study_identity(study)
        recorded["config"]["train"]["data"].pop("validation_size", None)
        assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) == workdir.fingerprint_of(plan.study_identity(study))
        study.train.data.train_limit = None  # all training images: the split takes some from training
        recorded = plan.study_identity(study)
        recorded["config"]["train"]["data"].pop("validation_size", None)
        study.train.data.validation_size = 0
        assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) == workdir.fingerprint_of(plan.study_identity(study))
        study.train.data.validation_size = 2000
        assert workdir.fingerprint_of(plan.upgrade_identity(recorded)) != workdir.fingerprint_of(plan.study_identity(study))
