"""What a similarity target emphasises: numbers that help tell *why* one target regularizes better.

Computed per target kind of a build on a common, seeded subset of its stimuli (at most
``MAX_STIMULI``), written into ``target_report.json`` under ``target_diagnostics`` and shown in the
study report beside each condition:

* ``participation_ratio``: the effective dimensionality of S, (sum of eigenvalues)^2 / sum of
  squared eigenvalues, over S's non-negative eigenvalues (1 for a rank-one S, n for the identity);
* ``top_k_variance``: the share of that eigenvalue sum in the top 1, 5 and 10 components;
* ``off_diagonal_mean`` / ``off_diagonal_std``: of S_ij over the pairs i < j;
* ``r_pixel``: Pearson r over the pairs between S and the pixel similarity (Eq 2 with the pixels as
  the "neurons": the centred cosine of the images);
* ``r_lowpass`` / ``r_highpass``: the same against the pixel similarity of the images low-pass
  filtered (Gaussian, ``LOWPASS_SIGMA`` pixels) and of what the filter removes;
* ``low_frequency_share``: r_lowpass^2 / (r_lowpass^2 + r_highpass^2), how much of what S shares
  with the pixels lies at low spatial frequencies (0.5: none preferred; None where S shares almost
  nothing with the pixels, ``MIN_PIXEL_R``);
* ``between_kinds``: Pearson r over the pairs between every two kinds, on the stimuli they share.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from neuroreg_tf import similarity

MAX_STIMULI = 1000
MIN_STIMULI = 10
LOWPASS_SIGMA = 2.0  # pixels
TOP_K = (1, 5, 10)
MIN_PIXEL_R = 0.1  # below this joint correlation with the pixels the low-frequency share is left undefined
DEFINITIONS = {
    "participation_ratio": "(sum of the non-negative eigenvalues of S)^2 / their sum of squares: the effective "
    "number of dimensions (1: rank one; n: the identity).",
    "top_k_variance": "share of the non-negative eigenvalue sum in the top k components.",
    "off_diagonal_mean": "mean of S_ij over the pairs i < j (off_diagonal_std: their standard deviation).",
    "r_pixel": "Pearson r over the pairs i < j between S and the centred-cosine similarity of the images' pixels.",
    "r_lowpass": f"as r_pixel, with the images low-pass filtered (Gaussian, sigma {LOWPASS_SIGMA:g} pixels); "
    "r_highpass: with what that filter removes.",
    "low_frequency_share": "r_lowpass^2 / (r_lowpass^2 + r_highpass^2): how much of what S shares with the pixels "
    f"lies at low spatial frequencies (0.5: neither preferred; None where sqrt of the denominator is below "
    f"{MIN_PIXEL_R:g}, e.g. Shuffle).",
    "between_kinds": "Pearson r over the pairs i < j between two kinds' targets, on the stimuli both hold.",
}


def participation_ratio(matrix) -> float:
    """(sum lambda)^2 / sum lambda^2 over the non-negative eigenvalues of the symmetric ``matrix``."""
    eigenvalues = np.clip(np.linalg.eigvalsh(np.asarray(matrix, np.float64)), 0.0, None)
    total = eigenvalues.sum()
    return float(total**2 / np.sum(eigenvalues**2)) if total > 0 else 0.0


def top_k_variance(matrix, ks=TOP_K) -> dict[str, float]:
    """The share of the non-negative eigenvalue sum in the top k components, for each k."""
    eigenvalues = np.sort(np.clip(np.linalg.eigvalsh(np.asarray(matrix, np.float64)), 0.0, None))[::-1]
    total = eigenvalues.sum()
    return {str(k): float(eigenvalues[:k].sum() / total) if total > 0 else 0.0 for k in ks}


def pixel_similarity(images, lowpass_sigma: float | None = None, part: str = "all") -> np.ndarray:
    """The centred-cosine similarity (Eq 2) of images' pixels: of the images ("all"), of their
    Gaussian low-pass ("low") or of what the low-pass removes ("high")."""
    from scipy import ndimage

    images = np.asarray(images, np.float64)
    if part != "all":
        blurred = np.stack([ndimage.gaussian_filter(image[..., 0], lowpass_sigma) for image in images])[..., None]
        images = blurred if part == "low" else images - blurred
    return similarity.similarity_matrix(images.reshape(len(images), -1))


def _r(first, second) -> float | None:
    a, b = similarity.upper_triangle(first), similarity.upper_triangle(second)
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _r_pixel(matrix, images, lowpass_sigma=None, part="all") -> float | None:
    try:
        return _r(matrix, pixel_similarity(images, lowpass_sigma, part))
    except ValueError:  # an image equal to the mean image: its pixel similarity is undefined
        return None


def describe(matrix, images, lowpass_sigma: float = LOWPASS_SIGMA) -> dict[str, Any]:
    """The diagnostics of one similarity matrix over its stimuli ``images`` (n, h, w, 1)."""
    matrix = np.asarray(matrix, np.float64)
    off_diagonal = similarity.upper_triangle(matrix)
    r_low = _r_pixel(matrix, images, lowpass_sigma, "low")
    r_high = _r_pixel(matrix, images, lowpass_sigma, "high")
    share = None  # undefined where S shares (almost) nothing with the pixels at either band
    if r_low is not None and r_high is not None and r_low**2 + r_high**2 >= MIN_PIXEL_R**2:
        share = float(r_low**2 / (r_low**2 + r_high**2))
    return {
        "n_stimuli": int(len(matrix)),
        "participation_ratio": participation_ratio(matrix),
        "top_k_variance": top_k_variance(matrix),
        "off_diagonal_mean": float(off_diagonal.mean()),
        "off_diagonal_std": float(off_diagonal.std()),
        "r_pixel": _r_pixel(matrix, images),
        "r_lowpass": r_low,
        "r_highpass": r_high,
        "low_frequency_share": share,
    }


def _image_ids(target) -> np.ndarray:
    ids = target.metadata.get("image_ids")
    return np.asarray(ids if ids is not None else np.arange(target.n_stimuli))


def diagnose_targets(paths: Mapping[str, str], *, max_stimuli: int = MAX_STIMULI, seed: int = 0,
                     progress=None) -> dict[str, Any]:
    """The diagnostics of each target (kind -> path), on up to ``max_stimuli`` stimuli of each,
    chosen with ``seed`` among the image ids the most kinds share, and the correlation between
    every two kinds on the stimuli both hold.

    Returns:
        ``{"kinds": {kind: describe(...)}, "between_kinds": {kind: {other: r}}, "definitions",
        "max_stimuli", "seed"}``; a kind with fewer than ``MIN_STIMULI`` stimuli is left out.
    """
    from neuroreg_tf.targets import load_target

    targets = {kind: load_target(path, validate=False) for kind, path in paths.items()}
    ids = {kind: _image_ids(target) for kind, target in targets.items()}
    everyone = sorted(set.union(*(set(v.tolist()) for v in ids.values()))) if ids else []
    counts = {i: 0 for i in everyone}
    for values in ids.values():
        for i in values.tolist():
            counts[i] += 1
    rng = np.random.default_rng(seed)
    order = sorted(everyone, key=lambda i: (-counts[i], rng.random()))  # the most shared first, seeded
    chosen = set(order[:max_stimuli])
    blocks, images = {}, {}
    for kind, target in targets.items():
        position = {int(i): p for p, i in enumerate(ids[kind].tolist())}
        kept = sorted(i for i in chosen if i in position)
        if len(kept) < MIN_STIMULI:
            continue
        indices = np.asarray([position[i] for i in kept])
        images[kind], block = target.batch(indices)
        blocks[kind] = (np.asarray(kept), block.astype(np.float64))
        if progress:
            progress(f"target diagnostics: {kind} on {len(kept)} stimuli")
    result = {"kinds": {kind: describe(block, images[kind]) for kind, (_, block) in blocks.items()}}
    between: dict[str, dict[str, float | None]] = {}
    for kind, (kept, block) in blocks.items():
        between[kind] = {}
        for other, (other_kept, other_block) in blocks.items():
            common, here, there = np.intersect1d(kept, other_kept, return_indices=True)
            between[kind][other] = None if len(common) < MIN_STIMULI else \
                _r(block[np.ix_(here, here)], other_block[np.ix_(there, there)])
    result.update(between_kinds=between, definitions=DEFINITIONS, max_stimuli=int(max_stimuli), seed=int(seed))
    return result
