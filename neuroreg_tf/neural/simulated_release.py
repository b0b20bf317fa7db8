r"""A SIMULATED multi-animal dataset laid out exactly like the public mouse-V1 releases.

No real recording can be downloaded here, so this writes what a SENSORIUM-style
colour release looks like, with SIMULATED responses: one zipped FileTree per scan,
``static<animal>-<session>-<scan>-ColorImageNet-SIMULATED.zip``, each holding
``<name>/data/{images,responses,behavior,pupil_center}/<trial>.npy`` with 2-channel
(UV, green) uint8 images of 144 x 256 pixels, and ``<name>/meta/...`` with
``colorframeprojector_image_id`` / ``colorframeprojector_image_class``, tiers, the
statistics and the per-neuron meta of the releases.

Two SIMULATED animals (two V1 populations): animal 1 in two scans that see the same
images (different neurons), animal 2 in one scan that sees other images, with other
repeated (oracle) images. So the scans share no oracle images and not all images:
what needs shared images is reported as unavailable, and the Neural (model) target
is built on every image, or on ``new_stimuli/``, 8-bit grayscale PNGs of 144 x 256
that no scan saw. The neurons respond to the stimulus the reader prepares: the
mean of the two channels, averaged over 4 x 4 pixel blocks (36 x 64).

    python -m neuroreg_tf.neural.simulated_release --out_dir=runs/release

A real release is read the same way (``build_target.py --config.recordings=...zip``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np
from scipy import ndimage

from neuroreg_tf.neural.recordings import images as image_ops
from neuroreg_tf.neural.recordings import write_filetree
from neuroreg_tf.neural.simulation import SIMULATED_LABEL, simulate_experiment

IMAGE_SIZE = (144, 256)
STIMULUS_SIZE = (36, 64)
ID_NAME = "colorframeprojector_image_id"


def colour_images(n: int, seed: int) -> np.ndarray:
    """SIMULATED (UV, green) uint8 images (n, 2, 144, 256): natural crops; UV is a blurred, dimmer copy."""
    from neuroreg_tf.data.stimuli import natural_stimuli

    green = natural_stimuli(n, height=IMAGE_SIZE[0], width=IMAGE_SIZE[1], seed=seed)[..., 0]
    uv = 0.1 + 0.7 * ndimage.gaussian_filter(green, sigma=(0, 2.0, 2.0))
    return np.round(np.stack([uv, green], axis=1) * 255.0).clip(0, 255).astype(np.uint8)


def seen_stimuli(colour: np.ndarray) -> np.ndarray:
    """What the reader makes of ``colour`` with the default ``ImageOptions``: (n, 36, 64, 1) in [0, 1]."""
    options = image_ops.ImageOptions(color="mean", size=STIMULUS_SIZE)
    return (image_ops.prepare(colour, options) / 255.0)[..., None].astype(np.float32)


def write_simulated_release(
    out_dir: str,
    *,
    n_single: int = 600,
    n_oracle: int = 20,
    n_repeats: int = 5,
    neurons_per_scan: int = 120,
    n_new_stimuli: int = 1000,
    seed: int = 0,
    log=print,
) -> dict:
    """Writes the SIMULATED release (3 zipped scans of 2 animals) and ``new_stimuli/`` to ``out_dir``.

    Returns:
        ``{"recordings": [zip paths], "new_stimuli": folder, "label": SIMULATED_LABEL}``.
    """
    from PIL import Image

    log = log or (lambda message: None)
    os.makedirs(out_dir, exist_ok=True)
    n_images = n_single + n_oracle
    design = dict(n_single=n_single, n_oracle=n_oracle, n_repeats=n_repeats, neurons_per_scan=neurons_per_scan,
                  population_size=2 * neurons_per_scan)
    paths = []
    # (animal id, scans, first image id): the two animals' images have disjoint ids.
    for animal, n_scans, first_id, image_seed in ((90001, 2, 1_000_000, seed), (90002, 1, 2_000_000, seed + 7)):
        log(f"SIMULATED animal {animal}: {n_images} colour images of {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, {n_scans} scan(s)")
        colour = colour_images(n_images, image_seed)
        experiment = simulate_experiment(
            seen_stimuli(colour), n_scans=n_scans, animal_id=animal, seed=seed + animal, **design
        )
        for h, recording in enumerate(experiment.recordings):
            ids = recording.image_ids  # indices into this animal's images
            released = dataclasses.replace(
                recording,
                image_ids=ids + first_id,
                image_id_name=ID_NAME,
                trial_meta={"colorframeprojector_image_class": np.full(recording.n_trials, "SIMULATED_imagenet_like")},
                metadata={**recording.metadata, "animal": animal},
            )
            name = f"static{animal}-1-{h + 1}-ColorImageNet-SIMULATED"
            path = write_filetree(os.path.join(out_dir, name + ".zip"), released, images=colour[ids])
            paths.append(path)
            log(f"  wrote {path} ({recording.n_trials} trials, {recording.n_neurons} neurons)")
    folder = os.path.join(out_dir, "new_stimuli")
    os.makedirs(folder, exist_ok=True)
    from neuroreg_tf.data.stimuli import natural_stimuli

    new = natural_stimuli(n_new_stimuli, height=IMAGE_SIZE[0], width=IMAGE_SIZE[1], seed=seed + 101)[..., 0]
    for index, image in enumerate(new):
        Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(os.path.join(folder, f"stimulus_{index:06d}.png"))
    log(f"wrote {n_new_stimuli} new stimuli (no scan saw them) to {folder}")
    summary = {"label": SIMULATED_LABEL, "simulated": True, "recordings": paths, "new_stimuli": folder, "design": design, "seed": seed}
    with open(os.path.join(out_dir, "SIMULATED_README.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--neurons_per_scan", type=int, default=120)
    parser.add_argument("--n_single", type=int, default=600)
    parser.add_argument("--n_new_stimuli", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = write_simulated_release(
        args.out_dir, n_single=args.n_single, neurons_per_scan=args.neurons_per_scan,
        n_new_stimuli=args.n_new_stimuli, seed=args.seed,
    )
    print("recordings: " + ",".join(summary["recordings"]))
    print(f"new stimuli: {summary['new_stimuli']}")


if __name__ == "__main__":
    main()
