r"""Trains a classifier with (or, at alpha=0, without) neural similarity regularization.

    python train.py --workdir=runs/demo_neural                      # configs/demo.py
    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10 \
        --config.alpha=20 --config.target.path=runs/target/target
    python train.py --config=configs/cifar10_resnet18.py:runlocal --workdir=/tmp/local

Without --config.target.path, train.py first builds a SIMULATED target with
configs/build_target.py:<config.target.build> into <workdir>/target_build/.

Distributed (``config.batch_size`` is the global batch; see README, "Scaling out")::

    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10 \
        --config.strategy=mirrored --config.batch_norm=synchronized   # all GPUs
    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \
    python train.py --config=configs/cifar10_resnet18.py --workdir=/shared/c10 \
        --config.strategy=multi_worker                                 # on each machine

An interrupted run (even SIGKILLed mid-epoch) resumes exactly from
<workdir>/backup when started again with the same command. See
neuroreg_tf/training/trainer.py for the workdir layout.
"""

import os
import tempfile

from neuroreg_tf import cli

cli.quiet_tensorflow()

from absl import app, flags
from ml_collections import config_flags

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.neural import build_targets
from neuroreg_tf.training import multi_worker, strategies, trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/demo.py", "Training config file (optionally path:arg).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for everything the run writes.")
flags.mark_flag_as_required("workdir")


def default_target(config, workdir: str) -> str:
    """Builds (or reuses) the SIMULATED target of configs/build_target.py:<config.target.build>.

    The chief builds it in <workdir>/target_build/; other workers of a cluster build the same
    (seeded) target in a scratch directory, as they must not write into the workdir.
    """
    build_config = cli.load_config("build_target.py", config.target.build)
    if multi_worker.is_chief():
        out_dir = os.path.join(workdir, workdir_files.TARGET_BUILD)
    else:
        out_dir = tempfile.mkdtemp(prefix="neuroreg_worker_target_")
    print(f"No target given: building the SIMULATED configs/build_target.py:{config.target.build} "
          f"target in {out_dir}", flush=True)
    return build_targets.ensure_built(build_config, out_dir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_absl_info()
    config, workdir = _CONFIG.value, _WORKDIR.value
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    strategy = strategies.make_strategy(config)
    if not config.target.path:
        config.target.path = default_target(config, workdir)
    summary = trainer.train(config, workdir, strategy=strategy)
    final = summary["final"]
    print(
        f"Finished {summary['epochs']} epoch(s): val_accuracy={final.get('val_accuracy', float('nan')):.4f}, "
        f"held-out similarity r={final.get('val_similarity_r', float('nan')):.3f}; "
        f"wrote {summary['workdir']}"
    )


if __name__ == "__main__":
    app.run(main)
