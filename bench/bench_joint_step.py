"""What the joint (classification + similarity) training step costs, measured in one run.

Four steps on the same ResNet, each timed as the fastest of ``--repeats`` alternating
measurements of ``--steps`` steps (on a shared machine, slower repeats measure the neighbours):

* plain: a classifier's step (``NeuralRegularizedModel`` at alpha 0) on the classification batch,
* plain on stimuli: the same step on a batch of the stimuli (36 x 64 by default),
* joint: the training step at alpha 20 (classification batch + stimulus batch + Eq 7-10),
* and, with ``--xla``, the plain and joint steps compiled with XLA (and their losses after the
  timed steps, to see whether XLA computes the same numbers).

The overhead of the joint step is t(joint) / [t(plain) + t(plain on stimuli)]: what the
similarity loss (features of five layers, Eq 9 for every pair, Eq 10, the arctanh loss, its
gradient) adds to two forward/backward passes a network needs anyway. ``--deterministic``
also times the joint step with ``neuroreg_tf.determinism.enable()`` (in a second process, as
that switch is process-wide).

    python bench/bench_joint_step.py                       # CPU-sized default (width 1/4)
    python bench/bench_joint_step.py --xla --deterministic # + XLA and determinism costs
    python bench/bench_joint_step.py --width=1 --steps=50  # paper size (GPU)

Prints one JSON object and a summary; ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def parse(argv=None):
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
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    parser.add_argument("--xla", action="store_true", help="also time the steps compiled with XLA")
    parser.add_argument("--deterministic", action="store_true",
                        help="also time the joint step with determinism.enable() (a second process)")
    parser.add_argument("--only_joint", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args) -> dict:
    """Times the steps ``args`` asks for in this process; returns the JSON-able result."""
    import keras
    import tensorflow as tf

    from neuroreg_tf.models import NeuralRegularizedModel, ResNet
    from neuroreg_tf.training.distributed_data import distribute_global_batches
    from neuroreg_tf.training.strategies import configure_batch_norm, make_strategy

    stimulus_shape = tuple(int(s) for s in args.stimulus_shape.split(","))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(args.batch, args.image_size, args.image_size, 1)).astype(np.float32)
    labels = rng.integers(0, 10, size=args.batch).astype(np.int64)
    stimuli = rng.uniform(size=(args.batch, *stimulus_shape, 1)).astype(np.float32)
    embedding = rng.normal(size=(args.batch, 16))
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    target = np.clip(embedding @ embedding.T, -1, 1).astype(np.float32)
    batches = {
        "plain": (images, labels),
        "plain_on_stimuli": (stimuli, labels),
        "joint": {"images": images, "labels": labels, "stimuli": stimuli, "target_similarity": target},
    }
    strategy = make_strategy({"strategy": args.strategy})

    def build(alpha, jit):
        keras.utils.set_random_seed(0)
        keras.config.set_dtype_policy(args.precision)
        classifier = ResNet(args.depth, num_classes=10, width=args.width)
        configure_batch_norm(classifier, args.batch_norm)
        model = NeuralRegularizedModel(classifier, alpha=alpha)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit)
        model.optimizer.build(model.trainable_variables)
        keras.config.set_dtype_policy("float32")
        return model

    plan = {"joint": ("joint", args.alpha, False)} if args.only_joint else {
        "plain": ("plain", 0.0, False),
        "plain_on_stimuli": ("plain_on_stimuli", 0.0, False),
        "joint": ("joint", args.alpha, False),
    }
    if args.xla and not args.only_joint:
        plan.update({"plain_xla": ("plain", 0.0, True), "joint_xla": ("joint", args.alpha, True)})
    functions, iterators, models = {}, {}, {}
    with strategy.scope():
        for name, (batch, alpha, jit) in plan.items():
            models[name] = build(alpha, jit)
    for name, (batch, _, _) in plan.items():
        data = distribute_global_batches(strategy, lambda b=batches[batch]: tf.data.Dataset.from_tensors(b).repeat())
        iterators[name] = iter(data)
        models[name].make_train_function()
        functions[name] = models[name].train_function

    last_logs = {}

    def run(name, steps):
        for _ in range(steps):
            logs = functions[name](iterators[name])
        last_logs[name] = {k: float(np.asarray(v)) for k, v in logs.items() if np.size(v) == 1}

    for name in plan:
        run(name, args.warmup)
    seconds = {name: [] for name in plan}
    for _ in range(args.repeats):
        for name in plan:
            started = time.perf_counter()
            run(name, args.steps)
            seconds[name].append((time.perf_counter() - started) / args.steps)
    per_step = {name: float(np.min(values)) for name, values in seconds.items()}
    result = {
        "device": [d.name for d in tf.config.list_logical_devices("GPU")] or "cpu",
        "replicas": strategy.num_replicas_in_sync,
        "depth": args.depth, "width": args.width, "batch": args.batch, "precision": args.precision,
        "image_size": args.image_size, "stimulus_shape": list(stimulus_shape),
        "seconds_per_step": per_step,
        "seconds_per_step_all_repeats": seconds,
        "classification_images_per_s": {n: args.batch / s for n, s in per_step.items()},
    }
    if not args.only_joint:
        result["joint_overhead"] = per_step["joint"] / (per_step["plain"] + per_step["plain_on_stimuli"])
        result["joint_over_plain"] = per_step["joint"] / per_step["plain"]
    if args.xla and not args.only_joint:
        result["xla_speedup"] = {s: per_step[s] / per_step[f"{s}_xla"] for s in ("plain", "joint")}
        result["xla_loss_difference"] = {
            s: abs(last_logs[s]["loss"] - last_logs[f"{s}_xla"]["loss"]) for s in ("plain", "joint")
        }
    return result


def main(argv=None):
    args = parse(argv)
    if args.deterministic and not args.only_joint:
        # Determinism is process-wide: time the joint step with and without it in two fresh processes.
        flags = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--deterministic", "--xla")]
        joint = {}
        for deterministic in (False, True):
            env = dict(os.environ, NEUROREG_BENCH_DETERMINISTIC="1" if deterministic else "0")
            out = subprocess.run([sys.executable, __file__, "--only_joint", *flags], env=env,
                                 capture_output=True, text=True, check=True).stdout
            joint[deterministic] = json.loads(out[out.index("{"):out.rindex("}") + 1])["seconds_per_step"]["joint"]
    if os.environ.get("NEUROREG_BENCH_DETERMINISTIC") == "1":
        from neuroreg_tf import determinism

        determinism.enable()
    result = measure(args)
    if args.deterministic and not args.only_joint:
        result["determinism_cost"] = joint[True] / joint[False]
    print(json.dumps(result, indent=2))
    if args.only_joint:
        return
    per_step = result["seconds_per_step"]
    print(f"joint overhead t(joint) / [t(plain) + t(plain on stimuli)] = {result['joint_overhead']:.2f} "
          f"({per_step['joint'] * 1e3:.1f} ms vs {per_step['plain'] * 1e3:.1f} + "
          f"{per_step['plain_on_stimuli'] * 1e3:.1f} ms); joint / plain = {result['joint_over_plain']:.2f}")
    if args.xla:
        print("XLA: speed-up " + ", ".join(f"{k} {v:.2f}x" for k, v in result["xla_speedup"].items())
              + "; |loss - loss with XLA| after the timed steps: "
              + ", ".join(f"{k} {v:.2g}" for k, v in result["xla_loss_difference"].items()))
    if args.deterministic:
        print(f"determinism.enable(): joint step x{result['determinism_cost']:.2f} the time")


if __name__ == "__main__":
    main()
