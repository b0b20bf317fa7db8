"""A SIMULATED mouse-V1 population with known ground truth.

Nothing here is recorded data. Every recording, target and figure built from
it carries ``simulated=True`` and the label ``SIMULATED_LABEL``.

The model of V1 (each choice a plain, documented assumption):

* Gabor-like receptive fields: simple cells (rectified linear Gabor filter)
  and complex cells (quadrature-pair energy). With the paper's 36 x 64 stimuli
  spanning roughly 90 x 50 degrees (~1.4 deg/pixel), mouse V1's preferred
  spatial frequencies (~0.02-0.12 cycles/deg) are wavelengths of 6-32 pixels,
  drawn log-uniformly; envelopes scale with the wavelength.
* Divisive contrast normalisation: the filter drive is divided by
  (c50 + the image's RMS contrast) (scaled to be unchanged at RMS 0.15), so
  responses carry pattern, not just overall contrast.
* Heterogeneous reliability: log-normal gains and a fraction of weakly driven
  neurons, plus per-neuron overdispersion.
* Behaviour: running speed and pupil size follow slow processes over trials
  (pupil dilates with running); each neuron's gain is multiplied by
  exp(b_run * running_z + b_pupil * pupil_z).
* Eye movements: the pupil centre drifts and jumps (saccades); the retinal
  image is the stimulus shifted by ``shift_per_pupil_unit`` pixels per unit of
  pupil displacement.
* Noise: shared, low-dimensional gain fluctuations that no recorded variable
  explains (``n_latent`` factors with per-neuron loadings; they make noise
  correlated across neurons, which averaging over neurons cannot remove), then
  gamma-Poisson (negative binomial) counts, variance = rate + rate^2 / k_a.
* Scans: one population, several scans; each scan records a different random
  subset of its neurons, and every scan shows the same stimulus set (single
  trials plus repeated "oracle" images) in its own random order, so that the
  similarity structure is stable across scans (Fig. 1A/C).

The ground truth is the noiseless rate at neutral behaviour (running and pupil
at their mean) and the central eye position.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from scipy import ndimage

from neuroreg_tf.neural.recordings import DEFAULT_BEHAVIOR_NAMES, Recording

SIMULATED_LABEL = "SIMULATED V1 (not recorded data)"

PRESETS = {
    # The paper's design: 5000 single-trial images + 100 oracle images x 10
    # repeats per scan, 8 scans. Neurons per scan are fewer than the paper's
    # ~8000 so that the predictive models train on a CPU.
    "paper": dict(
        n_single=5000, n_oracle=100, n_repeats=10, n_scans=8, neurons_per_scan=1000,
        population_size=4000,
    ),
    # The paper's per-scan trial design with 3 scans: build_target.py's default (see
    # bench/RESULTS.md for its measured time; mostly the 3 predictive models).
    "default": dict(
        n_single=5000, n_oracle=100, n_repeats=10, n_scans=3, neurons_per_scan=500,
        population_size=1500,
    ),
    # Mechanics-only checks (tests of scripts): a few seconds.
    "tiny": dict(
        n_single=300, n_oracle=12, n_repeats=4, n_scans=2, neurons_per_scan=40,
        population_size=80,
    ),
    # Tests and the demo: seconds to simulate, about a minute to build a model target.
    "small": dict(
        n_single=1200, n_oracle=40, n_repeats=6, n_scans=2, neurons_per_scan=150,
        population_size=300,
    ),
}


@dataclasses.dataclass
class V1Population:
    """A SIMULATED population of Gabor-like V1 neurons.

    Attributes:
        filters: (2, n_neurons, height * width) even and odd unit-norm filters.
        is_complex: (n_neurons,) bool, complex (energy) vs simple (rectified) cell.
        gain: (n_neurons,) visual gain.
        baseline: (n_neurons,) spontaneous rate.
        dispersion: (n_neurons,) gamma shape k of the noise (smaller: noisier).
        running_coupling: (n_neurons,) b_run of the behavioural gain.
        pupil_coupling: (n_neurons,) b_pupil of the behavioural gain.
        wavelength: (n_neurons,) preferred wavelength in pixels.
        latent_loadings: (n_latent, n_neurons) loadings of the shared noise.
        semi_saturation: contrast c50 of the divisive normalisation (pixel std).
        image_shape: (height, width) of the stimuli.
    """

    filters: np.ndarray
    is_complex: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    dispersion: np.ndarray
    running_coupling: np.ndarray
    pupil_coupling: np.ndarray
    wavelength: np.ndarray
    latent_loadings: np.ndarray
    image_shape: tuple[int, int]
    semi_saturation: float = 0.05

    @property
    def n_neurons(self) -> int:
        return int(self.gain.shape[0])

    def visual_drive(self, images: np.ndarray, neurons=None, chunk: int = 2048) -> np.ndarray:
        """Noiseless rates at neutral behaviour, (n_images, n_neurons).

        Args:
            images: (n, height, width[, 1]) images in [0, 1].
            neurons: optional indices of the neurons to compute.
            chunk: images per matrix product (bounds memory).
        """
        images = np.asarray(images, dtype=np.float32)
        if images.shape[1:3] != tuple(self.image_shape):
            raise ValueError(
                f"The population was built for {tuple(self.image_shape)} stimuli. "
                f"Received: images.shape={images.shape}"
            )
        neurons = np.arange(self.n_neurons) if neurons is None else np.asarray(neurons)
        filters = self.filters[:, neurons].astype(np.float32)
        is_complex = self.is_complex[neurons]
        out = np.empty((images.shape[0], neurons.size), np.float64)
        for start in range(0, images.shape[0], chunk):
            pixels = images[start : start + chunk].reshape(-1, filters.shape[-1])
            contrast = pixels - pixels.mean(axis=1, keepdims=True)
            even = (contrast @ filters[0].T).astype(np.float64)
            odd = (contrast @ filters[1].T).astype(np.float64)
            drive = np.where(is_complex, np.sqrt(even**2 + odd**2), np.maximum(even, 0.0))
            rms_contrast = contrast.std(axis=1, keepdims=True).astype(np.float64)
            normalised = drive * (self.semi_saturation + 0.15) / (self.semi_saturation + rms_contrast)
            out[start : start + chunk] = self.baseline[neurons] + self.gain[neurons] * normalised
        return out

    def behavioural_gain(self, running_z: np.ndarray, pupil_z: np.ndarray, neurons=None) -> np.ndarray:
        """Multiplicative gain exp(b_run * running_z + b_pupil * pupil_z), (n_trials, n)."""
        neurons = np.arange(self.n_neurons) if neurons is None else np.asarray(neurons)
        return np.exp(
            np.outer(running_z, self.running_coupling[neurons])
            + np.outer(pupil_z, self.pupil_coupling[neurons])
        )

    def latent_gain(self, rng: np.random.Generator, n_trials: int, neurons=None) -> np.ndarray:
        """Shared unexplained gain exp(z_t . L_a - |L_a|^2 / 2) (mean 1), (n_trials, n)."""
        neurons = np.arange(self.n_neurons) if neurons is None else np.asarray(neurons)
        loadings = self.latent_loadings[:, neurons]
        factors = rng.normal(size=(n_trials, loadings.shape[0]))
        return np.exp(factors @ loadings - 0.5 * np.sum(loadings**2, axis=0))


def make_v1_population(
    n_neurons: int,
    image_shape: tuple[int, int] = (36, 64),
    *,
    complex_fraction: float = 0.5,
    wavelength_range: tuple[float, float] = (6.0, 32.0),
    weak_fraction: float = 0.2,
    n_latent: int = 3,
    latent_strength: float = 0.5,
    seed: int = 0,
) -> V1Population:
    """Draws a SIMULATED population of Gabor-like simple and complex cells.

    Args:
        n_neurons: population size.
        image_shape: (height, width) of the stimuli.
        complex_fraction: fraction of complex cells.
        wavelength_range: preferred wavelengths in pixels (log-uniform; low spatial frequency: long).
        weak_fraction: fraction of weakly driven, unreliable neurons (gain / 5).
        n_latent: number of shared noise factors.
        latent_strength: std of the per-neuron loadings on each factor.
        seed: random seed.

    Returns:
        A ``V1Population``.
    """
    if n_neurons < 2:
        raise ValueError(f"A population needs at least 2 neurons. Received: n_neurons={n_neurons}")
    if not 0.0 <= complex_fraction <= 1.0 or not 0.0 <= weak_fraction < 1.0:
        raise ValueError(
            "`complex_fraction` must be in [0, 1] and `weak_fraction` in [0, 1). Received: "
            f"complex_fraction={complex_fraction}, weak_fraction={weak_fraction}"
        )
    low, high = wavelength_range
    if not 0 < low <= high:
        raise ValueError(
            f"`wavelength_range` must be (low, high) with 0 < low <= high. "
            f"Received: wavelength_range={wavelength_range}"
        )
    rng = np.random.default_rng(seed)
    height, width = image_shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # Receptive-field centres stay a few pixels inside the screen.
    centre_row = rng.uniform(0.15 * height, 0.85 * height, n_neurons)[:, None, None]
    centre_col = rng.uniform(0.1 * width, 0.9 * width, n_neurons)[:, None, None]
    orientation = rng.uniform(0, np.pi, n_neurons)[:, None, None]
    wavelength = np.exp(rng.uniform(np.log(low), np.log(high), n_neurons))
    envelope_width = 0.45 * wavelength[:, None, None]
    aspect = rng.uniform(0.6, 1.0, n_neurons)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n_neurons)[:, None, None]

    d_row = rows[None] - centre_row
    d_col = cols[None] - centre_col
    along = d_col * np.cos(orientation) + d_row * np.sin(orientation)
    across = -d_col * np.sin(orientation) + d_row * np.cos(orientation)
    envelope = np.exp(-(along**2 + (aspect * across) ** 2) / (2 * envelope_width**2))
    carrier = 2 * np.pi * along / wavelength[:, None, None] + phase
    filters = np.stack([envelope * np.cos(carrier), envelope * np.sin(carrier)])
    filters = filters.reshape(2, n_neurons, -1)
    filters /= np.linalg.norm(filters, axis=-1, keepdims=True)

    gain = rng.lognormal(mean=np.log(6.0), sigma=0.5, size=n_neurons)
    gain[rng.uniform(size=n_neurons) < weak_fraction] /= 5.0
    return V1Population(
        filters=filters.astype(np.float32),
        is_complex=rng.uniform(size=n_neurons) < complex_fraction,
        gain=gain,
        baseline=rng.uniform(0.1, 0.6, n_neurons),
        dispersion=rng.lognormal(mean=np.log(1.5), sigma=0.4, size=n_neurons),
        running_coupling=rng.normal(0.2, 0.1, n_neurons),
        pupil_coupling=rng.normal(0.1, 0.05, n_neurons),
        wavelength=wavelength,
        latent_loadings=rng.normal(0.0, latent_strength, (n_latent, n_neurons)),
        image_shape=(int(height), int(width)),
    )


def noisy_trials(rates: np.ndarray, rng: np.random.Generator, dispersion=2.0) -> np.ndarray:
    """Overdispersed single-trial counts: Poisson with a gamma-distributed rate.

    The variance is ``rate + rate**2 / dispersion`` (negative binomial);
    ``dispersion`` is a scalar or one value per neuron (last axis).
    """
    trial_rates = rng.gamma(shape=dispersion, scale=rates / dispersion)
    return rng.poisson(trial_rates).astype(np.float64)


def _slow_process(rng, n, timescale, stationary_std):
    """An AR(1) process over trials with the given correlation time and std."""
    decay = np.exp(-1.0 / timescale)
    innovation = stationary_std * np.sqrt(1 - decay**2)
    values = np.empty(n)
    values[0] = rng.normal(0, stationary_std)
    noise = rng.normal(0, innovation, n)
    for t in range(1, n):
        values[t] = decay * values[t - 1] + noise[t]
    return values


def simulate_behavior(n_trials: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """SIMULATED running speed, pupil size (with derivatives) and pupil centre.

    Returns:
        Dict with ``behavior`` (n_trials, 3) = (pupil_size, d_pupil_size,
        running_speed), ``pupil_center`` (n_trials, 2) in camera pixels, and the
        standardised ``running_z`` and ``pupil_z`` that drive the gain.
    """
    running_latent = _slow_process(rng, n_trials, timescale=40.0, stationary_std=1.0)
    running_speed = 8.0 * np.maximum(running_latent + 0.2, 0.0)
    pupil_size = 20.0 + 3.0 * np.tanh(running_latent) + _slow_process(rng, n_trials, 15.0, 1.5)
    drift = np.stack([_slow_process(rng, n_trials, 20.0, 2.0) for _ in range(2)], axis=1)
    saccades = np.cumsum(rng.normal(0, 3.0, (n_trials, 2)) * (rng.uniform(size=(n_trials, 1)) < 0.05), axis=0)
    saccades -= saccades.mean(axis=0)
    pupil_center = np.array([160.0, 120.0]) + drift + saccades
    behavior = np.stack([pupil_size, np.gradient(pupil_size), running_speed], axis=1)
    return {
        "behavior": behavior,
        "pupil_center": pupil_center,
        "running_z": (running_speed - running_speed.mean()) / running_speed.std(),
        "pupil_z": (pupil_size - pupil_size.mean()) / pupil_size.std(),
    }


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translates each image by (row, col) pixels, bilinear, edges extended."""
    images = np.asarray(images, dtype=np.float32)
    out = np.empty_like(images)
    for index, (image, shift) in enumerate(zip(images, shifts)):
        shift_vector = (shift[0], shift[1]) + (0,) * (image.ndim - 2)
        out[index] = ndimage.shift(image, shift_vector, order=1, mode="nearest")
    return out


@dataclasses.dataclass
class SimulatedExperiment:
    """SIMULATED scans of one population, with their ground truth.

    Attributes:
        population: the simulated neurons.
        stimuli: (n_stimuli, height, width, 1) unique images; ids are their indices.
        oracle_ids: ids of the repeated images (the first ``n_oracle`` stimuli).
        recordings: one validated ``Recording`` per scan.
        scan_neurons: per scan, the population indices it recorded.
        trial_rates: per scan, (n_trials, n_neurons) noiseless rates including
            behaviour and eye position.
        parameters: the simulation parameters.
    """

    population: V1Population
    stimuli: np.ndarray
    oracle_ids: np.ndarray
    recordings: list[Recording]
    scan_neurons: list[np.ndarray]
    trial_rates: list[np.ndarray]
    parameters: dict[str, Any]
    simulated: bool = True
    label: str = SIMULATED_LABEL

    @property
    def recorded_neurons(self) -> np.ndarray:
        """Population indices recorded in at least one scan."""
        return np.unique(np.concatenate(self.scan_neurons))

    def ground_truth_rates(self, stimulus_ids=None, neurons=None) -> np.ndarray:
        """Noiseless neutral-state rates, (n_ids, n_neurons); default all recorded neurons."""
        stimulus_ids = np.arange(len(self.stimuli)) if stimulus_ids is None else stimulus_ids
        neurons = self.recorded_neurons if neurons is None else neurons
        return self.population.visual_drive(self.stimuli[stimulus_ids], neurons)


# The design without a preset (``simulate_experiment``).
DEFAULT_DESIGN = dict(n_single=1200, n_oracle=40, n_repeats=6, n_scans=2, neurons_per_scan=150, population_size=300)


def resolve_design(preset: str | None, **given) -> dict:
    """The trial design: ``DEFAULT_DESIGN``, then ``PRESETS[preset]``, then the arguments given.

    ``given``: ``DEFAULT_DESIGN``'s keys, None meaning "not given". A given ``neurons_per_scan``
    without a given ``population_size`` grows the population to at least twice it.
    """
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    unknown = sorted(set(given) - set(DEFAULT_DESIGN))
    if unknown:
        raise ValueError(f"Unknown design arguments {unknown}; known: {sorted(DEFAULT_DESIGN)}.")
    given = {key: int(value) for key, value in given.items() if value is not None}
    design = {**DEFAULT_DESIGN, **(PRESETS[preset] if preset is not None else {}), **given}
    if "neurons_per_scan" in given and "population_size" not in given:
        design["population_size"] = max(design["population_size"], 2 * design["neurons_per_scan"])
    return design


def _scaled_population(population_size, image_shape, *, complex_fraction, wavelength_range, rate_scale,
                       latent_strength, seed) -> V1Population:
    """``make_v1_population`` with every gain and baseline times ``rate_scale``."""
    population = make_v1_population(
        population_size, image_shape, complex_fraction=complex_fraction,
        wavelength_range=tuple(wavelength_range), latent_strength=latent_strength, seed=seed,
    )
    if rate_scale == 1.0:
        return population
    return dataclasses.replace(population, gain=population.gain * rate_scale, baseline=population.baseline * rate_scale)


def experiment_population(
    *,
    preset: str | None = None,
    image_shape: tuple[int, int] = (36, 64),
    complex_fraction: float = 0.5,
    wavelength_range: tuple[float, float] = (6.0, 32.0),
    rate_scale: float = 1.0,
    latent_strength: float = 0.5,
    seed: int = 0,
    **design,
) -> V1Population:
    """The population ``simulate_experiment`` with these arguments records from, without the scans.

    It is the same population (same neurons, gains and noise) for the same arguments, so new
    stimuli can be shown to the SIMULATED animal of a build (e.g. ``neural.alignment``).
    ``design``: ``simulate_experiment``'s design arguments (``n_single`` ... ``population_size``).
    """
    design = resolve_design(preset, **design)
    return _scaled_population(
        design["population_size"], image_shape, complex_fraction=complex_fraction, wavelength_range=wavelength_range,
        rate_scale=rate_scale, latent_strength=latent_strength, seed=seed,
    )


def simulate_experiment(
    stimuli: np.ndarray | None = None,
    *,
    preset: str | None = None,
    n_single: int | None = None,
    n_oracle: int | None = None,
    n_repeats: int | None = None,
    n_scans: int | None = None,
    neurons_per_scan: int | None = None,
    population_size: int | None = None,
    validation_fraction: float = 0.1,
    shift_per_pupil_unit: float = 0.3,
    complex_fraction: float = 0.5,
    wavelength_range: tuple[float, float] = (6.0, 32.0),
    rate_scale: float = 1.0,
    latent_strength: float = 0.5,
    animal_id: int = 1,
    seed: int = 0,
) -> SimulatedExperiment:
    """Simulates several scans of one SIMULATED V1 population.

    Args:
        stimuli: (n_single + n_oracle, height, width[, 1]) images in [0, 1];
            default: natural-image crops from ``neuroreg_tf.data.natural_stimuli``
            (36 x 64). The first ``n_oracle`` are the repeated images.
        preset: one of ``PRESETS``: the design (``n_single`` ... ``population_size``) where
            those arguments are not given; without a preset, ``DEFAULT_DESIGN``. A given
            ``neurons_per_scan`` grows the population to at least twice it unless
            ``population_size`` is given too (``resolve_design``).
        n_single: images shown once per scan.
        n_oracle: images shown ``n_repeats`` times per scan.
        n_repeats: repeats of each oracle image.
        n_scans: scans; each records its own random subset of neurons.
        neurons_per_scan: neurons recorded per scan.
        population_size: neurons in the population the scans draw from.
        validation_fraction: fraction of single-trial images in tier 'validation'
            (the oracle repeats are tier 'test').
        shift_per_pupil_unit: image shift in pixels per camera pixel of pupil
            displacement.
        complex_fraction: fraction of complex cells.
        wavelength_range: preferred wavelengths in pixels (low spatial frequency: long).
        rate_scale: multiplies every neuron's visual gain and baseline: higher rates give a
            higher signal-to-noise ratio under the (overdispersed) Poisson noise.
        latent_strength: std of each neuron's loadings on the shared gain fluctuations that no
            recorded variable explains (``make_v1_population``): higher is noisier, and the noise
            is shared, so it blurs single-trial similarities the most (``configs/build_target.py``'s
            ``paper_noise`` variant raises it to the paper's r(S_data, S_oracle)).
        animal_id: the (SIMULATED) animal id written to ``meta/neurons/animal_ids``.
        seed: random seed; the same seed gives the same experiment.

    Returns:
        A ``SimulatedExperiment``.
    """
    design = resolve_design(
        preset, n_single=n_single, n_oracle=n_oracle, n_repeats=n_repeats, n_scans=n_scans,
        neurons_per_scan=neurons_per_scan, population_size=population_size,
    )
    if not rate_scale > 0:
        raise ValueError(f"`rate_scale` must be positive. Received: rate_scale={rate_scale}")
    if not latent_strength >= 0:
        raise ValueError(f"`latent_strength` must be >= 0. Received: latent_strength={latent_strength}")
    if design["n_oracle"] < 2 or design["n_repeats"] < 2:
        raise ValueError(
            "Need at least 2 oracle images and 2 repeats to estimate SNR. Received: "
            f"n_oracle={design['n_oracle']}, n_repeats={design['n_repeats']}"
        )
    if not 2 <= design["neurons_per_scan"] <= design["population_size"]:
        raise ValueError(
            "Need 2 <= neurons_per_scan <= population_size. Received: "
            f"neurons_per_scan={design['neurons_per_scan']}, "
            f"population_size={design['population_size']}"
        )
    if design["n_scans"] < 1 or design["n_single"] < 10:
        raise ValueError(
            "Need at least 1 scan and 10 single-trial images. Received: "
            f"n_scans={design['n_scans']}, n_single={design['n_single']}"
        )
    n_stimuli = design["n_single"] + design["n_oracle"]
    if stimuli is None:
        from neuroreg_tf.data.stimuli import natural_stimuli

        stimuli = natural_stimuli(n_stimuli, seed=seed)
    stimuli = np.asarray(stimuli, dtype=np.float32)
    if stimuli.ndim == 3:
        stimuli = stimuli[..., None]
    if stimuli.ndim != 4 or stimuli.shape[0] != n_stimuli:
        raise ValueError(
            f"`stimuli` must hold n_single + n_oracle = {n_stimuli} images shaped "
            f"(n, height, width[, 1]). Received: stimuli.shape={stimuli.shape}"
        )
    population = _scaled_population(
        design["population_size"], stimuli.shape[1:3], complex_fraction=complex_fraction,
        wavelength_range=wavelength_range, rate_scale=rate_scale, latent_strength=latent_strength, seed=seed,
    )
    rng = np.random.default_rng([seed, 1])
    oracle_ids = np.arange(design["n_oracle"])
    single_ids = np.arange(design["n_oracle"], n_stimuli)
    trial_ids = np.concatenate([single_ids, np.repeat(oracle_ids, design["n_repeats"])])
    recordings, scan_neurons, trial_rates = [], [], []
    for scan in range(design["n_scans"]):
        neurons = np.sort(rng.choice(design["population_size"], design["neurons_per_scan"], replace=False))
        order = rng.permutation(trial_ids.size)
        image_ids = trial_ids[order]
        n_trials = image_ids.size
        state = simulate_behavior(n_trials, rng)
        shifts = shift_per_pupil_unit * (state["pupil_center"] - np.array([160.0, 120.0]))[:, ::-1]
        retinal = shift_images(stimuli[image_ids], shifts)
        rates = population.visual_drive(retinal, neurons)
        rates *= population.behavioural_gain(state["running_z"], state["pupil_z"], neurons)
        noisy_rates = rates * population.latent_gain(rng, n_trials, neurons)
        responses = noisy_trials(noisy_rates, rng, population.dispersion[neurons])
        # A neuron that never fired in this scan would be dropped by real
        # preprocessing; one spontaneous count keeps the recording valid.
        silent = responses.std(axis=0) == 0
        responses[rng.integers(n_trials), silent] += 1.0
        tiers = np.where(np.isin(image_ids, oracle_ids), "test", "train").astype("U10")
        single_validation = rng.permutation(single_ids)[: int(round(validation_fraction * single_ids.size))]
        tiers[np.isin(image_ids, single_validation)] = "validation"
        recordings.append(
            Recording(
                images=stimuli[image_ids],
                responses=responses,
                behavior=state["behavior"],
                pupil_center=state["pupil_center"],
                tiers=tiers,
                image_ids=image_ids,
                neuron_ids=neurons,
                behavior_names=DEFAULT_BEHAVIOR_NAMES,
                simulated=True,
                metadata={"label": SIMULATED_LABEL, "scan": scan, "seed": seed},
                neuron_meta={
                    "area": np.full(neurons.size, "V1"),
                    "layer": np.full(neurons.size, "L2/3"),
                    "animal_ids": np.full(neurons.size, animal_id),
                    "sessions": np.full(neurons.size, 1),
                    "scan_idx": np.full(neurons.size, scan + 1),
                },
                trial_meta={"frame_image_class": np.full(n_trials, "SIMULATED_natural_crop")},
            )
        )
        scan_neurons.append(neurons)
        trial_rates.append(rates.astype(np.float32))
    return SimulatedExperiment(
        population=population,
        stimuli=stimuli,
        oracle_ids=oracle_ids,
        recordings=recordings,
        scan_neurons=scan_neurons,
        trial_rates=trial_rates,
        parameters={
            **design,
            "validation_fraction": validation_fraction,
            "shift_per_pupil_unit": shift_per_pupil_unit,
            "complex_fraction": complex_fraction,
            "wavelength_range": list(wavelength_range),
            "rate_scale": rate_scale,
            "latent_strength": latent_strength,
            "seed": seed,
            "preset": preset,
        },
    )


def write_experiment(path: str, experiment: SimulatedExperiment) -> list[str]:
    """Writes the SIMULATED scans as FileTree folders, plus their ground truth.

    Layout::

        path/simulation.json                  parameters and the SIMULATED label
        path/scan_<h>/...                     FileTree recording (recordings.write_filetree)
        path/scan_<h>/meta/ground_truth/trial_rates.npy   noiseless per-trial rates
        path/ground_truth/stimuli.npy         the unique stimuli (id = index)
        path/ground_truth/neuron_ids.npy      the recorded population neurons
        path/ground_truth/neutral_rates.npy   noiseless neutral-state rates (stimuli x neurons)

    Returns:
        The scan directories.
    """
    import json

    from neuroreg_tf.neural.recordings import write_filetree

    os.makedirs(os.path.join(path, "ground_truth"), exist_ok=True)
    scan_paths = []
    for h, (recording, rates) in enumerate(zip(experiment.recordings, experiment.trial_rates)):
        scan_paths.append(
            write_filetree(
                os.path.join(path, f"scan_{h + 1}"), recording, extra_files={"meta/ground_truth/trial_rates.npy": rates}
            )
        )
    neurons = experiment.recorded_neurons
    np.save(os.path.join(path, "ground_truth", "stimuli.npy"), experiment.stimuli)
    np.save(os.path.join(path, "ground_truth", "neuron_ids.npy"), neurons)
    np.save(os.path.join(path, "ground_truth", "neutral_rates.npy"), experiment.ground_truth_rates(None, neurons).astype(np.float32))
    with open(os.path.join(path, "simulation.json"), "w") as f:
        json.dump({"label": SIMULATED_LABEL, "simulated": True, "parameters": experiment.parameters}, f, indent=2)
    return scan_paths
