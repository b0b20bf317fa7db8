r"""The whole method on built-in data, in minutes on a laptop-class CPU.

    python demo.py --workdir=runs/demo

1. builds a SIMULATED mouse-V1 Neural (model) similarity target over natural-image
   crops (simulated scans -> predictive models -> Eq 6; configs/build_target.py:demo),
2. trains a "None" model (alpha = 0) and a "Neural" model (alpha > 0) on real
   Fashion-MNIST with the same seed, data and schedule,
3. evaluates both under Gaussian noise (several seeds, mean and SEM),
   prints a table and writes robustness.json and noise_robustness.png.

Each step claims its own folder of --workdir with what made it, so an interrupted demo
continues where it stopped, a finished one is reused, and a demo of another config in the same
--workdir (e.g. ``:runlocal``) is refused unless --config.overwrite=True. The config is
configs/demo.py (``--config=configs/demo.py:runlocal`` for a one-minute version).
"""

import copy
import os

from neuroreg_tf import cli

cli.quiet_tensorflow()

from neuroreg_tf import targets, workdir as workdir_files
from neuroreg_tf.neural import build_targets
from neuroreg_tf.robustness import evaluation
from neuroreg_tf.training import trainer

_CONFIG = cli.define_config("demo.py", "Demo config")
_WORKDIR = cli.define_workdir(required=False, default="runs/demo")


def check_config(config) -> None:
    """The training config's checks plus the demo's evaluation section."""
    trainer.check_config(config)
    evaluation.check_noise_settings(config.evaluation.noise, "config.evaluation.noise")


def main(argv):
    config, workdir = _CONFIG.value, _WORKDIR.value
    build_config = cli.load_config("build_target.py", config.target.build)
    build_config.overwrite = config.overwrite
    target_path = config.target.path or build_targets.ensure_built(
        build_config, os.path.join(workdir, workdir_files.TARGET_BUILD)
    )
    target = targets.load_target(target_path, validate=False)
    runs = {}
    for label, alpha in (("None", 0.0), ("Neural (simulated V1)", config.alpha)):
        run_config = copy.deepcopy(config)
        run_config.alpha = alpha
        run_config.target.path = target_path
        run_dir = os.path.join(workdir, "none" if alpha == 0 else "neural")
        print(f"\n=== Training {label}: alpha={alpha} -> {run_dir}", flush=True)
        trainer.train(run_config, run_dir)
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
        sigmas=config.evaluation.noise.sigmas,
        seeds=config.evaluation.noise.seeds,
        workdir=os.path.join(workdir, "evaluation"),
        metadata={
            "dataset": config.data.dataset,
            "split": "test",
            "target": {"path": target_path, "kind": target.kind, "simulated": target.simulated},
        },
        overwrite=config.overwrite,
    )


if __name__ == "__main__":
    cli.run(main, check=check_config)
