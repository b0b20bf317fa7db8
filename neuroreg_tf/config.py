"""The training configuration every ``configs/*.py`` file starts from.

Sections: ``data`` (classification set), ``target`` (similarity target and
stimulus batches), ``model``, ``similarity`` (how S_CNN is formed), ``optim``
(SGD and the learning-rate schedule). ``alpha`` is top level so a run is
``--config.alpha=20``.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_train_config() -> ml_collections.ConfigDict:
    """Defaults shared by all training configs (the paper's choices where it has them)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.alpha = 20.0  # Eq 7; the paper's main value (2..32 in its supplement).
    config.epochs = 40
    config.batch_size = 64  # GLOBAL classification images per step, split over replicas; paper: 64.
    config.deterministic = True  # tf.config.experimental.enable_op_determinism().
    config.jit_compile = False
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
    config.model.width = 0.125
    config.target.build = "runlocal"
    return config
