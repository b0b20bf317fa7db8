"""The target-build config (``configs/build_target.py``): one validator per section, and its adapters.

``check_build_config`` runs every section's validator before any work starts, each failure one
line naming the key (``config.target.kind``), what it accepts and what it received. The
``target`` section's kinds are checked by ``kind_problem``, which the library's
``build_targets`` uses as well, so a config and a direct call are held to the same rules. The
``model`` section is ``PredictiveModelConfig``'s fields (its one definition and validator), the
``kinds`` section each registered kind's options (``target_registry``).
"""

from __future__ import annotations

import os
from typing import Any

from neuroreg_tf.config import comma_list
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import target_registry
from neuroreg_tf.neural.predictive import PredictiveModelConfig
from neuroreg_tf.neural.recordings import ReadOptions
from neuroreg_tf.neural.recordings import formats as recording_formats
from neuroreg_tf.neural.recordings import images as image_ops
from neuroreg_tf.neural.recordings import treatments
from neuroreg_tf.neural.simulation import PRESETS

SECTIONS = (
    "recordings", "stimuli", "simulation", "target", "kinds", "model", "figures", "images", "read", "streaming",
    "overwrite",
)
# Keys older versions used, and their names now (command lines are refused with the new name;
# workdirs made with the old names keep working, ``legacy_config``).
RENAMED = {"vgg.weights": "kinds.vgg.weights"}
# The shared-noise strength every build used before ``simulation.latent_strength`` existed.
DEFAULT_LATENT_STRENGTH = 0.5
# Keys added to the ``simulation`` section after builds were recorded without them: a recorded
# build lacking one is the same build with this value.
ADDED_SIMULATION_KEYS = {"latent_strength": DEFAULT_LATENT_STRENGTH}


def with_added_simulation_keys(config: dict) -> dict:
    """A recorded build config dict with the ``simulation`` keys added since (their old values)."""
    if not isinstance(config.get("simulation"), dict):
        return config
    return {**config, "simulation": {**ADDED_SIMULATION_KEYS, **config["simulation"]}}


def _error(key: str, message: str, value) -> ConfigError:
    return ConfigError(f"config.{key}: {message} Received: config.{key}={value!r}")


def recording_paths(config) -> list[str]:
    """The build's recording paths (``config.recordings``, comma-separated)."""
    return comma_list(config.get("recordings", ""))


def requested_kinds(section) -> list[str]:
    """The ``target`` section's kinds: the primary first, then the extra ones (no repeats)."""
    primary = section.kind
    return [primary] + [k for k in comma_list(section.extra_kinds) if k != primary]


def kind_problem(primary: str, extra, *, simulated_data: bool, stimulus_set: bool,
                 options: dict) -> tuple[str, str, Any] | None:
    """The first reason these kinds cannot be built, as (config key, message, value), or None.

    Args:
        primary: the kind written to ``target/``.
        extra: the other kinds.
        simulated_data: whether the data are SIMULATED (with their ground truth).
        stimulus_set: whether the build has a stimulus set of its own (``config.stimuli``).
        options: ``{kind: {option: value}}`` (``config.kinds``).
    """
    names = target_registry.target_kind_names()
    for key, kinds in (("target.kind", [primary]), ("target.extra_kinds", list(extra))):
        unknown = [k for k in kinds if k not in names]
        if unknown and key == "target.kind":
            return key, f"must be one of {names}.", primary
        if unknown:
            return key, f"comma-separated kinds among {names}; {unknown} unknown.", ",".join(extra)
    for kind in map(target_registry.get_target_kind, [primary, *extra]):
        key = "target.kind" if kind.name == primary else "target.extra_kinds"
        value = primary if kind.name == primary else ",".join(extra)
        if target_registry.GROUND_TRUTH in kind.needs and not simulated_data:
            return key, (f"{kind.name!r} exists only for SIMULATED data (it needs the noiseless ground truth); "
                         f"with recordings drop it."), value
        missing = kind.missing_options(options.get(kind.name, {}))
        if missing:
            return (f"kinds.{kind.name}.{missing[0]}", f"the {kind.name!r} kind needs it. {kind.options_help}",
                    options.get(kind.name, {}).get(missing[0], ""))
        if stimulus_set:
            if kind.name == primary and kind.on_stimulus_set != target_registry.ON_STIMULUS_SET:
                built_there = [n for n in names if target_registry.get_target_kind(n).on_stimulus_set
                               == target_registry.ON_STIMULUS_SET]
                return key, (f"with a stimulus set of its own (config.stimuli) the primary kind must be one built "
                             f"on it: {built_there} (only a model responds to images no scan saw)."), value
            if kind.on_stimulus_set == target_registry.NOT_ON_STIMULUS_SET:
                return key, f"{kind.name!r} is not built with a stimulus set of its own (config.stimuli); drop it.", value
    return None


def check_sources(config) -> None:
    """``recordings`` (comma-separated recordings) and ``stimuli`` (a folder or .npy/.npz)."""
    for path in recording_paths(config):
        if not os.path.exists(path):
            raise _error("recordings", f"no recording at {path!r}; give comma-separated paths, each "
                         f"{recording_formats.described()}.", config.recordings)
        if recording_formats.find_format(path) is None:
            raise _error("recordings", f"{path!r} is not {recording_formats.described()}.", config.recordings)
    if config.stimuli:
        if not os.path.exists(config.stimuli):
            raise _error("stimuli", "no stimulus set there; give a folder of images or a .npy/.npz file (or '' for "
                         "the images the scans saw).", config.stimuli)
        if not (os.path.isdir(config.stimuli) or str(config.stimuli).endswith((".npy", ".npz"))):
            raise _error("stimuli", "must be a folder of images or a .npy/.npz file.", config.stimuli)


def check_simulation(config) -> None:
    """The ``simulation`` section: the SIMULATED population's preset and properties."""
    section = config.simulation
    if section.preset not in PRESETS:
        raise _error("simulation.preset", f"must be one of {sorted(PRESETS)}.", section.preset)
    if int(section.seed) < 0:
        raise _error("simulation.seed", "must be >= 0.", section.seed)
    if not 0.0 <= float(section.complex_fraction) <= 1.0:
        raise _error("simulation.complex_fraction", "must be in [0, 1].", section.complex_fraction)
    low, high = (float(v) for v in section.wavelength_range)
    if not 0 < low <= high:
        raise _error("simulation.wavelength_range", "must be (low, high) pixels with 0 < low <= high.",
                     section.wavelength_range)
    if not float(section.rate_scale) > 0:
        raise _error("simulation.rate_scale", "must be > 0.", section.rate_scale)
    if not float(section.latent_strength) >= 0:
        raise _error("simulation.latent_strength", "must be >= 0 (0: no shared noise).", section.latent_strength)
    for name, minimum in (("neurons_per_scan", 2), ("n_scans", 1)):
        if 0 < int(section[name]) < minimum or int(section[name]) < 0:
            raise _error(f"simulation.{name}", f"must be 0 (the preset's) or at least {minimum}.", section[name])
    if section.save_recordings and config.recordings:
        raise _error("simulation.save_recordings", "saves SIMULATED scans; with config.recordings set nothing is "
                     "simulated (set it False).", True)


def check_kinds(config) -> None:
    """The ``target`` section (kinds and their seed) and the ``kinds`` section (each kind's options)."""
    options = config.get("kinds", {})
    known = target_registry.target_kind_names()
    for name in options.keys():
        if name not in known:
            raise _error(f"kinds.{name}", f"no registered kind is called {name!r} (a kind defined in a module of "
                         f"your own registers itself when {target_registry.PLUGINS_VARIABLE} names it).", name)
    for name in options.keys():
        weights = options[name].get("weights", "")
        if weights and weights != "random" and not os.path.isfile(weights):
            raise _error(f"kinds.{name}.weights", "no such file.", weights)
    problem = kind_problem(
        config.target.kind, requested_kinds(config.target)[1:], simulated_data=not config.recordings,
        stimulus_set=bool(config.stimuli), options=_plain(options),
    )
    if problem:
        key, message, value = problem
        raise _error(key, message, value)
    if int(config.target.seed) < 0:
        raise _error("target.seed", "must be >= 0.", config.target.seed)


def check_model(config) -> None:
    """The ``model`` section: ``PredictiveModelConfig``'s fields, and ``workers``."""
    fields = {k: v for k, v in config.model.items() if k != "workers"}
    for name, expected in PredictiveModelConfig(**fields).problems():
        raise _error(f"model.{name}", f"must be {expected}.", config.model[name])
    if int(config.model.workers) < -1:
        raise _error("model.workers", "must be -1 (one process per scan), 0 (in-process) or a positive count.",
                     config.model.workers)


def check_reading(config) -> None:
    """The ``images``, ``read`` and ``streaming`` sections: how recordings and stimuli are read."""
    for name, accepted in (("dead_neurons", treatments.DEAD_NEURONS), ("nonfinite", treatments.NONFINITE),
                           ("unknown_tiers", treatments.UNKNOWN_TIERS)):
        if config.read[name] not in accepted:
            raise _error(f"read.{name}", f"must be one of {accepted}.", config.read[name])
    try:
        read_options(config)
    except image_ops.ImageFormatError as error:
        key = "images.color" if "color" in str(error) else "images.scale" if "scale" in str(error) else "images.size"
        raise _error(key, str(error).split(" Received:")[0], config.images[key.split(".")[1]]) from None
    if int(config.streaming.chunk) < 1:
        raise _error("streaming.chunk", "must be a positive number of stimuli per chunk.", config.streaming.chunk)
    if int(config.streaming.projection_dims) < 0:
        raise _error("streaming.projection_dims", "must be 0 (exact) or a positive dimension.",
                     config.streaming.projection_dims)


def check_build_config(config) -> None:
    """Validates every section of a ``configs/build_target.py`` config before any work starts.

    Raises:
        ConfigError: one or two lines naming the key (e.g. ``config.target.kind``), the accepted
            values and the value received.
    """
    unknown = sorted(set(config.keys()) - set(SECTIONS))
    if unknown:
        renamed = [f"config.{old} is now config.{new}" for old, new in RENAMED.items()
                   if old.split(".")[0] in unknown]
        hint = f" ({'; '.join(renamed)})" if renamed else ""
        raise ConfigError(f"config: unknown key(s) {unknown}{hint}; the build config has {list(SECTIONS)}. "
                          f"Received: {unknown}")
    for check in (check_sources, check_simulation, check_kinds, check_model, check_reading):
        check(config)


def _plain(section) -> dict:
    return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def simulation_arguments(section) -> dict[str, Any]:
    """``simulate_experiment``'s keyword arguments from a build config's ``simulation`` section."""
    arguments = {
        "preset": section.preset,
        "seed": int(section.seed),
        "complex_fraction": float(section.complex_fraction),
        "wavelength_range": tuple(float(v) for v in section.wavelength_range),
        "rate_scale": float(section.rate_scale),
        "latent_strength": float(section.latent_strength),
    }
    for name in ("neurons_per_scan", "n_scans"):
        if int(section[name]) > 0:
            arguments[name] = int(section[name])
    return arguments


def read_options(config) -> ReadOptions:
    """The ``ReadOptions`` of a build config's ``images`` and ``read`` sections."""
    return ReadOptions(
        images=image_ops.ImageOptions(color=config.images.color, size=image_ops.parse_size(config.images.size),
                                      scale=config.images.get("scale", "auto")),
        dead_neurons=config.read.dead_neurons,
        nonfinite=config.read.nonfinite,
        unknown_tiers=config.read.unknown_tiers,
    )


def predictor_config(section) -> PredictiveModelConfig:
    """The ``PredictiveModelConfig`` of a build config's ``model`` section."""
    return PredictiveModelConfig(**{k: v for k, v in section.to_dict().items() if k != "workers"})


def kind_options(config) -> dict[str, dict]:
    """``{kind: options}`` of a build config's ``kinds`` section."""
    return _plain(config.get("kinds", {}))


def legacy_config(config: dict) -> dict:
    """A build config dict as older versions wrote it (``RENAMED`` keys back under their old names).

    A workdir records its config; one made before a rename is the same work as one made now with
    the config ``legacy_config`` turns back (``workdir.claim``'s ``legacy``).
    """
    config = {key: value for key, value in config.items()}
    if isinstance(config.get("simulation"), dict):  # keys added since, at the values those versions used
        config["simulation"] = {key: value for key, value in config["simulation"].items()
                                if not (key in ADDED_SIMULATION_KEYS and value == ADDED_SIMULATION_KEYS[key])}
    kinds = dict(config.pop("kinds", {}) or {})
    config["vgg"] = {"weights": (kinds.get("vgg") or {}).get("weights", "")}
    return config
