"""The conditions a study compares: a target, alpha and the similarity loss, each trained per seed.

A condition's target is either a kind of the study's main target build (the SIMULATED V1, or the
recordings given), a kind of an ablation build (the simulator with one property changed), or a
target directory given by path. Conditions are registered (``register_condition``); every
registered target kind (``neural.target_registry``) is also a condition of the same name on the
main build, so a new kind needs no entry here. ``STANDARD_NAMES`` names the default study's
conditions; ``ABLATIONS`` the simulator variations; ``alpha_sweep`` the Neural (model) condition
at several alphas.
"""

from __future__ import annotations

import dataclasses
import re

from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import target_registry

MAIN_BUILD = "main"  # the study's own target build (simulated V1 or its recordings)
PATH_PREFIX = "path:"  # a condition whose target is a directory: "path:/data/target"
STUDY_ALPHA = "alpha"  # Condition.alpha: the study's config.alpha
STUDY_ALPHA_CKA = "alpha_cka"  # Condition.alpha: the study's config.alpha_cka


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of a study.

    Attributes:
        name: its directory name under ``<workdir>/runs/`` and its key in the report.
        label: how the report and figures name it.
        build: the target build it draws from (``MAIN_BUILD``, an ablation name, or "" when
            ``path`` is given).
        kind: the target kind within that build (``neural_model``, ``shuffle``, ...).
        alpha: weight of the similarity loss (0: the None control, no stimulus pass); in a
            registered condition also ``STUDY_ALPHA`` or ``STUDY_ALPHA_CKA``, the study's value.
        similarity_loss: a registered similarity loss (``similarity.similarity_loss_names``).
        path: a target directory, instead of a build.
        note: a sentence the report prints beside the condition.
        train: training settings of the condition, (dotted key of the training config, value)
            pairs, e.g. ``(("robust_training.noise_max_sigma", 0.5),)`` for noise augmentation.
    """

    name: str
    label: str
    build: str
    kind: str
    alpha: float | str
    similarity_loss: str = "arctanh"
    path: str = ""
    note: str = ""
    train: tuple = ()

    @property
    def target_kind(self) -> target_registry.TargetKind | None:
        """The registered kind of a build's condition (None for a target given by path)."""
        return None if self.path else target_registry.get_target_kind(self.kind)

    def at(self, alpha: float, alpha_cka: float) -> "Condition":
        """This condition with the study's alphas filled in."""
        value = {STUDY_ALPHA: alpha, STUDY_ALPHA_CKA: alpha_cka}.get(self.alpha, self.alpha)
        return dataclasses.replace(self, alpha=float(value))


_CONDITIONS: dict[str, Condition] = {}


def register_condition(condition: Condition, *, replace: bool = False) -> Condition:
    """Adds a condition the study accepts by name; an existing name is refused unless ``replace``."""
    if condition.name in _CONDITIONS and not replace and _CONDITIONS[condition.name] != condition:
        raise ValueError(f"A condition {condition.name!r} is already registered; pass replace=True to replace it.")
    _CONDITIONS[condition.name] = condition
    return condition


def unregister_condition(name: str) -> None:
    """Removes a registered condition (tests register and remove their own)."""
    _CONDITIONS.pop(name, None)


def _kind_condition(name: str) -> Condition:
    kind = target_registry.get_target_kind(name)
    return Condition(name, kind.label, MAIN_BUILD, name, STUDY_ALPHA, note=kind.description)


for _condition in (
    Condition("none", "None", MAIN_BUILD, "neural_model", 0.0,
              note="alpha = 0: the plain classifier (the target only sets the held-out monitor)"),
    *(_kind_condition(name) for name in ("neural_model", "neural_data", "shuffle", "random", "ground_truth",
                                          "gabor_v1", "pixel")),
    Condition("neural_model_cka", "Neural (model), CKA", MAIN_BUILD, "neural_model", STUDY_ALPHA_CKA,
              similarity_loss="cka", note="log(1 - CKA) loss (Dapello et al. 2023) on the Neural (model) target"),
    _kind_condition("vgg"),
):
    register_condition(_condition)

STANDARD_NAMES = tuple(_CONDITIONS)

# The baselines a user would pick instead (issue 20): noise augmentation over the noise
# evaluation's range, adversarial training, and Neural (model) with noise augmentation.
NOISE_AUGMENTATION = (("robust_training.noise_max_sigma", 0.5),)
ADVERSARIAL_TRAINING = (("robust_training.adversarial", "fgsm_rs"), ("robust_training.epsilon", 0.03))
for _condition in (
    Condition("noise_augmentation", "Noise augmentation", MAIN_BUILD, "neural_model", 0.0, train=NOISE_AUGMENTATION,
              note="alpha = 0, Gaussian noise augmentation: each training image plus noise of a standard "
                   "deviation drawn from [0, 0.5] (the noise evaluation's range)"),
    Condition("adversarial_training", "Adversarial training", MAIN_BUILD, "neural_model", 0.0,
              train=ADVERSARIAL_TRAINING,
              note="alpha = 0, adversarial training: FGSM with a random start (Wong et al. 2020), L-inf "
                   "epsilon 0.03"),
    Condition("neural_model_noise", "Neural (model) + noise", MAIN_BUILD, "neural_model", STUDY_ALPHA,
              train=NOISE_AUGMENTATION,
              note="Neural (model) combined with the noise augmentation baseline"),
):
    register_condition(_condition)
BASELINE_NAMES = ("noise_augmentation", "adversarial_training", "neural_model_noise")


def standard_conditions(alpha: float, alpha_cka: float) -> list[Condition]:
    """The standard conditions (``STANDARD_NAMES``) at these alphas; all use the main build."""
    return [_CONDITIONS[name].at(alpha, alpha_cka) for name in STANDARD_NAMES]


# Simulator variations, each changing one property of the SIMULATED population (the rest as in
# the study's main build). Each ablation gives two conditions: "<name>_model" (Eq 6, denoised)
# and "<name>_data" (raw single trials).
ABLATIONS = {
    "simple_cells": ({"complex_fraction": 0.0}, "simple cells only"),
    "complex_cells": ({"complex_fraction": 1.0}, "complex cells only"),
    "low_sf": ({"wavelength_range": (16.0, 32.0)}, "low preferred spatial frequency (wavelengths 16-32 px)"),
    "high_sf": ({"wavelength_range": (6.0, 12.0)}, "high preferred spatial frequency (wavelengths 6-12 px)"),
    "neurons_30": ({"neurons_per_scan": 30}, "30 neurons per scan"),
    "neurons_150": ({"neurons_per_scan": 150}, "150 neurons per scan"),
    "neurons_600": ({"neurons_per_scan": 600}, "600 neurons per scan"),
    "low_snr": ({"rate_scale": 0.25}, "low SNR (rates x 0.25)"),
    "high_snr": ({"rate_scale": 4.0}, "high SNR (rates x 4)"),
    "one_scan": ({"n_scans": 1}, "one scan"),
    "three_scans": ({"n_scans": 3}, "three scans averaged"),
}
_ALPHA_NAME = re.compile(r"^neural_model_alpha(?P<value>\d+(\.\d+)?)$")
_EPOCHS_NAME = re.compile(r"^(?P<base>[a-z0-9_]+)_epochs(?P<epochs>[1-9]\d*)$")
STUDY_EPOCHS = 3  # the studies' training length; a run of k epochs stretches its step decay by k / 3
_ABLATION_NAME = re.compile(r"^(?P<ablation>[a-z0-9_]+)_(?P<form>model|data)$")


def resolve(name: str, *, alpha: float, alpha_cka: float) -> Condition:
    """The ``Condition`` called ``name``.

    Names: the registered ones (``STANDARD_NAMES`` and any added since), every registered
    target kind, ``neural_model_alpha<value>`` (the alpha
    sweep), ``<condition>_epochs<k>`` (any of these trained for k epochs, ``with_epochs``),
    ``<ablation>_model`` / ``<ablation>_data`` for an ``ABLATIONS`` key, and
    ``path:<label>=<directory>`` for a target of your own.

    Raises:
        ConfigError: an unknown name, listing the accepted ones.
    """
    if name in _CONDITIONS:
        return _CONDITIONS[name].at(alpha, alpha_cka)
    if name in target_registry.target_kind_names():
        return _kind_condition(name).at(alpha, alpha_cka)
    if name.startswith(PATH_PREFIX):
        label, _, directory = name[len(PATH_PREFIX):].partition("=")
        if not label or not directory or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            raise ConfigError(
                f"A target given by path is 'path:<label>=<target directory>' with a label of letters, "
                f"digits, '_', '.' or '-'. Received: {name!r}"
            )
        return Condition(label, label, "", "custom", alpha, path=directory, note=f"the target at {directory}")
    length = training_length(name)
    if length and name not in target_registry.target_kind_names():
        return with_epochs(resolve(length[0], alpha=alpha, alpha_cka=alpha_cka), length[1])
    match = _ALPHA_NAME.match(name)
    if match:
        value = float(match.group("value"))
        return dataclasses.replace(_kind_condition("neural_model"), name=name,
                                   label=f"Neural (model), alpha {value:g}", alpha=value)
    match = _ABLATION_NAME.match(name)
    if match and match.group("ablation") in ABLATIONS:
        ablation, form = match.group("ablation"), match.group("form")
        description = ABLATIONS[ablation][1]
        kind = "neural_model" if form == "model" else "neural_data"
        return Condition(
            name, f"{description} ({'model' if form == 'model' else 'data'})", ablation, kind, alpha,
            note=f"SIMULATED ablation: {description}; {'denoised (Eq 6)' if form == 'model' else 'raw single trials'}",
        )
    raise ConfigError(
        f"Unknown condition {name!r}. Accepted: {', '.join(dict.fromkeys([*_CONDITIONS, *target_registry.target_kind_names()]))}; neural_model_alpha<value> "
        f"(e.g. neural_model_alpha5); <condition>_epochs<k> (e.g. none_epochs6); <ablation>_model or <ablation>_data with <ablation> one of "
        f"{', '.join(ABLATIONS)}; path:<label>=<target directory>."
    )


def with_epochs(condition: Condition, epochs: int) -> Condition:
    """``condition`` trained for ``epochs`` epochs, its learning-rate steps stretched to keep the
    schedule's shape: a step every max(1, round(epochs / 3)) epochs, as the studies' 3-epoch runs
    step every epoch (1 epoch therefore runs at the initial rate throughout)."""
    step = max(1, round(epochs / STUDY_EPOCHS))
    return dataclasses.replace(
        condition, name=f"{condition.name}_epochs{epochs}", label=f"{condition.label}, {epochs} ep",
        train=(*condition.train, ("epochs", epochs), ("optim.step_epochs", step)),
        note=f"{condition.note}; trained {epochs} epochs, the learning rate stepped every {step}")


def training_length(name: str) -> tuple[str, int] | None:
    """(base condition name, epochs) of a ``<condition>_epochs<k>`` name; None for other names."""
    match = _EPOCHS_NAME.match(name)
    return (match.group("base"), int(match.group("epochs"))) if match else None


def epochs_sweep(names, epochs) -> list[str]:
    """The condition names of a training-length sweep: each of ``names`` at each of ``epochs``."""
    return [f"{name}_epochs{int(k)}" for name in names for k in epochs]


def alpha_sweep(alphas) -> list[str]:
    """The condition names of a Neural (model) alpha sweep; alpha 0 is the None control."""
    return ["none" if float(a) == 0 else f"neural_model_alpha{float(a):g}" for a in alphas]


def ablation_conditions(names=None) -> list[str]:
    """``<ablation>_model`` and ``<ablation>_data`` for each ablation (default: all), after None."""
    names = list(ABLATIONS) if names is None else list(names)
    return ["none"] + [f"{n}_{form}" for n in names for form in ("model", "data")]
