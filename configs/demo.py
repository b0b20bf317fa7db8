r"""The demo: Fashion-MNIST (real, from Debian) with a SIMULATED V1 target.

    python train.py --config=configs/demo.py --workdir=runs/demo_neural
    python demo.py --workdir=runs/demo      # both models + noise evaluation

A narrow ResNet18 (width 1/8) on 8,000 training images for 3 epochs, with the
SIMULATED-V1 Neural (model) similarity target of configs/build_target.py:demo (1,240
natural-image crops). The learning rate steps down after each epoch (0.05, 0.015, 0.0045), the
default study's schedule: a run that ends at a quiet rate gives about the same noise curve for
any seed or data order, where a constant rate left the curve to wherever the last steps went.
Minutes on a 2-core CPU. ``:runlocal`` shrinks it further (tests use that).
"""

import ml_collections

from neuroreg_tf.config import base_train_config, check_variant, noise_section, runlocal

VARIANTS = ("runlocal",)
# Keys older versions used: a command line with one is refused naming the new key.
RENAMED = {"evaluation.sigmas": "evaluation.noise.sigmas", "evaluation.seeds": "evaluation.noise.seeds"}


def get_config(arg=None):
    check_variant(arg, VARIANTS, "configs/demo.py")
    config = base_train_config()
    config.data.dataset = "fashion_mnist"
    config.epochs = 3
    config.batch_size = 64
    config.data.train_limit = 8000
    config.data.eval_limit = 2000
    config.model.width = 0.125
    config.optim.learning_rate = 0.05
    config.optim.schedule = "paper"  # x0.3 after every epoch (step_epochs 1, no cycle reset)
    config.optim.step_epochs = 1
    config.optim.decay = 0.3
    config.optim.cycle_epochs = 1000
    # demo.py only: the noise evaluation of both models (train.py ignores it).
    config.evaluation = ml_collections.ConfigDict()
    config.evaluation.num_examples = 2000
    # The default study's noise seeds; the noise section is the same in every config.
    config.evaluation.noise = noise_section(sigmas=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5), seeds=(0, 1, 2))
    if arg == "runlocal":
        config = runlocal(config)
        config.evaluation.num_examples = 200
        config.evaluation.noise = noise_section(sigmas=(0.0, 0.2), seeds=(0, 1))
    return config
