r"""The paper's grayscale CIFAR-100 ResNet34 run (Li et al. 2019, Fig. 4B).

    python train.py --config=configs/cifar100_resnet34.py --workdir=runs/c100_neural \
        --config.target.path=runs/target/target

Same schedule as the CIFAR-10 run. Needs CIFAR-100 prepared for tfds (see
README) and a GPU. Add ``:runlocal`` for a one-minute local version.
"""

from neuroreg_tf.config import base_train_config, runlocal


def get_config(arg=None):
    config = base_train_config()
    config.data.dataset = "cifar100"
    config.model.depth = 34
    if arg == "runlocal":
        config = runlocal(config)
    return config
