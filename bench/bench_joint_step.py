"""Throughput of the joint (classification + similarity) step vs a plain classification step.

Both steps run on the same ResNet in one process: the plain step is
``NeuralRegularizedModel`` with alpha = 0 on (images, labels) batches, which is
exactly a classifier's training step; the joint step adds a batch of stimuli
with its target block (alpha = 20, the paper's). Batches are fixed in-memory
tensors, so the numbers measure the model, not the input pipeline. The paper
reports the joint step at about 2x the cost of the plain one.

    python bench/bench_joint_step.py                       # CPU-sized default
    python bench/bench_joint_step.py --width=1 --steps=50  # paper size (GPU)
    python bench/bench_joint_step.py --width=1 --strategy=mirrored --batch=256

Prints the time per step and classification images/s of each step (the fastest
of ``--repeats`` alternating measurements) and the ratio of their times per
step (joint / plain), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34))
    parser.add_argument("--width", type=float, default=0.25, help="channel multiplier (1 = paper)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (images and stimuli)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--stimulus_shape", default="36,64")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=4, help="alternating measurements of each")
    parser.add_argument("--alpha", type=float, default=20.0)
    parser.add_argument("--strategy", default="default", choices=("default", "mirrored"))
    parser.add_argument("--batch_norm", default="per_replica", choices=("per_replica", "synchronized"))
    parser.add_argument("--jit_compile", action="store_true")
    return parser.parse_args()


def main():
    args = _parse()
    import keras
    import tensorflow as tf

    from neuroreg_tf.models import ResNet
    from neuroreg_tf.training.distributed_data import distribute_global_batches
    from neuroreg_tf.models import NeuralRegularizedModel
    from neuroreg_tf.training.strategies import configure_batch_norm, make_strategy

    stimulus_shape = tuple(int(s) for s in args.stimulus_shape.split(","))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(args.batch, args.image_size, args.image_size, 1)).astype(np.float32)
    labels = rng.integers(0, 10, size=args.batch).astype(np.int64)
    stimuli = rng.uniform(size=(args.batch, *stimulus_shape, 1)).astype(np.float32)
    embedding = rng.normal(size=(args.batch, 16))
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    target = np.clip(embedding @ embedding.T, -1, 1).astype(np.float32)
    joint_batch = {"images": images, "labels": labels, "stimuli": stimuli, "target_similarity": target}
    plain_batch = (images, labels)

    strategy = make_strategy({"strategy": args.strategy})

    def build(alpha):
        keras.utils.set_random_seed(0)
        classifier = ResNet(args.depth, num_classes=10, width=args.width)
        configure_batch_norm(classifier, args.batch_norm)
        model = NeuralRegularizedModel(classifier, alpha=alpha)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=args.jit_compile)
        return model

    def iterator_of(batch):
        data = distribute_global_batches(
            strategy, lambda: tf.data.Dataset.from_tensors(batch).repeat()
        )
        return iter(data)

    with strategy.scope():
        models = {"plain": build(0.0), "joint": build(args.alpha)}
    iterators = {"plain": iterator_of(plain_batch), "joint": iterator_of(joint_batch)}
    functions = {}
    for name, model in models.items():
        model.make_train_function()
        functions[name] = model.train_function

    def run(name, steps):
        for _ in range(steps):
            logs = functions[name](iterators[name])
        np.asarray(tf.nest.flatten(logs)[0])  # waits for the last step to finish

    for name in models:
        run(name, args.warmup)
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name in models:
            started = time.perf_counter()
            run(name, args.steps)
            seconds[name].append((time.perf_counter() - started) / args.steps)
    # The fastest repeat: on a shared machine, slower repeats measure the neighbours.
    per_step = {name: float(np.min(values)) for name, values in seconds.items()}
    result = {
        "device": [d.name for d in tf.config.list_logical_devices("GPU")] or "cpu",
        "replicas": strategy.num_replicas_in_sync,
        "depth": args.depth,
        "width": args.width,
        "batch": args.batch,
        "image_size": args.image_size,
        "stimulus_shape": list(stimulus_shape),
        "seconds_per_step": per_step,
        "seconds_per_step_all_repeats": seconds,
        "classification_images_per_s": {n: args.batch / s for n, s in per_step.items()},
        "joint_over_plain_time_ratio": per_step["joint"] / per_step["plain"],
    }
    print(json.dumps(result, indent=2))
    print(
        f"joint step / plain step time ratio: {result['joint_over_plain_time_ratio']:.2f} "
        f"({per_step['joint'] * 1e3:.1f} ms vs {per_step['plain'] * 1e3:.1f} ms per step)"
    )


if __name__ == "__main__":
    main()
