"""A SIMULATED mouse-V1-like population with known ground truth.

Nothing here is recorded data. Every result built from it carries
``simulated=True`` in its metadata and says "simulated" in figures.

The population is a bank of Gabor-like units: simple cells (rectified linear
Gabor filters) and complex cells (quadrature-pair energy), with mouse-like low
spatial frequencies, heterogeneous gains (so reliability differs across
neurons), and overdispersed (gamma-Poisson) trial-to-trial noise. A subset of
the stimuli (the "oracle" images) is shown several times.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SIMULATED_LABEL = "SIMULATED V1 (not recorded data)"


@dataclasses.dataclass
class GaborPopulation:
    """Parameters of a simulated population; ``filters`` are (2, n_neurons, pixels)."""

    filters: np.ndarray
    is_complex: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    image_shape: tuple[int, int]

    @property
    def n_neurons(self) -> int:
        return int(self.gain.shape[0])

    def rates(self, stimuli: np.ndarray) -> np.ndarray:
        """Noiseless mean responses (n_stimuli, n_neurons) to (n, h, w[, 1]) stimuli."""
        stimuli = np.asarray(stimuli, dtype=np.float64)
        if stimuli.shape[1:3] != self.image_shape:
            raise ValueError(
                f"The population was built for {self.image_shape} stimuli. "
                f"Received: stimuli.shape={stimuli.shape}"
            )
        pixels = stimuli.reshape(stimuli.shape[0], -1)
        contrast = pixels - pixels.mean(axis=1, keepdims=True)
        even = contrast @ self.filters[0].T
        odd = contrast @ self.filters[1].T
        drive = np.where(self.is_complex, np.sqrt(even**2 + odd**2), np.maximum(even, 0.0))
        return self.baseline + self.gain * drive


def make_gabor_population(
    n_neurons: int,
    image_shape: tuple[int, int] = (36, 64),
    *,
    complex_fraction: float = 0.5,
    seed: int = 0,
) -> GaborPopulation:
    """Draws a SIMULATED population of Gabor-like simple and complex cells.

    Wavelengths are log-uniform between 8 and 32 pixels (low spatial
    frequencies, as in mouse V1), envelopes scale with the wavelength, and gains
    are log-normal so that signal-to-noise ratios are heterogeneous.
    """
    if n_neurons < 2:
        raise ValueError(f"Need at least 2 neurons. Received: n_neurons={n_neurons}")
    rng = np.random.default_rng(seed)
    height, width = image_shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centre_row = rng.uniform(0, height, n_neurons)[:, None, None]
    centre_col = rng.uniform(0, width, n_neurons)[:, None, None]
    orientation = rng.uniform(0, np.pi, n_neurons)[:, None, None]
    wavelength = np.exp(rng.uniform(np.log(8.0), np.log(32.0), n_neurons))[:, None, None]
    envelope_width = 0.5 * wavelength
    phase = rng.uniform(0, 2 * np.pi, n_neurons)[:, None, None]

    d_row = rows[None] - centre_row
    d_col = cols[None] - centre_col
    along = d_col * np.cos(orientation) + d_row * np.sin(orientation)
    envelope = np.exp(-(d_row**2 + d_col**2) / (2 * envelope_width**2))
    carrier_even = np.cos(2 * np.pi * along / wavelength + phase)
    carrier_odd = np.sin(2 * np.pi * along / wavelength + phase)
    filters = np.stack([envelope * carrier_even, envelope * carrier_odd]).reshape(2, n_neurons, -1)
    filters /= np.linalg.norm(filters, axis=-1, keepdims=True)

    return GaborPopulation(
        filters=filters,
        is_complex=rng.uniform(size=n_neurons) < complex_fraction,
        gain=rng.lognormal(mean=np.log(8.0), sigma=0.6, size=n_neurons),
        baseline=rng.uniform(0.2, 1.0, n_neurons),
        image_shape=(height, width),
    )


def noisy_trials(rates: np.ndarray, rng: np.random.Generator, dispersion: float = 2.0) -> np.ndarray:
    """Overdispersed single-trial counts: Poisson with a gamma-distributed rate.

    The variance is ``rate + rate**2 / dispersion`` (negative binomial).
    """
    trial_rates = rng.gamma(shape=dispersion, scale=rates / dispersion)
    return rng.poisson(trial_rates).astype(np.float64)


@dataclasses.dataclass
class SimulatedRecording:
    """SIMULATED responses of one population to a stimulus set.

    Attributes:
      stimuli: (n_stimuli, height, width, 1) images in [0, 1].
      responses: (n_stimuli, n_neurons) single-trial responses.
      oracle_indices: indices (into ``stimuli``) of the repeated images.
      oracle_responses: (n_oracle, n_repeats, n_neurons) repeated trials.
      ground_truth: (n_stimuli, n_neurons) noiseless mean responses.
    """

    stimuli: np.ndarray
    responses: np.ndarray
    oracle_indices: np.ndarray
    oracle_responses: np.ndarray
    ground_truth: np.ndarray
    simulated: bool = True
    label: str = SIMULATED_LABEL


def simulate_recording(
    stimuli: np.ndarray,
    *,
    n_neurons: int = 500,
    n_oracle: int = 20,
    n_repeats: int = 10,
    complex_fraction: float = 0.5,
    dispersion: float = 2.0,
    seed: int = 0,
) -> SimulatedRecording:
    """Simulates one scan: single trials for every stimulus, repeats for the oracle set.

    The first ``n_oracle`` stimuli are the oracle images.
    """
    stimuli = np.asarray(stimuli, dtype=np.float32)
    if stimuli.ndim == 3:
        stimuli = stimuli[..., None]
    if not 2 <= n_oracle <= stimuli.shape[0] or n_repeats < 2:
        raise ValueError(
            "Need 2 <= n_oracle <= n_stimuli and n_repeats >= 2. "
            f"Received: n_oracle={n_oracle}, n_repeats={n_repeats}, n_stimuli={stimuli.shape[0]}"
        )
    population = make_gabor_population(
        n_neurons, stimuli.shape[1:3], complex_fraction=complex_fraction, seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    truth = population.rates(stimuli)
    responses = noisy_trials(truth, rng, dispersion)
    oracle_indices = np.arange(n_oracle)
    repeated_rates = np.repeat(truth[oracle_indices, None, :], n_repeats, axis=1)
    return SimulatedRecording(
        stimuli=stimuli,
        responses=responses,
        oracle_indices=oracle_indices,
        oracle_responses=noisy_trials(repeated_rates, rng, dispersion),
        ground_truth=truth,
    )
