r"""The paper's grayscale CIFAR-100 ResNet34 run (Li et al. 2019, Fig. 4B).

    python train.py --config=configs/cifar100_resnet34.py --workdir=runs/c100_neural \
        --config.target.path=runs/target/target

Same schedule as the CIFAR-10 run. Needs CIFAR-100 prepared for tfds (see
README) and a GPU. Multi-GPU: all visible GPUs, BatchNorm synchronized over the global batch;
scale the global batch with ``--config.batch_size=256`` (the learning rate
follows linearly). Several machines: set TF_CONFIG on each and add
``--config.strategy=multi_worker`` (README, "Scaling out").
Add ``:runlocal`` for a one-minute local version.
"""

from neuroreg_tf.config import base_train_config, check_variant, paper_scale, runlocal

VARIANTS = ("runlocal",)


def get_config(arg=None):
    check_variant(arg, VARIANTS, "configs/cifar100_resnet34.py")
    config = base_train_config()
    config.data.dataset = "cifar100"
    config.model.depth = 34
    config = paper_scale(config)
    if arg == "runlocal":
        config = runlocal(config)
    return config
