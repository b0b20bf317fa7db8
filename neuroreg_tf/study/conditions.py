"""The conditions a study compares: a target, alpha and the similarity loss, each trained per seed.

A condition's target is either a kind of the study's main target build (the SIMULATED V1, or the
recordings given), a kind of an ablation build (the simulator with one property changed), or a
target directory given by path. ``STANDARD`` names the default study's conditions; ``ABLATIONS``
the simulator variations; ``alpha_sweep`` the Neural (model) condition at several alphas.
"""

from __future__ import annotations

import dataclasses
import re

from neuroreg_tf.errors import ConfigError

MAIN_BUILD = "main"  # the study's own target build (simulated V1 or its recordings)
PATH_PREFIX = "path:"  # a condition whose target is a directory: "path:/data/target"


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of a study.

    Attributes:
        name: its directory name under ``<workdir>/runs/`` and its key in the report.
        label: how the report and figures name it.
        build: the target build it draws from (``MAIN_BUILD``, an ablation name, or "" when
            ``path`` is given).
        kind: the target kind within that build (``neural_model``, ``shuffle``, ...).
        alpha: weight of the similarity loss (0: the None control, no stimulus pass).
        similarity_loss: "arctanh" (Eq 8) or "cka".
        path: a target directory, instead of a build.
        needs_simulation: the target exists only for SIMULATED data (ground truth).
        needs_vgg: the target needs VGG19 weights.
        note: a sentence the report prints beside the condition.
    """

    name: str
    label: str
    build: str
    kind: str
    alpha: float
    similarity_loss: str = "arctanh"
    path: str = ""
    needs_simulation: bool = False
    needs_vgg: bool = False
    note: str = ""


def _standard(alpha: float, alpha_cka: float) -> dict[str, Condition]:
    conditions = [
        Condition("none", "None", MAIN_BUILD, "neural_model", 0.0,
                  note="alpha = 0: the plain classifier (the target only sets the held-out monitor)"),
        Condition("neural_model", "Neural (model)", MAIN_BUILD, "neural_model", alpha,
                  note="Eq 6: predictive-model responses, scans averaged"),
        Condition("neural_data", "Neural (data)", MAIN_BUILD, "neural_data", alpha,
                  note="Eq 1-2 on raw single trials"),
        Condition("shuffle", "Shuffle", MAIN_BUILD, "shuffle", alpha,
                  note="the Neural (model) target with stimulus identities permuted (the paper's control)"),
        Condition("random", "Random", MAIN_BUILD, "random", alpha,
                  note="random vectors with the Neural (model) similarity spread"),
        Condition("ground_truth", "Ground truth", MAIN_BUILD, "ground_truth", alpha, needs_simulation=True,
                  note="the SIMULATED population's noiseless responses: what denoising could reach"),
        Condition("gabor_v1", "Gabor V1", MAIN_BUILD, "gabor_v1", alpha,
                  note="a fixed, noiseless Gabor filter bank (model V1, VOneNet-like); on SIMULATED "
                       "data it shares the simulator's receptive-field model class"),
        Condition("pixel", "Pixel", MAIN_BUILD, "pixel", alpha,
                  note="the stimuli's own pixel similarity"),
        Condition("neural_model_cka", "Neural (model), CKA", MAIN_BUILD, "neural_model", alpha_cka,
                  similarity_loss="cka", note="log(1 - CKA) loss (Dapello et al. 2023) on the Neural (model) target"),
        Condition("vgg", "VGG", MAIN_BUILD, "vgg", alpha, needs_vgg=True,
                  note="VGG19 block3_conv1 feature similarity (needs ImageNet weights)"),
    ]
    return {condition.name: condition for condition in conditions}


STANDARD_NAMES = tuple(_standard(1.0, 1.0))


def standard_conditions(alpha: float, alpha_cka: float) -> list[Condition]:
    """The standard conditions (``STANDARD_NAMES``) at these alphas; all use the main build."""
    return list(_standard(alpha, alpha_cka).values())


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
_ABLATION_NAME = re.compile(r"^(?P<ablation>[a-z0-9_]+)_(?P<form>model|data)$")


def resolve(name: str, *, alpha: float, alpha_cka: float) -> Condition:
    """The ``Condition`` called ``name``.

    Names: the standard ones (``STANDARD_NAMES``), ``neural_model_alpha<value>`` (the alpha
    sweep), ``<ablation>_model`` / ``<ablation>_data`` for an ``ABLATIONS`` key, and
    ``path:<label>=<directory>`` for a target of your own.

    Raises:
        ConfigError: an unknown name, listing the accepted ones.
    """
    standard = _standard(alpha, alpha_cka)
    if name in standard:
        return standard[name]
    if name.startswith(PATH_PREFIX):
        label, _, directory = name[len(PATH_PREFIX):].partition("=")
        if not label or not directory or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            raise ConfigError(
                f"A target given by path is 'path:<label>=<target directory>' with a label of letters, "
                f"digits, '_', '.' or '-'. Received: {name!r}"
            )
        return Condition(label, label, "", "custom", alpha, path=directory, note=f"the target at {directory}")
    match = _ALPHA_NAME.match(name)
    if match:
        value = float(match.group("value"))
        return dataclasses.replace(standard["neural_model"], name=name, label=f"Neural (model), alpha {value:g}",
                                   alpha=value)
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
        f"Unknown condition {name!r}. Accepted: {', '.join(STANDARD_NAMES)}; neural_model_alpha<value> "
        f"(e.g. neural_model_alpha5); <ablation>_model or <ablation>_data with <ablation> one of "
        f"{', '.join(ABLATIONS)}; path:<label>=<target directory>."
    )


def alpha_sweep(alphas) -> list[str]:
    """The condition names of a Neural (model) alpha sweep; alpha 0 is the None control."""
    return ["none" if float(a) == 0 else f"neural_model_alpha{float(a):g}" for a in alphas]


def ablation_conditions(names=None) -> list[str]:
    """``<ablation>_model`` and ``<ablation>_data`` for each ablation (default: all), after None."""
    names = list(ABLATIONS) if names is None else list(names)
    return ["none"] + [f"{n}_{form}" for n in names for form in ("model", "data")]
