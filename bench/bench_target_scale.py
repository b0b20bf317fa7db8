r"""Benchmark: a 100,000-stimulus x 8,000-neuron target built and trained on without N x N.

    python bench/bench_target_scale.py --workdir=/tmp/scale            # full scale: ~9 min on 2 busy CPUs, 4 GB disk
    python bench/bench_target_scale.py --workdir=/tmp/scale --n_stimuli=20000 --n_neurons=2000

Phases, each with its time and peak memory:
  1. build: ``neuroreg_tf.neural.streaming.stream_embedding_target`` writes the
     stimuli and Eq 2's unit embedding chunk by chunk. The responses come from
     a SIMULATED stand-in for a predictive model (rectified random projections
     of a 64-d latent per stimulus), regenerated per chunk; nothing of size
     N x N or N x n_neurons is ever in memory.
  2. load + validate: ``targets.load_target`` (memory-mapped).
  3. train: steps of a small CNN on the similarity loss (Eq 8), each on a
     random batch of stimuli whose (k, k) target block is computed from k rows.

Memory is reported as the peak of the process's anonymous resident memory
(RssAnon, sampled every 20 ms: heap, numpy and TensorFlow buffers) and the
peak total RSS (VmHWM, which also counts pages of the memory-mapped files the
kernel keeps resident; those are file cache and reclaimable). The dense
similarity matrix would need N^2 x 4 bytes (40 GB at full scale).

Measured here (2 CPU cores shared with other jobs, SIMULATED stand-in
responses): build 440 s with peak RssAnon 662 MiB (3.0 GB embedding file);
load + validate 87 s, 554 MiB; 20 training steps of batch 64, 3.5 s, 241 MiB;
peak total RSS 4.5 GB (mostly memory-mapped file pages).
"""

import json
import os
import threading
import time

import numpy as np
from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/neuroreg_scale_bench", "Where the target is written.")
_N_STIMULI = flags.DEFINE_integer("n_stimuli", 100_000, "Stimuli N.")
_N_NEURONS = flags.DEFINE_integer("n_neurons", 8_000, "Neurons (embedding dimensions).")
_CHUNK = flags.DEFINE_integer("chunk", 4096, "Stimuli per chunk.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 20, "Training steps on the target.")
_BATCH = flags.DEFINE_integer("batch", 64, "Stimuli per training batch.")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the target files afterwards.")

_LATENT = 64
HEIGHT, WIDTH = 36, 64


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples RssAnon in a thread; ``peak_mib`` is the maximum since ``reset``."""

    def __init__(self, interval=0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(self.interval)

    def reset(self):
        self.peak = _status_kib("RssAnon")

    @property
    def peak_mib(self):
        self.peak = max(self.peak, _status_kib("RssAnon"))
        return self.peak / 1024

    def stop(self):
        self._stop.set()


def _stand_in_model(n_neurons: int, seed: int = 0):
    """Deterministic (start, stop) -> SIMULATED responses and stimuli."""
    projection = np.random.default_rng(seed).normal(0, 1 / np.sqrt(_LATENT), (_LATENT, n_neurons)).astype(np.float32)

    def latent(start, stop):
        return np.random.default_rng([seed, start]).normal(size=(stop - start, _LATENT)).astype(np.float32)

    def responses(start, stop):
        return np.maximum(latent(start, stop) @ projection, 0.0) + 0.1

    def stimuli(start, stop):
        rng = np.random.default_rng([seed + 1, start])
        return rng.uniform(0, 1, (stop - start, HEIGHT, WIDTH, 1)).astype(np.float32)

    return stimuli, responses


def main(argv):
    del argv
    from neuroreg_tf import targets
    from neuroreg_tf.neural import streaming

    n, d = _N_STIMULI.value, _N_NEURONS.value
    path = os.path.join(_WORKDIR.value, "target")
    memory = PeakMemory()
    results = {"n_stimuli": n, "n_neurons": d, "dense_matrix_gib": n * n * 4 / 2**30, "simulated": True}

    memory.reset()
    start = time.time()
    stimuli_fn, responses_fn = _stand_in_model(d)
    streaming.stream_embedding_target(
        path, n_stimuli=n, n_neurons=d, stimulus_shape=(HEIGHT, WIDTH), stimuli_fn=stimuli_fn,
        responses_fn=responses_fn, kind="neural_model", simulated=True, chunk=_CHUNK.value,
        metadata={"label": "SIMULATED scale benchmark (random stand-in responses)"}, log=print,
    )
    results["build"] = {"seconds": round(time.time() - start, 1), "peak_rss_anon_mib": round(memory.peak_mib, 1)}
    results["embedding_file_gib"] = os.path.getsize(os.path.join(path, "embedding.npy")) / 2**30
    print(f"build: {results['build']}", flush=True)

    memory.reset()
    start = time.time()
    target = targets.load_target(path)
    results["load_and_validate"] = {"seconds": round(time.time() - start, 1), "peak_rss_anon_mib": round(memory.peak_mib, 1)}
    print(f"load: {results['load_and_validate']}", flush=True)

    import keras
    import tensorflow as tf

    from neuroreg_tf import similarity

    memory.reset()
    start = time.time()
    model = keras.Sequential(
        [
            keras.Input((HEIGHT, WIDTH, 1)),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        ]
    )
    optimizer = keras.optimizers.SGD(0.01)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(_TRAIN_STEPS.value):
        indices = np.sort(rng.choice(n, _BATCH.value, replace=False))
        images, block = target.batch(indices)
        with tf.GradientTape() as tape:
            loss = similarity.similarity_loss(similarity.layer_similarity(model(images, training=True)), block)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    results["train"] = {
        "steps": _TRAIN_STEPS.value,
        "batch": _BATCH.value,
        "seconds": round(time.time() - start, 1),
        "peak_rss_anon_mib": round(memory.peak_mib, 1),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    results["peak_rss_total_mib"] = round(_status_kib("VmHWM") / 1024, 1)
    memory.stop()
    print(json.dumps(results, indent=2))
    with open(os.path.join(_WORKDIR.value, "bench_target_scale.json"), "w") as f:
        json.dump(results, f, indent=2)
    if not _KEEP.value:
        for name in os.listdir(path):
            os.remove(os.path.join(path, name))
        os.rmdir(path)


if __name__ == "__main__":
    app.run(main)
