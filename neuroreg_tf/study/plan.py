"""A study config (``configs/study.py``) checked and turned into target builds and runs.

Layout of a study's workdir::

    <workdir>/identity.json, config.json      what made the study (conditions and seeds may grow)
    <workdir>/targets/<build>/                a target build (build_target.py's layout): "main",
                                              or an ablation's simulator variation
    <workdir>/runs/<condition>/seed_<k>/      an ordinary training run (train.py's layout) ...
    <workdir>/runs/<condition>/seed_<k>/evaluation/   ... and its evaluation (evaluate.py's)
    <workdir>/runs/<condition>/seed_<k>.log, .failed.json   a worker's output; why a run failed
    <workdir>/study.json, study.csv, report.md, figures/   the report
"""

from __future__ import annotations

import copy
import dataclasses
import os

import ml_collections

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.config import ConfigChecker, comma_list, rename_keys, train_identity_view, with_added_train_sections
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import build_config, target_registry
from neuroreg_tf.study import conditions as conditions_lib
from neuroreg_tf.study.conditions import MAIN_BUILD, Condition
from neuroreg_tf.robustness import evaluation
from neuroreg_tf.robustness.adversarial import arguments_from_config
from neuroreg_tf.robustness.settings import EPSILON_NORMS, NORMS, PRESETS, AttackSettings, preset
from neuroreg_tf.training import trainer

BUILDS_DIR = "targets"  # <study>/targets/<build>/: one target build per name (not workdir.TARGETS)
RUNS_DIR = "runs"
EVALUATION_DIR = "evaluation"
# Beside a run directory (not in it: the directory is the training run's own):
FAILED_SUFFIX = ".failed.json"  # runs/<condition>/seed_<k>.failed.json: why the run failed
LOG_SUFFIX = ".log"  # runs/<condition>/seed_<k>.log: a worker process's output
# Keys that may change between invocations of one study without changing what its runs compute.
# (``alignment`` measures finished runs without changing them; its results record their own settings.)
IDENTITY_EXCLUDED = ("conditions", "seeds", "shard", "workers", "overwrite", "report_only", "primary", "alignment")
# Keys older versions used, and their names now (configs/study.py refuses the old names on the
# command line; ``upgrade_identity`` reads a workdir recorded with them).
RENAMED = {
    "vgg_weights": "build.kinds.vgg.weights",
    "build.vgg.weights": "build.kinds.vgg.weights",
    "evaluation.sigmas": "evaluation.noise.sigmas",
    "evaluation.noise_seeds": "evaluation.noise.seeds",
    "evaluation.adversarial_examples": "evaluation.adversarial.num_examples",
    "evaluation.norms": "evaluation.adversarial.norms",
    "evaluation.attacks": "evaluation.adversarial.preset",
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a study: a condition at a seed, and where it lives."""

    condition: Condition
    seed: int
    index: int
    directory: str
    # What the study's evaluation settings make of an evaluation's identity
    # (``evaluation.settings_identity``): an evaluation recorded with others is stale.
    evaluation_settings: dict | None = None
    # The cheaper attack preset the run is also scored with (``evaluation.adversarial.compare_preset``).
    compare_preset: str | None = None

    @property
    def comparison_directory(self) -> str | None:
        """Where the run's scoring with ``compare_preset`` lives (None without one)."""
        return os.path.join(self.directory, f"{EVALUATION_DIR}_{self.compare_preset}") if self.compare_preset else None

    @property
    def evaluation_directory(self) -> str:
        return os.path.join(self.directory, EVALUATION_DIR)

    @property
    def failed_path(self) -> str:
        return self.directory + FAILED_SUFFIX

    @property
    def log_path(self) -> str:
        return self.directory + LOG_SUFFIX

    @property
    def key(self) -> str:
        return f"{self.condition.name}/seed_{self.seed}"


@dataclasses.dataclass
class StudyPlan:
    """The builds and runs of a study, and the conditions it had to skip (with the reason)."""

    workdir: str
    conditions: list[Condition]
    skipped: dict[str, str]
    builds: dict[str, ml_collections.ConfigDict]
    runs: list[Run]
    shard: tuple[int, int]

    def build_directory(self, build: str) -> str:
        return os.path.join(self.workdir, BUILDS_DIR, build)

    def target_path(self, condition: Condition) -> str:
        """The target directory a condition trains with."""
        if condition.path:
            return condition.path
        build_dir = self.build_directory(condition.build)
        if condition.kind == self.builds[condition.build].target.kind:
            return os.path.join(build_dir, workdir_files.TARGET)
        return os.path.join(build_dir, workdir_files.TARGETS, condition.kind)

    def shard_runs(self) -> list[Run]:
        """The runs of this shard (``config.shard = K/N``: every N-th run, from the K-th)."""
        index, count = self.shard
        return [run for run in self.runs if run.index % count == index - 1]

    def train_config(self, template: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
        """The training config of ``run``: the study's ``train`` section with the condition's settings."""
        config = copy.deepcopy(template)
        config.alpha = float(run.condition.alpha)
        config.seed = int(run.seed)
        config.similarity.loss = run.condition.similarity_loss
        config.target.path = self.target_path(run.condition)
        config.verbose = 0
        for key, value in run.condition.train:
            *parents, leaf = key.split(".")
            section = config
            for parent in parents:
                section = section[parent]
            section[leaf] = value
        return config


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4)."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise ConfigError(
            "config.shard must be K/N with 1 <= K <= N (this machine runs every N-th run, from "
            f"the K-th; e.g. a Slurm array task: --config.shard=$((SLURM_ARRAY_TASK_ID+1))/N). "
            f"Received: {text!r}"
        )
    return index, count


def condition_names(config) -> list[str]:
    names = comma_list(config.conditions)
    if not names:
        raise ConfigError("config.conditions names no condition. Received: ''")
    if len(set(names)) != len(names):
        raise ConfigError(f"config.conditions repeats a condition. Received: {config.conditions!r}")
    return names


def check_config(config) -> None:
    """Refuses a study config that cannot work, before any target is built or run trained.

    Raises:
        ConfigError: naming the bad key (or condition), what it accepts and what it received.
    """
    check = ConfigChecker(config)
    check.number("alpha", minimum=0)
    check.number("alpha_cka", minimum=0)
    check.integers("seeds", minimum=0)
    if len(set(config.seeds)) != len(config.seeds):
        check.fail("seeds", "distinct training seeds")
    check.integer("workers", minimum=0)
    parse_shard(config.shard)
    for name in condition_names(config):
        condition = conditions_lib.resolve(name, alpha=config.alpha, alpha_cka=config.alpha_cka)
        if condition.alpha < 0:
            raise ConfigError(f"Condition {name!r} has alpha {condition.alpha} < 0. Received: {name!r}")
        kind = condition.target_kind
        if kind is not None and target_registry.GROUND_TRUTH in kind.needs and config.build.recordings:
            raise ConfigError(
                f"Condition {name!r} needs the SIMULATED population's ground truth, which real "
                "recordings (config.build.recordings) do not have: drop it from config.conditions. "
                f"Received: conditions={config.conditions!r}"
            )
        if condition.build not in ("", MAIN_BUILD) and config.build.recordings:
            raise ConfigError(
                f"Condition {name!r} is a simulator ablation; with real recordings "
                "(config.build.recordings) there is no simulator to vary. Received: "
                f"conditions={config.conditions!r}"
            )
        if condition.path and not os.path.isfile(os.path.join(condition.path, "metadata.json")):
            raise ConfigError(f"Condition {name!r}: no target at {condition.path!r} (no metadata.json).")
    trainer.check_config(_probe_train_config(config))
    build_config.check_build_config(config.build)
    check.integer("evaluation.num_examples", minimum=0)
    check.choice("evaluation.adversarial.preset", ("", "default", *PRESETS))
    check.integer("evaluation.adversarial.num_examples", minimum=0)
    check.subset("evaluation.adversarial.norms", NORMS)
    try:
        primary_hypotheses(config)
    except ValueError as error:
        raise ConfigError(f"config.primary: {error}") from None
    if config.evaluation.adversarial.get("compare_preset"):
        check.choice("evaluation.adversarial.compare_preset", ("", *PRESETS))
        if not any(n in EPSILON_NORMS for n in config.evaluation.adversarial.norms):
            check.fail("evaluation.adversarial.compare_preset", f"only with one of the norms {EPSILON_NORMS}")
    problem = study_attack_settings(config).attacks_missing(config.evaluation.adversarial.norms)
    if problem:
        raise ConfigError(f"config.evaluation.adversarial.norms: {problem} (set evaluation.adversarial.preset)")
    if not isinstance(config.evaluation.adversarial.get("diagnostics", False), bool):
        check.fail("evaluation.adversarial.diagnostics", "True or False")
    evaluation.check_noise_settings(config.evaluation.noise, "config.evaluation.noise")
    check.integer("evaluation.batch_size", minimum=1)


def _probe_train_config(config) -> ml_collections.ConfigDict:
    probe = copy.deepcopy(config.train)
    probe.target.path = "(set per run)"
    return probe


def study_attack_settings(config) -> AttackSettings:
    """The attack settings of the study's ``evaluation.adversarial.preset`` ("" or "default": the
    CPU default)."""
    name = config.evaluation.adversarial.preset
    return preset(None if name in ("", "default") else name)


def evaluation_arguments(config) -> dict | None:
    """``evaluate_models``'s adversarial arguments for the study's ``evaluation`` section."""
    section = config.evaluation.adversarial
    if not section.num_examples:
        return None
    return arguments_from_config({"norms": tuple(section.norms), "num_examples": int(section.num_examples),
                                  "diagnostics": bool(section.get("diagnostics", False)),
                                  **study_attack_settings(config).as_dict()})


def primary_hypotheses(config) -> list[tuple[str, str, str]]:
    """The study's primary hypotheses (``config.primary``) as (condition, reference, metric) triples.

    Raises:
        ValueError: for an item that is not ``condition>reference:metric``.
    """
    hypotheses = []
    for item in comma_list(config.get("primary", "")):
        pair, _, metric = item.partition(":")
        condition, _, reference = pair.partition(">")
        if not (condition and reference and metric):
            raise ValueError("expected comma-separated 'condition>reference:metric' items, e.g. "
                             f"'neural_model>none:noise_mean'. Received: {item!r}")
        hypotheses.append((condition.strip(), reference.strip(), metric.strip()))
    return hypotheses


def comparison_arguments(config) -> dict | None:
    """``evaluate_models``'s adversarial arguments for scoring a run with the cheaper preset
    ``evaluation.adversarial.compare_preset`` (its L-inf/L2 norms, no diagnostics); None without one."""
    section = config.evaluation.adversarial
    if not section.get("compare_preset") or not section.num_examples:
        return None
    norms = tuple(n for n in section.norms if n in EPSILON_NORMS)
    return arguments_from_config({"norms": norms, "num_examples": int(section.num_examples),
                                  **preset(section.compare_preset).as_dict()})


def make_plan(config, workdir: str) -> StudyPlan:
    """The builds and runs ``config`` asks for, under ``workdir`` (see the module docstring)."""
    check_config(config)
    evaluation_settings = evaluation.settings_identity(
        config.evaluation.noise.sigmas, config.evaluation.noise.seeds, config.evaluation.batch_size,
        evaluation_arguments(config))
    names = condition_names(config)
    resolved = [conditions_lib.resolve(n, alpha=config.alpha, alpha_cka=config.alpha_cka) for n in names]
    skipped = {}
    kept = []
    options = build_config.kind_options(config.build)
    for condition in resolved:
        kind = condition.target_kind
        missing = kind.missing_options(options.get(kind.name, {})) if kind is not None else []
        if missing:
            skipped[condition.name] = (
                f"needs --config.build.kinds.{kind.name}.{missing[0]} ({kind.options_help.split('. ')[0]})"
            )
        else:
            kept.append(condition)
    # Each build writes the kinds its conditions train with; a study grown later extends the
    # finished build with the kinds it lacks (build_targets.ensure_built).
    needed: dict[str, set] = {}
    for condition in kept:
        if not condition.path:
            needed.setdefault(condition.build, set()).add(condition.kind)
    builds = {}
    for build, kinds in needed.items():
        build_config_ = copy.deepcopy(config.build)
        if build != MAIN_BUILD:
            overrides, _ = conditions_lib.ABLATIONS[build]
            for key, value in overrides.items():
                build_config_.simulation[key] = value
        primary = build_config_.target.kind
        names = target_registry.target_kind_names()
        build_config_.target.extra_kinds = ",".join(sorted(set(kinds) - {primary}, key=names.index))
        build_config_.overwrite = bool(config.overwrite)
        builds[build] = build_config_
    runs_root = os.path.join(workdir, RUNS_DIR)
    runs = [
        Run(condition, int(seed), index, os.path.join(runs_root, condition.name, f"seed_{int(seed)}"),
            evaluation_settings, config.evaluation.adversarial.get("compare_preset") or None)
        for index, (condition, seed) in enumerate(
            (condition, seed) for condition in kept for seed in config.seeds
        )
    ]
    return StudyPlan(workdir, kept, skipped, builds, runs, parse_shard(config.shard))


# Keys added to the study's evaluation.adversarial section after studies were recorded without
# them: such a study is the same study with these values.
ADDED_ADVERSARIAL_KEYS = {"diagnostics": False, "compare_preset": ""}


def _identity_config(config: dict) -> dict:
    relevant = {k: v for k, v in config.items() if k not in IDENTITY_EXCLUDED}
    if isinstance(relevant.get("train"), dict):
        relevant["train"] = train_identity_view(relevant["train"])
    if isinstance(relevant.get("build"), dict):  # the build's kinds grow with the conditions
        build = build_config.with_added_simulation_keys(
            {k: v for k, v in relevant["build"].items() if k not in ("kinds", "vgg")})
        build["target"] = {k: v for k, v in build.get("target", {}).items() if k != "extra_kinds"}
        relevant["build"] = build
    return relevant


def study_identity(config) -> dict:
    """What a study's runs depend on: everything but the conditions, seeds, how it is run, and
    the kinds its builds hold (a build grows with the conditions; each kind's options are checked
    by the build itself)."""
    return {"kind": "study", "config": _identity_config(config.to_dict())}


def upgrade_identity(recorded: dict) -> dict:
    """A study identity an older version recorded, in today's names (``workdir.claim``'s ``upgrade``):
    renamed keys, and the training sections added since with their defaults."""
    config = rename_keys(recorded.get("config", {}), RENAMED)
    adversarial = config.get("evaluation", {}).get("adversarial")
    if isinstance(adversarial, dict):
        for key, default in ADDED_ADVERSARIAL_KEYS.items():
            adversarial.setdefault(key, default)
    if isinstance(config.get("train"), dict):
        config["train"] = with_added_train_sections(config["train"])
    return {**recorded, "config": _identity_config(config)}
