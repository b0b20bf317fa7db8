r"""The whole method on built-in data, in minutes on a laptop-class CPU.

    python demo.py --workdir=runs/demo

1. builds a SIMULATED mouse-V1 Neural (model) similarity target over natural-image
   crops (simulated scans -> predictive models -> Eq 6),
2. trains a "None" model (alpha = 0) and a "Neural" model (alpha > 0) on real
   Fashion-MNIST with the same seed, data and schedule,
3. evaluates both under Gaussian noise (several seeds, mean and SEM),
   prints a table and writes robustness.json and noise_robustness.png.

Runs that already finished are reused, so an interrupted demo continues where
it stopped. The config is configs/demo.py (``--config=configs/demo.py:runlocal``
for a one-minute version).
"""

import copy
import os

from neuroreg_tf import cli

cli.quiet_tensorflow()

from absl import app, flags
from ml_collections import config_flags

from neuroreg_tf import targets, workdir as workdir_files
from neuroreg_tf.neural import build_targets
from neuroreg_tf.robustness import evaluation
from neuroreg_tf.training import trainer

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Demo config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Directory for everything the demo writes.")


def train_once(config, workdir):
    if workdir_files.is_finished_training(workdir):
        print(f"Reusing the finished run in {workdir}")
        return
    trainer.train(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_absl_info()
    config, workdir = _CONFIG.value, _WORKDIR.value
    target_path = build_targets.ensure_built(
        cli.load_config("build_target.py", config.target.build),
        os.path.join(workdir, workdir_files.TARGET_BUILD),
    )

    target = targets.load_target(target_path, validate=False)
    runs = {}
    for label, alpha in (("None", 0.0), ("Neural (simulated V1)", config.alpha)):
        run_config = copy.deepcopy(config)
        run_config.alpha = alpha
        run_config.target.path = target_path
        run_dir = os.path.join(workdir, "none" if alpha == 0 else "neural")
        print(f"\n=== Training {label}: alpha={alpha} -> {run_dir}", flush=True)
        train_once(run_config, run_dir)
        runs[label] = run_dir

    print("\n=== Evaluating under Gaussian noise", flush=True)
    x, y = evaluation.load_examples(
        config.data.dataset,
        "test",
        num_examples=config.evaluation.num_examples,
        data_dir=config.data.data_dir,
    )
    evaluation.evaluate_models(
        list(runs.items()),
        x,
        y,
        sigmas=config.evaluation.sigmas,
        seeds=config.evaluation.seeds,
        workdir=os.path.join(workdir, "evaluation"),
        metadata={
            "dataset": config.data.dataset,
            "split": "test",
            "target": {"path": target_path, "kind": target.kind, "simulated": target.simulated},
        },
    )


if __name__ == "__main__":
    app.run(main)
