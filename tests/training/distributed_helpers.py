"""Tiny models and data shared by the distributed and resume tests (no tests here).

Run as a script, it is one training process of a test (a strategy over N logical
CPU devices, or one worker of a TF_CONFIG cluster); logical devices must be set
before the first TensorFlow op, hence the subprocesses.
"""

from __future__ import annotations

import os
import sys

import numpy as np

N_CLASSES = 4
IMAGE_SIZE = 12
STIMULUS_SHAPE = (12, 16)
N_TRAIN = 32
N_STIMULI = 40
BATCH = 8


def configure_cpu_devices(count: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    cpu = tf.config.list_physical_devices("CPU")[0]
    if count > 1:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )


def tiny_target():
    from neuroreg_tf.targets import SimilarityTarget

    rng = np.random.default_rng(7)
    stimuli = rng.uniform(size=(N_STIMULI, *STIMULUS_SHAPE, 1)).astype(np.float32)
    embedding = rng.normal(size=(N_STIMULI, 6))
    embedding -= embedding.mean(axis=0)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    matrix = np.clip(embedding @ embedding.T, -1, 1).astype(np.float32)
    np.fill_diagonal(matrix, 1.0)
    return SimilarityTarget(stimuli=stimuli, matrix=matrix, metadata={"kind": "custom"})


def classification_arrays():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(N_TRAIN, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    labels = rng.integers(0, N_CLASSES, size=N_TRAIN).astype(np.int64)
    return images, labels


def make_epoch_fn(seed: int = 0, batch: int = BATCH):
    """make_epoch(epoch) -> joint dataset of global batches, seeded by epoch."""
    import tensorflow as tf

    from neuroreg_tf.training.distributed_data import epoch_seed
    from neuroreg_tf.training.joint_data import joint_dataset

    target = tiny_target()
    images, labels = classification_arrays()

    def make_epoch(epoch):
        this_seed = epoch_seed(seed, epoch)
        classification = (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(N_TRAIN, seed=this_seed, reshuffle_each_iteration=False)
            .batch(batch, drop_remainder=True)
        )
        return joint_dataset(classification, target, np.arange(N_STIMULI), batch, this_seed)

    return make_epoch


def tiny_classifier(weight_decay: float = 1e-4):
    """A two-stage residual-free CNN with the ResNet's layer names, for fast tests."""
    import keras

    regularizer = keras.regularizers.L2(weight_decay)

    def conv_bn_relu(x, filters, strides, prefix, out_name):
        x = keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            kernel_regularizer=regularizer, name=f"{prefix}_conv",
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
        return keras.layers.Activation("relu", name=out_name)(x)

    inputs = keras.Input(shape=(None, None, 1), name="images")
    x = conv_bn_relu(inputs, 4, 1, "stem", "stem_relu")
    x = conv_bn_relu(x, 6, 2, "stage1_block1", "stage1_block1_out")
    x = conv_bn_relu(x, 8, 2, "stage2_block1", "stage2_block1_out")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(N_CLASSES, kernel_regularizer=regularizer, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny")


def build_model(centering: str = "batch", batch_norm: str = "synchronized", alpha: float = 2.0):
    """The tiny classifier wrapped for joint training, compiled with SGD + momentum."""
    import keras

    from neuroreg_tf.models import NeuralRegularizedModel
    from neuroreg_tf.training.strategies import configure_batch_norm

    keras.utils.set_random_seed(11)
    classifier = tiny_classifier()
    configure_batch_norm(classifier, batch_norm)
    model = NeuralRegularizedModel(
        classifier,
        tap_layers=["stem_relu", "stage1_block1_out", "stage2_block1_out"],
        alpha=alpha,
        centering=centering,
        stimulus_shape=STIMULUS_SHAPE,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


LOGGED_KEYS = ("loss", "task_loss", "similarity_loss")


def step_logger():
    """A Keras callback that records ``LOGGED_KEYS`` after every step in ``.rows``."""
    import keras

    class StepLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_train_batch_end(self, batch, logs=None):
            self.rows.append([float(logs[key]) for key in LOGGED_KEYS])

    return StepLogger()


def run_mirrored(devices: int, out_path: str, steps: int, configure: bool = True) -> None:
    """Trains each tiny configuration for ``steps`` steps with fit and saves results."""
    if configure:
        configure_cpu_devices(devices)
    from neuroreg_tf.training.distributed_data import distribute_global_batches, epoch_stream
    from neuroreg_tf.training.strategies import make_strategy

    strategy = make_strategy({"strategy": "mirrored" if devices > 1 else "default"})
    assert strategy.num_replicas_in_sync == devices, strategy.num_replicas_in_sync
    make_epoch = make_epoch_fn()
    results = {}
    for centering in ("batch", "ema"):
        with strategy.scope():
            model = build_model(centering=centering)
        results[f"{centering}_initial"] = np.concatenate(
            [np.ravel(w) for w in model.get_weights()]
        )
        data = distribute_global_batches(strategy, lambda: epoch_stream(make_epoch, 1, steps))
        logger = step_logger()
        model.fit(data, epochs=1, steps_per_epoch=steps, callbacks=[logger], verbose=0)
        results[f"{centering}_logs"] = np.array(logger.rows)
        results[f"{centering}_weights"] = np.concatenate([np.ravel(w) for w in model.get_weights()])
    np.savez(out_path, **results)


def _flat_weights(model) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def kill_at_step(step: int):
    """A callback that SIGKILLs this process once the optimizer has made ``step`` steps."""
    import signal

    import keras

    from neuroreg_tf.training.checkpointing import optimizer_step

    class KillAtStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if optimizer_step(self.model) == step:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAtStep()


def run_worker(out_path: str, epochs: int, workdir: str, kill_step: int = 0,
               save_every_steps: int = 0, configure: bool = True) -> None:
    """One worker of the TF_CONFIG cluster (or a single process): the custom loop."""
    if configure:
        configure_cpu_devices(1)
    from neuroreg_tf.training.checkpointing import optimizer_step
    from neuroreg_tf.training.multi_worker import is_chief, train_loop
    from neuroreg_tf.training.strategies import make_strategy

    strategy = make_strategy({"strategy": "multi_worker" if "TF_CONFIG" in os.environ else "default"})
    with strategy.scope():
        model = build_model()
    callbacks = [step_logger()]
    if kill_step:
        callbacks.append(kill_at_step(kill_step))
    train_loop(
        model, strategy, make_epoch_fn(), epochs=epochs, steps_per_epoch=N_TRAIN // BATCH,
        callbacks=callbacks, checkpoint_dir=os.path.join(workdir, "backup"),
        save_every_steps=save_every_steps, verbose=0,
    )
    np.savez(out_path, weights=_flat_weights(model), logs=np.array(callbacks[0].rows),
             chief=is_chief(strategy), steps=optimizer_step(model))


def run_fit(out_path: str, epochs: int, workdir: str, kill_step: int = 0,
            configure: bool = True) -> None:
    """The single-process path of the trainer: ``distributed_fit.train_model`` (Keras fit)."""
    if configure:
        configure_cpu_devices(1)
    import tensorflow as tf

    from neuroreg_tf.training.checkpointing import AtomicCheckpointer, optimizer_step
    from neuroreg_tf.training.driver import train_model

    backup_dir = os.path.join(workdir, "backup")
    latest = AtomicCheckpointer(backup_dir).latest()
    model = build_model()
    callbacks = [step_logger()]
    if kill_step:
        callbacks.append(kill_at_step(kill_step))
    train_model(model, tf.distribute.get_strategy(), make_epoch_fn(), epochs=epochs,
                steps_per_epoch=N_TRAIN // BATCH, backup_dir=backup_dir, callbacks=callbacks,
                verbose=0)
    np.savez(out_path, weights=_flat_weights(model), logs=np.array(callbacks[0].rows),
             start_step=0 if latest is None else latest["global_step"],
             steps=optimizer_step(model))


if __name__ == "__main__":
    role, arguments = sys.argv[1], sys.argv[2:]
    if role == "mirrored":
        run_mirrored(int(arguments[0]), arguments[1], int(arguments[2]))
    elif role == "reference":
        # Every single-process run, in one process: the default strategy uses the
        # first logical device only, MirroredStrategy both.
        out_dir, steps, epochs = arguments[0], int(arguments[1]), int(arguments[2])
        configure_cpu_devices(2)
        run_mirrored(1, os.path.join(out_dir, "one_device.npz"), steps, configure=False)
        run_mirrored(2, os.path.join(out_dir, "two_devices.npz"), steps, configure=False)
        run_fit(os.path.join(out_dir, "fit_full.npz"), epochs, os.path.join(out_dir, "fit_full"),
                configure=False)
        run_worker(os.path.join(out_dir, "loop_full.npz"), epochs, os.path.join(out_dir, "loop_full"),
                   0, 2, configure=False)
    elif role == "worker":
        run_worker(arguments[0], int(arguments[1]), arguments[2], int(arguments[3]), int(arguments[4]))
    elif role == "fit":
        run_fit(arguments[0], int(arguments[1]), arguments[2], int(arguments[3]))
    else:
        raise SystemExit(f"Unknown role; expected mirrored, reference, worker or fit. Received: role={role!r}")
