r"""The paper's grayscale CIFAR-10 ResNet18 run (Li et al. 2019, Fig. 4A/5).

    python train.py --config=configs/cifar10_resnet18.py --workdir=runs/c10_neural \
        --config.target.path=runs/target/target

40 epochs, batch 64, SGD 0.1 decayed x0.3 every 4 epochs and reset after
epoch 20, alpha = 20, layers 1, 5, 9, 13, 17. Needs CIFAR-10 prepared for tfds
(see README) and a GPU: about 37 images/s on a 2-core CPU at full width.
Multi-GPU: all visible GPUs, BatchNorm synchronized over the global batch;
scale the global batch with ``--config.batch_size=256`` (the learning rate
follows linearly). Several machines: set TF_CONFIG on each and add
``--config.strategy=multi_worker`` (README, "Scaling out").
Add ``:runlocal`` to the config path for a one-minute local version.
"""

from neuroreg_tf.config import base_train_config, check_variant, paper_scale, runlocal

VARIANTS = ("runlocal",)


def get_config(arg=None):
    check_variant(arg, VARIANTS, "configs/cifar10_resnet18.py")
    config = base_train_config()
    config.data.dataset = "cifar10"
    config.model.depth = 18
    config = paper_scale(config)
    if arg == "runlocal":
        config = runlocal(config)
    return config
