"""GPU throughput at the paper's scale: plain vs joint step, XLA, mixed precision, determinism,
MirroredStrategy scaling from one GPU to all.

    python bench/bench_gpu.py                 # on whatever GPUs are visible
    python bench/bench_gpu.py --steps=50      # longer measurements

Full-width ResNet18, batch 64 per GPU, 32x32 classification images + 36x64 stimuli (the paper's
set-up). Each configuration runs in its own process (``bench_joint_step.py``); the table gives
classification images/s of the plain and the joint step and their ratio, then the cost of
``determinism.enable()`` (op determinism), then MirroredStrategy over the first 1, 2, ... GPUs
(global batch 64 x GPUs) with its scaling efficiency. On a machine without a GPU it says so and
exits 0. Copy the printed Markdown into bench/RESULTS.md with the date and the device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def visible_gpus() -> list[str]:
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def measure(flags, gpus: int | None = None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    out = subprocess.run([sys.executable, os.path.join(HERE, "bench_joint_step.py"), *flags], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gpus = visible_gpus()
    if not gpus:
        print("No GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty), so there "
              "is nothing to measure here. Run this command on a machine with GPUs; bench_joint_step.py "
              "measures the CPU.")
        return
    base = ["--width=1", "--batch=64", "--image_size=32", "--stimulus_shape=36,64",
            f"--steps={args.steps}", f"--repeats={args.repeats}"]
    print(f"GPUs: {gpus}\n")
    print("| precision | XLA | plain images/s | joint images/s | joint / plain time | overhead |")
    print("|---|---|---|---|---|---|")
    for precision in ("float32", "mixed_float16", "mixed_bfloat16"):
        result = measure(base + [f"--precision={precision}", "--xla"], gpus=1)
        ips = result["classification_images_per_s"]
        for suffix, overhead in (("", f"{result['joint_overhead']:.2f}"), ("_xla", "-")):
            plain, joint = ips["plain" + suffix], ips["joint" + suffix]
            print(f"| {precision} | {'yes' if suffix else 'no'} | {plain:.0f} | {joint:.0f} | "
                  f"{plain / joint:.2f} | {overhead} |")
    deterministic = measure(base + ["--deterministic"], gpus=1)
    print(f"\nOp determinism (config.deterministic): joint step x{deterministic['determinism_cost']:.2f} the time.\n")
    print("| GPUs | global batch | joint images/s | scaling efficiency |")
    print("|---|---|---|---|")
    single = None
    for count in range(1, len(gpus) + 1):
        result = measure(base[:1] + [f"--batch={64 * count}"] + base[2:] + ["--strategy=mirrored",
                         "--batch_norm=synchronized"], gpus=count)
        ips = result["classification_images_per_s"]["joint"]
        single = single or ips
        print(f"| {count} | {64 * count} | {ips:.0f} | {ips / (count * single):.2f} |")


if __name__ == "__main__":
    main()
