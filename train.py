r"""Trains a classifier with (or, at alpha=0, without) neural similarity regularization.

    python train.py --workdir=runs/demo_neural                      # configs/demo.py
    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10 \
        --config.alpha=20 --config.target.path=runs/target/target
    python train.py --config=configs/cifar10_resnet18.py:runlocal --workdir=/tmp/local

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

from neuroreg_tf import cli

cli.quiet_tensorflow()

from absl import app, flags
from ml_collections import config_flags

from neuroreg_tf.training import trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/demo.py", "Training config file (optionally path:arg).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for everything the run writes.")
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_absl_info()
    summary = trainer.train(_CONFIG.value, _WORKDIR.value)
    final = summary["final"]
    print(
        f"Finished {summary['epochs']} epoch(s): val_accuracy={final.get('val_accuracy', float('nan')):.4f}, "
        f"held-out similarity r={final.get('val_similarity_r', float('nan')):.3f}; "
        f"wrote {summary['workdir']}"
    )


if __name__ == "__main__":
    app.run(main)
