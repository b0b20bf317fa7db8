"""The training configuration every ``configs/*.py`` file starts from, and config checks.

Sections: ``data`` (classification set), ``target`` (similarity target and
stimulus batches), ``model``, ``similarity`` (how S_CNN is formed), ``optim``
(SGD and the learning-rate schedule). ``alpha`` is top level so a run is
``--config.alpha=20``.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from neuroreg_tf.errors import ConfigError


def base_train_config() -> ml_collections.ConfigDict:
    """Defaults shared by all training configs (the paper's choices where it has them)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.alpha = 20.0  # Eq 7; the paper's main value (2..32 in its supplement).
    config.epochs = 40
    config.batch_size = 64  # GLOBAL classification images per step, split over replicas; paper: 64.
    config.deterministic = True  # neuroreg_tf.determinism.enable(): op determinism, no grappler regrouping.
    config.jit_compile = False  # XLA; measured in bench/RESULTS.md (not faster here on CPU)
    # "float32", "mixed_float16" (GPUs with tensor cores; loss scaling) or "mixed_bfloat16":
    # layers compute in that type, variables and the similarity math (Eq 8-10) stay float32.
    config.precision = "float32"
    config.verbose = 1  # Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.
    config.overwrite = False  # Refuse to overwrite a finished run in --workdir.
    config.strategy = "default"  # "default", "mirrored" (all GPUs) or "multi_worker" (TF_CONFIG).
    # BatchNorm under several replicas: "per_replica" (statistics of each replica's
    # batch / replicas images) or "synchronized" (global-batch statistics, so R replicas
    # train like one device with the global batch; one all-reduce per BatchNorm call).
    config.batch_norm = "per_replica"
    config.checkpoint_every_steps = 0  # Multi-worker loop: also checkpoint mid-epoch (0: epoch ends).

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "cifar10"
    config.data.data_dir = config_dict.placeholder(str)
    config.data.augment = True
    config.data.train_limit = config_dict.placeholder(int)  # Use the first N training images.
    config.data.eval_limit = config_dict.placeholder(int)  # Use the first N test images.
    # Each epoch is monitored (val_* in the history) on the last N training images, which training
    # never reads (trainer.training_images); 0: on the test images, as runs before it did.
    config.data.validation_size = 2000

    config.target = ml_collections.ConfigDict()
    # A target directory from build_target.py / neuroreg_tf.targets.save_target.
    # Empty: train.py first builds a SIMULATED target with configs/build_target.py:<build>
    # into <workdir>/target_build/ (the library itself only ever reads a path).
    config.target.path = ""
    config.target.build = "demo"  # The configs/build_target.py variant train.py uses then.
    config.target.batch_size = 0  # Stimuli per step; 0: same as batch_size (the paper).
    config.target.holdout_fraction = 0.1  # Stimuli kept out of training, for monitoring.

    config.model = ml_collections.ConfigDict()
    config.model.depth = 18
    config.model.width = 1.0
    config.model.weight_decay = 0.0

    config.similarity = ml_collections.ConfigDict()
    config.similarity.tap_layers = "paper"  # The stem and each stage's end, or "a,b,c".
    config.similarity.centering = "batch"  # "batch" (Eq 9) or "ema" (running mean).
    config.similarity.ema_momentum = 0.9
    config.similarity.loss = "arctanh"  # "arctanh" (Eq 8) or "cka".
    config.similarity.arctanh_eps = 1e-5
    config.similarity.stimulus_bn = "batch_stats"  # BatchNorm and the stimulus pass: "batch_stats", "train", "inference".

    # The baselines a user would pick instead of (or with) the similarity loss: Gaussian noise
    # augmentation of the classification images, adversarial training (L-inf).
    config.robust_training = robust_training_section()

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 0.1
    # "linear": the rate is learning_rate * batch_size / reference_batch_size (the
    # linear scaling rule for larger global batches on more devices); "none": as given.
    config.optim.lr_scaling = "none"
    config.optim.reference_batch_size = 64
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.schedule = "paper"  # "paper" (x decay every step_epochs, cyclic) or "constant".
    config.optim.step_epochs = 4
    config.optim.decay = 0.3
    config.optim.cycle_epochs = 20  # The rate resets to learning_rate after epoch 20.
    return config


def robust_training_section() -> ml_collections.ConfigDict:
    """The training config's ``robust_training`` section, off by default (its defaults are what
    runs recorded before it existed did, ``ADDED_TRAIN_SECTIONS``)."""
    section = ml_collections.ConfigDict()
    section.noise_sigma = 0.0  # Gaussian noise augmentation: a fixed standard deviation (0: off) ...
    section.noise_max_sigma = 0.0  # ... or one drawn per image from [0, max] (0: off)
    section.adversarial = "none"  # adversarial training: "none", "fgsm_rs" (Wong et al. 2020) or "pgd"
    section.epsilon = 0.03  # its L-inf budget, [0, 1] pixel units
    section.pgd_steps = 7  # PGD's steps ("fgsm_rs" takes one)
    return section


# Sections added to the training config after runs were recorded without them: a recorded run
# lacking one is the same run with the section's defaults (``trainer.claim``'s upgrade).
ADDED_TRAIN_SECTIONS = {"robust_training": robust_training_section}


def with_added_train_sections(train: dict) -> dict:
    """A recorded training config dict with the sections added since (their defaults) where it lacks them."""
    return {**{name: section().to_dict() for name, section in ADDED_TRAIN_SECTIONS.items()}, **train}


def train_identity_view(train: dict) -> dict:
    """A training config dict as identities compare it: ``data.validation_size`` left out when
    ``data.train_limit`` is set (the training images are then the same with any validation split,
    and nothing is selected on the monitoring), else present, 0 where recorded before it existed."""
    data = dict(train.get("data", {}))
    if data.get("train_limit") is not None:
        data.pop("validation_size", None)
    else:
        data.setdefault("validation_size", 0)
    return {**train, "data": data}


def paper_scale(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Distribution settings of the paper configs: every visible GPU, exact global batch."""
    # All visible GPUs (one replica each; a CPU-only machine uses its CPU).
    config.strategy = "mirrored"
    # BatchNorm over the whole global batch, as on the paper's single GPU.
    config.batch_norm = "synchronized"
    # 0.1 at the paper's global batch of 64; 0.4 at --config.batch_size=256.
    config.optim.lr_scaling = "linear"
    return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks any config to a run of a minute or two on a 2-core CPU."""
    config.epochs = 1
    config.batch_size = 32
    config.data.train_limit = 512
    config.data.eval_limit = 256
    config.data.validation_size = 256
    config.model.width = 0.125
    config.target.build = "runlocal"
    return config


def check_variant(arg: str | None, variants: tuple[str, ...], config_file: str) -> None:
    """Refuses a ``--config=<file>:<arg>`` variant the file does not define."""
    if arg not in (None, "") and arg not in variants:
        raise ConfigError(
            f"{config_file} has no variant {arg!r}. Accepted: "
            + (", ".join(f"{config_file}:{v}" for v in variants) or "none")
            + f" (or no variant). Received: {config_file}:{arg}"
        )


class ConfigChecker:
    """Checks config values one key at a time; each failure is a one-line ``ConfigError``.

    Example::

        check = ConfigChecker(config)
        check.integer("epochs", minimum=1)
        check.choice("similarity.loss", ("arctanh", "cka"))
    """

    def __init__(self, config, prefix: str = "config"):
        self.config = config
        self.prefix = prefix

    def value(self, key: str):
        """The value at the dotted ``key``.

        Raises:
            ConfigError: the config has no such key (e.g. one written by an older version).
        """
        value = self.config
        for part in key.split("."):
            try:
                value = value[part]
            except (KeyError, TypeError):
                raise ConfigError(
                    f"{self.prefix}.{key} is missing; configs/*.py define it (a config saved by an "
                    "older version may lack it: start from the current config file)."
                ) from None
        return value

    def fail(self, key: str, expected: str, value=None) -> None:
        """Raises the ``ConfigError`` for ``key``."""
        value = self.value(key) if value is None else value
        raise ConfigError(f"{self.prefix}.{key} must be {expected}. Received: {value!r}")

    def integer(self, key: str, minimum: int | None = None, allow_none: bool = False) -> None:
        """An int (not a bool) of at least ``minimum``; None too when ``allow_none``."""
        value = self.value(key)
        if value is None and allow_none:
            return
        bad = isinstance(value, bool) or not isinstance(value, int)
        if bad or (minimum is not None and value < minimum):
            expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
            self.fail(key, expected + (" or None" if allow_none else ""), value)

    def number(self, key: str, *, minimum: float | None = None, maximum: float | None = None,
               exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> None:
        """A finite number within the bounds."""
        value = self.value(key)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if exclusive_minimum else value >= minimum
        if ok and maximum is not None:
            ok = value < maximum if exclusive_maximum else value <= maximum
        if not ok:
            low = "" if minimum is None else ("(" if exclusive_minimum else "[") + f"{minimum:g}"
            high = "" if maximum is None else f"{maximum:g}" + (")" if exclusive_maximum else "]")
            where = f" in {low or '(-inf'}, {high or 'inf)'}" if (low or high) else ""
            self.fail(key, f"a finite number{where}", value)

    def choice(self, key: str, options) -> None:
        """One of ``options``."""
        value = self.value(key)
        if value not in tuple(options):
            self.fail(key, "one of " + ", ".join(repr(o) for o in options), value)

    def subset(self, key: str, options) -> None:
        """A non-empty sequence of values, each one of ``options``."""
        values = self.value(key)
        if not values or isinstance(values, str) or any(value not in tuple(options) for value in values):
            self.fail(key, f"a non-empty list of {tuple(options)}", values)

    def numbers(self, key: str, *, minimum: float | None = None, non_empty: bool = True) -> None:
        """A sequence of finite numbers, each at least ``minimum``."""
        values = self.value(key)
        ok = isinstance(values, (list, tuple)) and (len(values) > 0 or not non_empty)
        ok = ok and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            and (minimum is None or v >= minimum)
            for v in values
        )
        if not ok:
            expected = "a non-empty list of finite numbers" if non_empty else "a list of finite numbers"
            self.fail(key, expected + (f" >= {minimum:g}" if minimum is not None else ""), values)

    def integers(self, key: str, *, minimum: int | None = None, non_empty: bool = True) -> None:
        """A sequence of ints, each at least ``minimum``."""
        values = self.value(key)
        ok = isinstance(values, (list, tuple)) and (len(values) > 0 or not non_empty)
        ok = ok and all(
            isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum)
            for v in values
        )
        if not ok:
            expected = "a non-empty list of integers" if non_empty else "a list of integers"
            self.fail(key, expected + (f" >= {minimum}" if minimum is not None else ""), values)


def comma_list(text) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: a config's list of names or paths.

    Lists of strings stay comma strings in the configs: ml_collections reads ``--config.x=a,b``
    for a tuple of strings as the one element ``"a,b"`` (and refuses paths), while it reads
    tuples of numbers well (``--config.seeds=0,1``), so number lists are tuples.
    """
    return [item.strip() for item in str(text or "").split(",") if item.strip()]


def noise_section(sigmas, seeds) -> ml_collections.ConfigDict:
    """The Gaussian-noise evaluation's section, the same in every config that evaluates.

    ``sigmas``: noise standard deviations in [0, 1] pixel units (noisy images are clipped to
    [0, 1]); ``seeds``: the noise draws averaged per sigma (their SEM is reported).
    """
    section = ml_collections.ConfigDict()
    section.sigmas = tuple(float(s) for s in sigmas)
    section.seeds = tuple(int(s) for s in seeds)
    return section


def rename_keys(payload: dict, renamed: dict[str, str]) -> dict:
    """A copy of a nested config dict with each dotted key ``old`` of ``renamed`` moved to ``new``.

    How a workdir recorded with older key names is read in today's names (``workdir.claim``'s
    ``upgrade``); keys absent from ``payload`` are skipped.
    """
    import copy

    payload = copy.deepcopy(payload)
    for old, new in renamed.items():
        *parents, leaf = old.split(".")
        section = payload
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
            if section is None:
                break
        if not isinstance(section, dict) or leaf not in section:
            continue
        value = section.pop(leaf)
        *new_parents, new_leaf = new.split(".")
        target = payload
        for parent in new_parents:
            target = target.setdefault(parent, {})
        target[new_leaf] = value
    return payload
