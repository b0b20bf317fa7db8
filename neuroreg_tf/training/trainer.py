"""One training run, from a config to a workdir.

A workdir holds everything a run produces (file names: ``neuroreg_tf.workdir``)::

    config.json        the resolved config, written first
    backup/            atomic checkpoints (model, optimizer, step): a run killed at any
                       point resumes from here, exactly; removed once the run is finished
    history.csv        per-epoch metrics: a copy of the history the checkpoints carry
    tensorboard/       TensorBoard logs
    model.keras        the NeuralRegularizedModel with optimizer state
    classifier.keras   the plain classifier
    export/            SavedModel of the classifier (``serve``: images -> logits)
    summary.json       final metrics; written last, it marks a finished run

Artifacts are written to a temporary name and renamed into place, so a
killed run never leaves a partial file that looks complete.

``train`` runs three stages a reader can follow: ``prepare_run`` (claim the workdir, write the
config, seed, build data and model), ``fit_run`` (``driver.train_model`` with our callbacks) and
``finalise_run`` (refuse a diverged run, save the artifacts, the history and, last, the summary).

Distribution (``config.strategy``): "default" (one device), "mirrored" (all
visible GPUs, else the logical CPU devices) or "multi_worker" (the workers of
TF_CONFIG). ``config.batch_size`` is the GLOBAL batch: every replica gets its
slice of the same seeded global batches, the similarity loss is computed over
the global stimulus batch, and with ``config.batch_norm = "synchronized"`` R
replicas compute what one device computes. Each epoch's data is seeded by its
epoch number, so a resumed run sees the batches the uninterrupted run saw.
Multi-worker runs use a custom loop (Keras 3 ``fit`` fails there,
keras-team/keras#20585); only the chief writes into the workdir. See
``neuroreg_tf.training.driver`` and ``multi_worker``.

The target is read from ``config.target.path``; building one is the neural library's job
(``neuroreg_tf.neural.build_targets``, which ``train.py`` calls when the path is empty).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import tempfile
import time
from typing import Callable

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from neuroreg_tf import data, determinism, similarity, targets, workdir as workdir_files
from neuroreg_tf.config import ConfigChecker, comma_list, train_identity_view, with_added_train_sections
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.fileio import read_json, sha256_tree, write_json_atomic
from neuroreg_tf.models import NeuralRegularizedModel, ResNet
from neuroreg_tf.models.adversarial_training import METHODS as ADVERSARIAL_METHODS
from neuroreg_tf.models.regularized import CENTERINGS, STIMULUS_BN_MODES
from neuroreg_tf.models.resnet import STAGE_BLOCKS, layer_names
from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.training.callbacks import SimilarityMonitor
from neuroreg_tf.training.distributed_data import epoch_seed
from neuroreg_tf.training.driver import train_model
from neuroreg_tf.training.joint_data import joint_dataset, split_stimuli
from neuroreg_tf.training.multi_worker import is_chief
from neuroreg_tf.training.schedules import CyclicStepDecay
from neuroreg_tf.training.strategies import (
    BATCH_NORM_MODES,
    STRATEGIES,
    check_jit_compile,
    configure_batch_norm,
    make_strategy,
)

# Config keys that do not change what a run computes: left out of its identity.
IDENTITY_EXCLUDED = (
    "verbose", "overwrite", "checkpoint_every_steps", "data.data_dir", "target.path", "target.build",
    "evaluation",  # demo.py's evaluation section: not the training's
)
LR_SCALINGS = ("none", "linear")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("paper", "constant")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a training config that cannot work, before any work starts.

    Raises:
        ConfigError: naming the first bad key, what it accepts and what it received.
    """
    check = ConfigChecker(config)
    check.integer("seed", minimum=0)
    check.number("alpha", minimum=0)
    check.integer("epochs", minimum=1)
    check.integer("batch_size", minimum=1)
    check.choice("strategy", STRATEGIES)
    check.choice("batch_norm", BATCH_NORM_MODES)
    check.choice("precision", PRECISIONS)
    check.integer("checkpoint_every_steps", minimum=0)
    check.choice("data.dataset", data.known_datasets())
    check.integer("data.train_limit", minimum=1, allow_none=True)
    check.integer("data.eval_limit", minimum=1, allow_none=True)
    check.integer("data.validation_size", minimum=0)
    check.integer("target.batch_size", minimum=0)
    if config.target.batch_size == 1:
        check.fail("target.batch_size", "0 (the classification batch size) or at least 2 (a pair)")
    check.number("target.holdout_fraction", minimum=0, maximum=1, exclusive_maximum=True)
    check.choice("model.depth", sorted(STAGE_BLOCKS))
    check.number("model.width", minimum=0, exclusive_minimum=True)
    check.number("model.weight_decay", minimum=0)
    check.choice("similarity.centering", CENTERINGS)
    check.number("similarity.ema_momentum", minimum=0, maximum=1, exclusive_maximum=True)
    check.choice("similarity.loss", similarity.similarity_loss_names())
    check.number("similarity.arctanh_eps", minimum=0, maximum=0.5, exclusive_minimum=True)
    check.choice("similarity.stimulus_bn", STIMULUS_BN_MODES)
    check.number("optim.learning_rate", minimum=0, exclusive_minimum=True)
    check.choice("optim.lr_scaling", LR_SCALINGS)
    check.integer("optim.reference_batch_size", minimum=1)
    check.number("optim.momentum", minimum=0, maximum=1, exclusive_maximum=True)
    check.choice("optim.schedule", SCHEDULES)
    check.number("robust_training.noise_sigma", minimum=0, maximum=1)
    check.number("robust_training.noise_max_sigma", minimum=0, maximum=1)
    if config.robust_training.noise_sigma and config.robust_training.noise_max_sigma:
        check.fail("robust_training.noise_max_sigma", "0 when robust_training.noise_sigma is set (one noise or the other)")
    check.choice("robust_training.adversarial", ADVERSARIAL_METHODS)
    check.number("robust_training.epsilon", minimum=0, maximum=1, exclusive_minimum=True)
    check.integer("robust_training.pgd_steps", minimum=1)
    check.integer("optim.step_epochs", minimum=1)
    check.number("optim.decay", minimum=0, maximum=1, exclusive_minimum=True)
    check.integer("optim.cycle_epochs", minimum=1)
    if not isinstance(config.similarity.tap_layers, str) or not config.similarity.tap_layers.strip():
        check.fail("similarity.tap_layers", "'paper' or comma-separated layer names")
    taps = config.similarity.tap_layers
    if taps != "paper":
        known = layer_names(config.model.depth)
        unknown = [n for n in comma_list(taps) if n not in known]
        if unknown:
            tappable = [n for n in known if n == "stem_relu" or n.endswith("_out")]
            raise ConfigError(
                f"config.similarity.tap_layers names unknown layers {unknown} of ResNet"
                f"{config.model.depth}. Tappable: 'paper' (the stem and each stage's end) or "
                f"names such as {', '.join(tappable)}. Received: {taps!r}"
            )


def target_identity(target: targets.SimilarityTarget, path: str) -> dict:
    """What a run records of its target: the content fingerprint written with the target."""
    return {"fingerprint": target.fingerprint or sha256_tree(path), "kind": target.kind}


def training_images(config: ml_collections.ConfigDict, split_size: int) -> tuple[int, str | None]:
    """(how many of the training split's first images train, the tfds split monitored or None).

    The validation images are the last ``data.validation_size`` of the training split; training
    reads only images before them (at most ``data.train_limit``), so the two never overlap.

    Raises:
        ConfigError: the validation images would leave no training image, or would overlap the
            ``data.train_limit`` first ones.
    """
    validation = int(config.data.get("validation_size", 0) or 0)
    limit = config.data.train_limit
    if validation >= split_size:
        raise ConfigError(
            f"config.data.validation_size={validation} leaves none of the {split_size} training images to "
            "train on; lower it (0: monitor on the test images)."
        )
    if limit is not None and limit + validation > split_size:
        raise ConfigError(
            f"config.data.train_limit={limit} and config.data.validation_size={validation} overlap: the "
            f"training split has {split_size} images and the validation ones are its last {validation}. Set "
            f"train_limit <= {split_size - validation} or lower validation_size."
        )
    n_train = min(split_size - validation, limit or split_size)
    return n_train, (f"train[-{validation}:]" if validation else None)


def run_identity(config: ml_collections.ConfigDict, target: dict) -> dict:
    """A training run's identity: its config (without ``IDENTITY_EXCLUDED``) and its target's.

    ``data.validation_size`` is left out when ``data.train_limit`` is set (``train_identity_view``):
    the training images are then the same with any validation split (``training_images`` refuses
    an overlap), and nothing is selected on what an epoch is monitored on: the same weights.
    """
    relevant = train_identity_view(config.to_dict())
    for key in IDENTITY_EXCLUDED:
        *parents, leaf = key.split(".")
        section = relevant
        for parent in parents:
            section = section.get(parent, {})
        section.pop(leaf, None)
    return {"kind": "training run", "config": relevant, "target": target}


def claim(config: ml_collections.ConfigDict, workdir: str, target: dict, *, legacy_targets=()) -> str:
    """Takes ``workdir`` for the run ``config`` describes (``workdir.claim``): NEW, RESUME or FINISHED.

    ``legacy_targets``: target ids older versions recorded for the same target (a run made then
    is the same run).
    """

    def upgrade(recorded: dict) -> dict:
        config_ = train_identity_view(
            with_added_train_sections({k: v for k, v in recorded.get("config", {}).items() if k != "evaluation"}))
        target_ = target if recorded.get("target") in list(legacy_targets) else recorded.get("target")
        return {**recorded, "config": config_, "target": target_}

    return workdir_files.claim(
        workdir, run_identity(config, target), what="training run",
        finished_marker=workdir_files.SUMMARY, overwrite=config.overwrite, upgrade=upgrade,
    )


def scaled_learning_rate(config: ml_collections.ConfigDict) -> float:
    """``config.optim.learning_rate``, scaled linearly with the global batch if asked.

    With ``optim.lr_scaling = "linear"`` the rate is ``learning_rate * batch_size
    / reference_batch_size`` (the linear scaling rule): the paper's 0.1 at batch
    64 becomes 0.4 at a global batch of 256 on 4 GPUs.
    """
    optim = config.optim
    scaling = optim.lr_scaling
    if scaling == "none":
        return optim.learning_rate
    if scaling != "linear":
        raise ValueError(
            f"config.optim.lr_scaling must be 'none' or 'linear'. Received: lr_scaling={scaling!r}"
        )
    return optim.learning_rate * config.batch_size / optim.reference_batch_size


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    optim = config.optim
    base_rate = scaled_learning_rate(config)
    if optim.schedule == "paper":
        learning_rate = CyclicStepDecay(
            base_rate, steps_per_epoch, optim.step_epochs, optim.decay, optim.cycle_epochs
        )
    elif optim.schedule == "constant":
        learning_rate = base_rate
    else:
        raise ValueError(
            f"config.optim.schedule must be 'paper' or 'constant'. Received: {optim.schedule!r}"
        )
    return keras.optimizers.SGD(learning_rate, momentum=optim.momentum, nesterov=optim.nesterov)


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Builds layers under ``precision``'s Keras dtype policy, then restores the global one exactly.

    "float32" leaves the global policy alone (so a float64 ``floatx`` still applies). Keras'
    ``config.dtype_policy()`` pins the policy it returns, so the previous global state is read and
    restored through Keras' global state, including "never set".
    """
    if precision == "float32":
        yield
        return
    from keras.src.backend.common import global_state

    previous = global_state.get_global_attribute("dtype_policy", None)
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        global_state.set_global_attribute("dtype_policy", previous)


def build_model(config: ml_collections.ConfigDict, num_classes: int, stimulus_shape) -> NeuralRegularizedModel:
    """The classifier and its NeuralRegularizedModel, under ``config.precision``'s dtype policy."""
    with dtype_policy(config.get("precision", "float32")):
        classifier = ResNet(
            config.model.depth,
            num_classes=num_classes,
            width=config.model.width,
            weight_decay=config.model.weight_decay,
        )
        configure_batch_norm(classifier, config.batch_norm)
        return NeuralRegularizedModel(
            classifier,
            tap_layers=config.similarity.tap_layers,
            alpha=config.alpha,
            centering=config.similarity.centering,
            ema_momentum=config.similarity.ema_momentum,
            similarity_loss=config.similarity.loss,
            arctanh_eps=config.similarity.arctanh_eps,
            stimulus_bn=config.similarity.stimulus_bn,
            stimulus_shape=stimulus_shape,
            adversarial_training=adversarial_training_spec(config),
        )


def adversarial_training_spec(config) -> dict | None:
    """The model's ``adversarial_training`` argument from ``config.robust_training`` (None: off)."""
    section = config.robust_training
    if section.adversarial == "none":
        return None
    return {"method": section.adversarial, "epsilon": float(section.epsilon), "steps": int(section.pgd_steps),
            "seed": int(config.seed)}


def _save_keras_atomic(model: keras.Model, path: str) -> None:
    temporary = f"{path}.tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)


def _export_atomic(classifier: keras.Model, path: str) -> None:
    """Exports to a temporary directory, then swaps it in by renames only."""
    temporary = f"{path}.tmp"
    previous = f"{path}.old"
    shutil.rmtree(temporary, ignore_errors=True)
    classifier.export(temporary, verbose=False)
    shutil.rmtree(previous, ignore_errors=True)
    if os.path.exists(path):
        os.replace(path, previous)
    os.replace(temporary, path)
    shutil.rmtree(previous, ignore_errors=True)


def _save_artifacts(model: NeuralRegularizedModel, directory: str) -> None:
    _save_keras_atomic(model, workdir_files.path(directory, workdir_files.MODEL))
    _save_keras_atomic(model.classifier, workdir_files.path(directory, workdir_files.CLASSIFIER))
    _export_atomic(model.classifier, workdir_files.path(directory, workdir_files.EXPORT))


def read_history(csv_path: str) -> list[dict]:
    if not os.path.isfile(csv_path):
        return []
    with open(csv_path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    callbacks=(),
    strategy: tf.distribute.Strategy | None = None,
    target_id: dict | None = None,
    progress: Reporter = print_line,
) -> dict:
    """Trains one model as ``config`` says and writes everything to ``workdir``.

    The workdir is claimed first (``claim``): a finished run of the same config and target is
    reused (its summary returned), an interrupted one resumes from its verified checkpoint, and
    a workdir of another config or target is refused unless ``config.overwrite``.

    Args:
        config: a training config (see ``neuroreg_tf.config.base_train_config``) whose
            ``target.path`` names a target directory.
        workdir: where everything is written; a run interrupted there resumes.
        callbacks: extra Keras callbacks, run after ours.
        strategy: the strategy of ``config.strategy`` if the caller made it already (it must
            exist before any other TensorFlow op under ``multi_worker``); made here otherwise.
        target_id: the target's identity as the caller claimed the workdir with it (``train.py``
            claims before it builds a default target); default: ``target_identity`` of the
            loaded target.
        progress: reporter of one-line messages (None: silent).

    Returns:
        The summary written to ``summary.json`` (final metrics and paths).
    """
    check_config(config)
    if not config.target.path:
        raise ConfigError(
            "config.target.path is empty: training needs a similarity target directory. Build "
            "one with `python build_target.py --workdir=DIR` and pass "
            "--config.target.path=DIR/target (train.py builds a SIMULATED one when it is empty)."
        )
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    strategy = strategy or make_strategy(config)
    check_jit_compile(strategy, config.jit_compile)
    chief = is_chief(strategy)
    # Only the chief writes the workdir (other workers may share its path on a shared disk).
    with workdir_files.locked(workdir, "training run", progress=progress) if chief else contextlib.nullcontext():
        return _train(config, workdir, callbacks, strategy, chief, target_id, progress)


@dataclasses.dataclass
class PreparedRun:
    """What ``prepare_run`` makes ready: the run's data, model and where its records go."""

    config: ml_collections.ConfigDict
    workdir: str
    target: targets.SimilarityTarget
    fingerprint: str  # the run's identity fingerprint, recorded in checkpoints and the summary
    make_epoch: Callable[[int], tf.data.Dataset]
    steps_per_epoch: int
    monitor_images: tf.data.Dataset  # what each epoch is monitored on (``monitored_on``)
    monitored_on: str
    holdout_indices: np.ndarray
    model: NeuralRegularizedModel
    history_csv: str
    backup_dir: str


def _train(config, workdir, callbacks, strategy, chief, target_id, progress) -> dict:
    """``train`` once the strategy exists and (on the chief) the workdir is held: three stages."""
    run = prepare_run(config, workdir, strategy, chief, target_id, progress)
    if isinstance(run, dict):  # a finished run of the same config and target, reused
        return run
    started = time.time()
    fit_history = fit_run(run, strategy, chief, callbacks, progress)
    return finalise_run(run, fit_history, chief, seconds=time.time() - started)


def prepare_run(config, workdir, strategy, chief, target_id, progress):
    """Stage 1: claims the workdir, writes the config, seeds, and builds the data and the model.

    Returns:
        A ``PreparedRun``, or the summary of a finished run of the same config and target.
    """
    report = reporter(progress)
    target = targets.load_target(config.target.path)
    target_id = target_id or target_identity(target, config.target.path)
    identity = run_identity(config, target_id)
    if chief:
        status = claim(config, workdir, target_id)
        if status == workdir_files.FINISHED:
            report(f"{workdir} already holds this finished run (same config and target); reusing it.")
            return read_json(workdir_files.path(workdir, workdir_files.SUMMARY), "the run's summary")
        write_json_atomic(workdir_files.path(workdir, workdir_files.CONFIG), config.to_dict())
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        determinism.enable()

    info = data.dataset_info(config.data.dataset)
    n_train, validation_split = training_images(config, info.splits["train"])
    if validation_split:
        monitor_images = data.load_classification(
            config.data.dataset, validation_split, batch_size=config.batch_size, data_dir=config.data.data_dir)
        monitored_on = f"validation: the last {config.data.validation_size} training images ({validation_split})"
    else:  # data.validation_size = 0: the test images, as runs did before the validation split
        monitor_images = data.load_classification(
            config.data.dataset, "test", batch_size=config.batch_size, data_dir=config.data.data_dir,
            limit=config.data.eval_limit)
        monitored_on = "test" + (f"[:{config.data.eval_limit}]" if config.data.eval_limit else "")
    steps_per_epoch = n_train // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config.batch_size={config.batch_size} is larger than the {n_train} training images "
            "(config.data.train_limit); lower the batch size or use more images."
        )

    train_indices, holdout_indices = split_stimuli(
        target.n_stimuli, config.target.holdout_fraction, config.seed
    )
    stimulus_batch = config.target.batch_size or config.batch_size

    def make_epoch(epoch: int) -> tf.data.Dataset:
        """Epoch ``epoch``'s global batches, seeded by the epoch (exact resume)."""
        seed = epoch_seed(config.seed, epoch)
        train_images = data.load_classification(
            config.data.dataset,
            "train",
            batch_size=config.batch_size,
            data_dir=config.data.data_dir,
            augment=config.data.augment,
            shuffle=True,
            seed=seed,
            limit=n_train,
            drop_remainder=True,
            noise_sigma=float(config.robust_training.noise_sigma),
            noise_max_sigma=float(config.robust_training.noise_max_sigma),
        )
        return joint_dataset(train_images, target, train_indices, stimulus_batch, seed)

    with strategy.scope():
        model = build_model(config, info.num_classes, target.stimuli.shape[1:3])
        model.compile(optimizer=make_optimizer(config, steps_per_epoch), jit_compile=config.jit_compile)
        # Optimizer slots made now, not inside the first traced step (which then traces twice).
        model.optimizer.build(model.trainable_variables)

    return PreparedRun(
        config=config, workdir=workdir, target=target, fingerprint=workdir_files.fingerprint_of(identity),
        make_epoch=make_epoch, steps_per_epoch=steps_per_epoch, monitor_images=monitor_images, monitored_on=monitored_on,
        holdout_indices=holdout_indices, model=model,
        history_csv=workdir_files.path(workdir, workdir_files.HISTORY_CSV),
        backup_dir=workdir_files.path(workdir, workdir_files.BACKUP),
    )


def fit_run(run: PreparedRun, strategy, chief, callbacks, progress) -> keras.callbacks.History:
    """Stage 2: trains (resuming from the run's checkpoints) with our callbacks, then ``callbacks``."""
    config = run.config
    recorders = [
        keras.callbacks.TerminateOnNaN(),
        SimilarityMonitor(run.target, run.holdout_indices, verbose=config.verbose != 0 and chief),
    ]
    all_callbacks = [
        keras.callbacks.TensorBoard(
            workdir_files.path(run.workdir, workdir_files.TENSORBOARD), write_graph=False
        ),
        *callbacks,
    ]
    return train_model(
        run.model,
        strategy,
        run.make_epoch,
        epochs=config.epochs,
        steps_per_epoch=run.steps_per_epoch,
        backup_dir=run.backup_dir,
        callbacks=all_callbacks,
        recorders=recorders,
        validation_data=run.monitor_images,
        save_every_steps=config.checkpoint_every_steps,
        verbose=config.verbose,
        identity=run.fingerprint,
        progress=progress if chief else None,
        history_csv=run.history_csv,
    )


def finalise_run(run: PreparedRun, fit_history: keras.callbacks.History, chief: bool, *, seconds: float) -> dict:
    """Stage 3: refuses a diverged run, saves the artifacts, the history and (last) the summary."""
    config, model, workdir = run.config, run.model, run.workdir
    losses = fit_history.history.get("loss", [])
    last_logs = {key: float(values[-1]) for key, values in fit_history.history.items()}
    if losses and not math.isfinite(losses[-1]):
        raise FloatingPointError(
            "Training diverged (loss is NaN or inf); no model was saved. Lower "
            "config.optim.learning_rate or config.alpha and train again."
        )

    if not chief:
        # Every worker saves (TensorFlow's multi-worker protocol); only the chief's stays.
        scratch = tempfile.mkdtemp(prefix="neuroreg_worker_")
        _save_artifacts(model, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        return {
            "workdir": os.path.abspath(workdir),
            "chief": False,
            "epochs": len(losses),
            "final": last_logs,
        }
    _save_artifacts(model, workdir)
    history = read_history(run.history_csv)
    write_json_atomic(workdir_files.path(workdir, workdir_files.HISTORY_JSON), history)
    final = history[-1] if history else last_logs
    summary = {
        "workdir": os.path.abspath(workdir),
        "dataset": config.data.dataset,
        "alpha": config.alpha,
        "target": {"path": config.target.path, "kind": run.target.kind, "simulated": run.target.simulated},
        "identity": run.fingerprint,
        "epochs": len(history),
        "monitored_on": run.monitored_on,  # the images of the val_* metrics in the history
        "train_seconds_this_process": round(seconds, 1),
        "final": final,
        "gamma": dict(zip(model.tap_layers, np.asarray(model.gamma()).tolist())),
    }
    write_json_atomic(workdir_files.path(workdir, workdir_files.SUMMARY), summary)
    shutil.rmtree(run.backup_dir, ignore_errors=True)  # A finished run needs no backup.
    return summary
