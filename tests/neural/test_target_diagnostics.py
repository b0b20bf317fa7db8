"""Target diagnostics against closed forms and hand computations (``neural.target_diagnostics``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from neuroreg_tf import targets
from neuroreg_tf.neural import target_diagnostics


def test_participation_ratio_and_top_k_share_match_their_closed_forms():
    n = 12
    assert target_diagnostics.participation_ratio(np.eye(n)) == pytest.approx(n)
    v = np.linspace(-1, 1, n)
    assert target_diagnostics.participation_ratio(np.outer(v, v)) == pytest.approx(1.0)
    # Eigenvalues 3, 1, 1, 0 ...: PR = 25 / 11; the top one holds 3/5.
    basis, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
    matrix = basis @ np.diag([3.0, 1.0, 1.0] + [0.0] * (n - 3)) @ basis.T
    assert target_diagnostics.participation_ratio(matrix) == pytest.approx(25 / 11)
    shares = target_diagnostics.top_k_variance(matrix)
    assert shares["1"] == pytest.approx(0.6) and shares["5"] == pytest.approx(1.0)


def _images(n=40, seed=0, size=16):
    """Images with both smooth blobs and fine checkerboard texture, at random strengths."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    checker = ((yy + xx) % 2) * 2.0 - 1.0
    images = []
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
        images.append(0.5 + 0.3 * rng.uniform() * blob + 0.1 * rng.uniform(-1, 1) * checker)
    return np.clip(np.stack(images)[..., None], 0, 1)


def _centred_cosine(features):
    """Eq 2 by hand: centre each feature over stimuli, unit rows, S = E E^T (loops, float64)."""
    features = np.asarray(features, np.float64)
    mean = [sum(features[i, j] for i in range(len(features))) / len(features) for j in range(features.shape[1])]
    centred = features - np.asarray(mean)
    unit = centred / np.sqrt((centred**2).sum(axis=1, keepdims=True))
    return unit @ unit.T


def test_a_low_pass_target_leans_on_low_frequencies_and_a_texture_target_on_high_ones():
    images = _images()
    blurred = np.stack([ndimage.gaussian_filter(i[..., 0], target_diagnostics.LOWPASS_SIGMA) for i in images])
    low_target = _centred_cosine(blurred.reshape(len(images), -1))
    high_target = _centred_cosine((images[..., 0] - blurred).reshape(len(images), -1))
    low = target_diagnostics.describe(low_target, images)
    high = target_diagnostics.describe(high_target, images)
    assert low["r_lowpass"] == pytest.approx(1.0) and high["r_highpass"] == pytest.approx(1.0)
    assert low["low_frequency_share"] > 0.8 and high["low_frequency_share"] < 0.2
    upper = low_target[np.triu_indices(len(images), 1)]
    assert low["off_diagonal_mean"] == pytest.approx(upper.mean()) and low["off_diagonal_std"] == pytest.approx(upper.std())
    pixel = _centred_cosine(images.reshape(len(images), -1))
    expected = np.corrcoef(upper, pixel[np.triu_indices(len(images), 1)])[0, 1]
    assert low["r_pixel"] == pytest.approx(expected)


def test_a_build_s_kinds_are_compared_on_the_stimuli_they_share(tmp_path):
    images = _images(30)
    rng = np.random.default_rng(1)
    first = _centred_cosine(rng.normal(size=(30, 8)))
    second = _centred_cosine(rng.normal(size=(30, 8)))
    paths = {}
    # "a" holds stimuli 0..29; "b" the stimuli 10..29 only (its own order: ids 10..29).
    for kind, matrix, ids in (("a", first, np.arange(30)), ("b", second[10:, 10:], np.arange(10, 30))):
        path = str(tmp_path / kind)
        targets.save_target(path, images[ids].astype(np.float32), similarity=matrix.astype(np.float32),
                            kind="custom", simulated=True, metadata={"image_ids": ids.tolist()})
        paths[kind] = path
    result = target_diagnostics.diagnose_targets(paths, max_stimuli=25, seed=0)
    assert set(result["kinds"]) == {"a", "b"}
    assert result["kinds"]["a"]["n_stimuli"] == 25 and result["kinds"]["b"]["n_stimuli"] == 20
    # The 20 shared ids come first; the comparison uses exactly those, in id order.
    shared = np.arange(10, 30)
    block_a = first[np.ix_(shared, shared)]
    block_b = second[10:, 10:]
    iu = np.triu_indices(20, 1)
    expected = np.corrcoef(block_a[iu], block_b[iu])[0, 1]
    assert result["between_kinds"]["a"]["b"] == pytest.approx(expected, abs=1e-6)
    assert result["between_kinds"]["b"]["a"] == pytest.approx(expected, abs=1e-6)
    assert result["between_kinds"]["a"]["a"] == pytest.approx(1.0)


def test_a_target_unrelated_to_the_pixels_has_no_low_frequency_share():
    images = _images(40)
    unrelated = _centred_cosine(np.random.default_rng(5).normal(size=(40, 30)))
    found = target_diagnostics.describe(unrelated, images)
    assert abs(found["r_pixel"]) < 0.1 and found["low_frequency_share"] is None
