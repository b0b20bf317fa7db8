r"""Trains a classifier with (or, at alpha=0, without) neural similarity regularization.

    python train.py --workdir=runs/demo_neural                      # configs/demo.py
    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10 \
        --config.alpha=20 --config.target.path=runs/target/target
    python train.py --config=configs/cifar10_resnet18.py:runlocal --workdir=/tmp/local

Without --config.target.path, train.py first builds a SIMULATED target with
configs/build_target.py:<config.target.build> into <workdir>/target_build/.

The workdir records what made it (identity.json): the same command again reuses a finished run
and resumes an interrupted one exactly (even SIGKILLed mid-epoch) from its verified checkpoints;
another config or target there is refused unless --config.overwrite=True, which starts over in
an empty workdir.

Distributed (``config.batch_size`` is the global batch; see README, "Scaling out")::

    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10 \
        --config.strategy=mirrored --config.batch_norm=synchronized   # all GPUs
    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \
    python train.py --config=configs/cifar10_resnet18.py --workdir=/shared/c10 \
        --config.strategy=multi_worker                                 # on each machine
"""

import contextlib
import os
import tempfile

from neuroreg_tf import cli

cli.quiet_tensorflow()

from neuroreg_tf import workdir as workdir_files
from neuroreg_tf.neural import build_targets
from neuroreg_tf.training import multi_worker, strategies, trainer

_CONFIG = cli.define_config("demo.py", "Training config")
_WORKDIR = cli.define_workdir()


def main(argv):
    config, workdir = _CONFIG.value, _WORKDIR.value
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    strategy = strategies.make_strategy(config)
    chief = multi_worker.is_chief()
    # Held from the claim below to the end of training; trainer.train holds it again (re-entrant).
    with workdir_files.locked(workdir, "training run (train.py)") if chief else contextlib.nullcontext():
        summary = _train(config, workdir, strategy, chief)
    final = summary["final"]
    print(
        f"Finished {summary['epochs']} epoch(s): val_accuracy={final.get('val_accuracy', float('nan')):.4f}, "
        f"held-out similarity r={final.get('val_similarity_r', float('nan')):.3f}; "
        f"wrote {summary['workdir']}"
    )


def _train(config, workdir, strategy, chief) -> dict:
    target_id = None
    if not config.target.path:
        build_config = cli.load_config("build_target.py", config.target.build)
        build_config.overwrite = config.overwrite
        build = f"configs/build_target.py:{config.target.build}"
        target_id = {"build": build, "fingerprint": workdir_files.fingerprint_of(build_targets.build_identity(build_config))}
        legacy_id = {"build": build,
                     "fingerprint": workdir_files.fingerprint_of(build_targets.legacy_build_identity(build_config))}
        if chief:
            status = trainer.claim(config, workdir, target_id, legacy_targets=[legacy_id])
            if status == workdir_files.FINISHED:
                config.target.path = os.path.join(workdir, workdir_files.TARGET_BUILD, workdir_files.TARGET)
            else:
                print("No target given: building the SIMULATED "
                      f"configs/build_target.py:{config.target.build} target", flush=True)
                config.target.path = build_targets.ensure_built(
                    build_config, os.path.join(workdir, workdir_files.TARGET_BUILD)
                )
            config.overwrite = False  # claimed above: the run's own claim must not start over again
        else:  # Other workers build the same (seeded) target where they may write.
            config.target.path = build_targets.ensure_built(
                build_config, tempfile.mkdtemp(prefix="neuroreg_worker_target_"), progress=None
            )
    return trainer.train(config, workdir, strategy=strategy, target_id=target_id)


if __name__ == "__main__":
    cli.run(main, check=trainer.check_config)
