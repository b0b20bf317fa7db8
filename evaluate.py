r"""Evaluates trained classifiers: clean accuracy, Gaussian-noise robustness, adversarial robustness.

  python evaluate.py --workdir=runs/demo/eval
  python evaluate.py --workdir=runs/demo/eval --config.adversarial.enabled=True \
      --config.models="None=runs/demo/none,Neural=runs/demo/neural"

Writes robustness.json, noise_robustness.png (and, with config.adversarial.enabled, per-sample CSV files and
adversarial plots) to --workdir and prints the tables. See configs/evaluate.py for every option.
The same evaluation again reuses the finished one; another one in --workdir is refused unless
--config.overwrite=True.
"""

from neuroreg_tf import cli

cli.quiet_tensorflow()

from neuroreg_tf.robustness import adversarial as adversarial_lib
from neuroreg_tf.robustness import evaluation

_CONFIG = cli.define_config("evaluate.py", "Evaluation config",
                            renamed_flags={"--adversarial": "--config.adversarial.enabled=True"})
_WORKDIR = cli.define_workdir()


def main(argv):
    config = _CONFIG.value
    model_specs = evaluation.parse_model_specs(config.models)
    if config.dataset:
        dataset, data_dir = config.dataset, config.data_dir or None
    else:
        dataset, run_data_dir = evaluation.dataset_from_run(model_specs[0][1])
        data_dir = config.data_dir or run_data_dir
    x, y = evaluation.load_examples(
        dataset, config.split, num_examples=config.num_examples, data_dir=data_dir
    )
    adversarial = None
    if config.adversarial.enabled:
        adversarial = adversarial_lib.arguments_from_config(config.adversarial)
    evaluation.evaluate_models(
        model_specs,
        x,
        y,
        sigmas=config.noise.sigmas,
        seeds=config.noise.seeds,
        batch_size=config.batch_size,
        adversarial=adversarial,
        workdir=_WORKDIR.value,
        metadata={"dataset": dataset, "split": config.split},
        overwrite=config.overwrite,
        config=config.to_dict(),
    )


if __name__ == "__main__":
    cli.run(main, check=evaluation.check_config)
