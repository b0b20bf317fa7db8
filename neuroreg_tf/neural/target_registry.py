"""Target kinds by name: what each needs, how it is built, and how reports describe it.

A target kind is one ``TargetKind`` entry, registered by the module that defines it, in the
style of ``keras.losses.get``::

    from neuroreg_tf.neural import target_registry

    def build_my_kind(context, path):
        embedding = ...  # (n_stimuli, d) from context.union_images, context.scans, ...
        return context.write(path, "my_kind", context.union_images, embedding=embedding,
                             method="Eq 2 on my features")

    target_registry.register_target_kind(target_registry.TargetKind(
        name="my_kind", label="My kind", description="Eq 2 on my features",
        build=build_my_kind))

Nothing else names it: ``build_target.py`` accepts it in ``config.target.kind`` and
``config.target.extra_kinds`` (and lists it in ``--help``), a target build writes it, and a study
accepts it as a condition of the same name on the study's main build. Scripts (and the study's
worker processes) import the modules named in the environment variable ``NEUROREG_TF_PLUGINS``
(comma-separated module names) before reading their config, so a kind defined outside the
package registers itself there too.

``BuildContext`` is what a builder receives: the scans, the stimuli, the simulated experiment (if
any), the build's options, and lazily computed, shared embeddings.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Callable

import numpy as np

from neuroreg_tf import plugins, similarity
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import target_kinds
from neuroreg_tf.neural.simulation import SIMULATED_LABEL

PLUGINS_VARIABLE = plugins.VARIABLE

# What a kind may need (``TargetKind.needs``):
PREDICTIVE_MODEL = "predictive_model"  # each scan's fitted predictive model (Eq 5-6)
GROUND_TRUTH = "ground_truth"  # the SIMULATED experiment's noiseless rates
SHARED_IMAGES = "shared_images"  # responses of every scan to at least MIN_SHARED common images
SHARED_ORACLE = "shared_oracle"  # at least MIN_SHARED repeated images common to every scan
NEEDS = (PREDICTIVE_MODEL, GROUND_TRUTH, SHARED_IMAGES, SHARED_ORACLE)

# Where a kind stands when the build has a stimulus set of its own (``config.stimuli``):
ON_STIMULUS_SET = "stimulus set"  # built on that set (streamed where it is large)
ON_RECORDED_IMAGES = "recorded images"  # built on the images the scans saw, as without it
NOT_ON_STIMULUS_SET = "unavailable"  # not built with a stimulus set of its own
STIMULUS_SET_MODES = (ON_STIMULUS_SET, ON_RECORDED_IMAGES, NOT_ON_STIMULUS_SET)

MIN_SHARED = 3


@dataclasses.dataclass(frozen=True)
class TargetKind:
    """One kind of similarity target.

    Attributes:
        name: its name in configs, on disk (``targets/<name>``) and in reports; lower case.
        label: how study reports and figures name the condition that trains with it.
        description: one line saying what it is, printed by reports and ``--help``.
        build: ``build(context, path) -> n_stimuli``; writes the target directory ``path``
            (``BuildContext.write`` or ``streaming``) and returns how many stimuli it holds.
        needs: what it needs, among ``NEEDS``: a need the data cannot meet makes the kind
            unavailable (skipped with the reason; refused as the primary kind), except
            ``GROUND_TRUTH``, which is refused for real recordings.
        on_stimulus_set: what happens with a stimulus set of its own (``STIMULUS_SET_MODES``).
        options: the kind's own settings and their defaults (e.g. a weights file); a build
            config holds them under ``config.kinds.<name>``. An empty-string default marks a
            setting the kind cannot do without.
        options_help: what each option means, for error messages.
    """

    name: str
    label: str
    description: str
    build: Callable[["BuildContext", str], int]
    needs: frozenset = frozenset()
    on_stimulus_set: str = NOT_ON_STIMULUS_SET
    options: dict = dataclasses.field(default_factory=dict)
    options_help: str = ""

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "a").isalnum() or self.name.lower() != self.name:
            raise ValueError(f"A kind's name is lower-case letters, digits and '_'. Received: name={self.name!r}")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"`needs` must be among {NEEDS}. Received: needs={sorted(unknown)}")
        if self.on_stimulus_set not in STIMULUS_SET_MODES:
            raise ValueError(f"`on_stimulus_set` must be one of {STIMULUS_SET_MODES}. Received: {self.on_stimulus_set!r}")
        object.__setattr__(self, "needs", frozenset(self.needs))

    def missing_options(self, options: dict) -> list[str]:
        """The required options (empty-string defaults) that ``options`` leaves empty."""
        return [key for key, default in self.options.items() if default == "" and not options.get(key)]


_KINDS: dict[str, TargetKind] = {}
_loaded = False


def register_target_kind(kind: TargetKind, *, replace: bool = False) -> TargetKind:
    """Adds ``kind``; an existing name is refused unless ``replace``. Returns ``kind``."""
    if kind.name in _KINDS and not replace and _KINDS[kind.name] is not kind:
        raise ValueError(f"A target kind {kind.name!r} is already registered; pass replace=True to replace it.")
    _KINDS[kind.name] = kind
    return kind


def unregister_target_kind(name: str) -> None:
    """Removes a registered kind (tests register and remove their own)."""
    _KINDS.pop(name, None)


def load_plugins() -> list[str]:
    """Imports the built-in kinds and the modules ``NEUROREG_TF_PLUGINS`` names (``plugins``)."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("neuroreg_tf.neural.builtin_kinds")
        importlib.import_module("neuroreg_tf.neural.decomposition_kinds")
    return plugins.load()


def target_kind_names() -> tuple[str, ...]:
    """Every registered kind, in registration order (built-in kinds first)."""
    load_plugins()
    return tuple(_KINDS)


def get_target_kind(name: str) -> TargetKind:
    """The registered kind ``name``.

    Raises:
        ConfigError: no such kind, naming the closest one and every registered name.
    """
    names = target_kind_names()
    if name not in _KINDS:
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown target kind {name!r}.{hint} The kinds: {', '.join(names)}. Received: {name!r}")
    return _KINDS[name]


def describe_kinds() -> str:
    """One line per registered kind, ``name: description``, for ``--help``."""
    return "\n".join(f"  {kind.name}: {kind.description}" for kind in map(get_target_kind, target_kind_names()))


def default_options() -> dict[str, dict]:
    """``{kind: options}`` of every kind that has options: the ``kinds`` section of a build config."""
    return {name: dict(get_target_kind(name).options) for name in target_kind_names() if get_target_kind(name).options}


@dataclasses.dataclass
class BuildContext:
    """What a kind's builder receives; embeddings several kinds share are computed once, on demand.

    Attributes:
        scans: ``target_kinds.ScanAnalysis`` per scan (``predictor`` set when a kind needs one).
        experiment: the ``SimulatedExperiment``, or None for real recordings.
        simulated: whether the data are SIMULATED (every target is labelled so).
        union_ids, union_images: every image any scan saw, sorted by id.
        shared_ids, shared_images: the images every scan saw.
        oracle_ids: the repeated images every scan saw.
        seed: the controls' seed (``config.target.seed``).
        provenance: metadata every target records (scans, neurons, simulation parameters).
        stimulus_info: where the stimuli come from (merged into the stimulus-set kinds' metadata).
        stimuli_fn: (start, stop) -> images of the build's stimuli (a stimulus set or the union).
        n_stimuli: how many stimuli ``stimuli_fn`` serves.
        streamed: whether the build has a stimulus set of its own (``config.stimuli``).
        prepared: the prepared stimulus set (memory-mapped) when ``streamed``.
        image_shape: (height, width) of the stimuli.
        chunk: stimuli per chunk when streaming.
        projection_dims: random-projection dimension of a streamed embedding (None: exact).
        options: ``{kind: {option: value}}`` (``config.kinds``).
        written: the targets written so far, kind -> path.
        log: progress sink.
    """

    scans: list
    experiment: Any
    simulated: bool
    union_ids: np.ndarray
    union_images: np.ndarray
    shared_ids: np.ndarray
    shared_images: np.ndarray
    oracle_ids: np.ndarray
    seed: int
    provenance: dict
    stimulus_info: dict
    stimuli_fn: Callable
    n_stimuli: int
    streamed: bool
    prepared: Any
    image_shape: tuple
    chunk: int = 4096
    projection_dims: int | None = None
    options: dict = dataclasses.field(default_factory=dict)
    written: dict = dataclasses.field(default_factory=dict)
    log: Callable = print
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def _cached(self, key: str, compute: Callable):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def has_predictors(self) -> bool:
        return all(scan.predictor is not None for scan in self.scans)

    def model_embedding(self) -> np.ndarray:
        """Eq 6 on every image the scans saw, scans averaged (in memory; not when ``streamed``)."""
        return self._cached("model", lambda: target_kinds.average_embeddings(
            target_kinds.model_embedding(s, self.union_images) for s in self.scans))

    def data_embedding(self) -> np.ndarray:
        """Eq 1-2 on the first single trial of each shared image, scans averaged."""
        return self._cached("data", lambda: target_kinds.average_embeddings(
            target_kinds.data_embedding(s, self.shared_ids) for s in self.scans))

    def truth_embedding(self) -> np.ndarray:
        """Eq 2 on the SIMULATED noiseless neutral-state rates of every image the scans saw."""
        return self._cached("truth", lambda: similarity.stimulus_embedding(
            self.experiment.ground_truth_rates(self.union_ids)).astype(np.float32))

    def kind_options(self, name: str) -> dict:
        """The options of kind ``name``: its defaults updated with the build's."""
        return {**get_target_kind(name).options, **dict(self.options.get(name, {}))}

    def write(self, path: str, kind: str, images, *, embedding=None, matrix=None, with_stimulus_info: bool = True,
              **metadata) -> int:
        """Writes a target of ``images`` at ``path`` with the build's provenance plus ``metadata``.

        ``with_stimulus_info``: also record where the build's stimuli came from (the kinds built
        on them; not the kinds on a subset of the recorded images, which record their own ids).
        Returns the number of stimuli.
        """
        extra = {**self.provenance, **(self.stimulus_info if with_stimulus_info else {}), **metadata}
        target_kinds.write_target(path, kind, images, simulated=self.simulated, embedding=embedding,
                                  matrix=matrix, provenance=extra)
        return len(images)

    def labelled(self, metadata: dict) -> dict:
        """``metadata`` with the SIMULATED label when the data are simulated."""
        return {**metadata, "label": SIMULATED_LABEL} if self.simulated else dict(metadata)
