"""Minimal adversarial perturbation per sample, and the paper's median score.

For every sample that the model classifies correctly, `minimal_perturbation` looks for the smallest
perturbation (L-inf or L2) that makes the model output any wrong class:

* fixed-budget attacks (`attacks.EpsilonAttack`, e.g. PGD with step = fraction of epsilon) are
  searched over epsilon per sample: an exponential search (multiply, or divide, by
  ``search_factor`` until the sample's outcome changes) from ``initial_epsilon``, then
  ``search_steps`` bisection steps between the largest failing and the smallest succeeding budget.
  Later attacks start just below the best distance found so far (``CEILING_PROBE``) and never
  search above it, so a sample costs them one probe unless they can improve it. All samples are
  searched together, in batches, each with its own epsilon;
* minimising attacks (`attacks.MinimizingAttack`, Carlini & Wagner L2) run once;
* every candidate is verified before it counts: the model's label on the returned image differs
  from the true label, the image lies within [clip_min, clip_max] and is finite, and the distance is
  recomputed (float64) from the returned image. Per sample the smallest verified distance over all
  attacks and settings is kept, and the kept adversarials are verified once more at the end.

Samples misclassified without any perturbation get distance 0 and are counted separately; samples
where no attack succeeded get ``np.inf``.
"""

import dataclasses
import sys
import time

import numpy as np

from neuroreg_tf.robustness import attacks as attacks_lib
from neuroreg_tf.robustness import checks
from neuroreg_tf.robustness.loading import as_logits_fn

DEFAULT_INITIAL_EPSILON = {"linf": 0.01, "l2": 0.25}
CLEAN_MISCLASSIFIED = "clean_misclassified"
# Later attacks first probe a sample at this fraction of the best distance found so far; if they
# fail there, they cannot improve it by more than that margin and the sample is left alone.
CEILING_PROBE = 0.98


def _print_progress(message):
    print(message, file=sys.stderr, flush=True)


def perturbation_distance(x, adversarial, norm):
    """Per-sample L-inf or L2 distance (float64) between image batches `x` and `adversarial`."""
    attacks_lib.check_norm(norm)
    difference = (np.asarray(adversarial, np.float64) - np.asarray(x, np.float64)).reshape(
        len(x), -1
    )
    if norm == "linf":
        return np.abs(difference).max(axis=1) if difference.shape[1] else np.zeros(len(x))
    return np.sqrt(np.sum(difference**2, axis=1))


def verify_adversarial(
    model, x, adversarial, y, norm, *, clip_min=0.0, clip_max=1.0, min_margin=0.0, batch_size=500
):
    """Checks candidate adversarials and recomputes their distances.

    Args:
        model: A Keras model or a callable mapping images to logits.
        x: Clean images, (n, h, w, c).
        adversarial: Candidate adversarial images, same shape.
        y: True labels, (n,).
        norm: "linf" or "l2".
        clip_min: Smallest valid pixel value.
        clip_max: Largest valid pixel value.
        min_margin: How far the best wrong logit must exceed the true logit. 0 means the label
            flips (a tie does not count).
        batch_size: Images per forward pass.

    Returns:
        (is_adversarial, distances): a bool array, True where the candidate is finite, within
        [clip_min, clip_max] and its best wrong logit exceeds the true logit by more than
        `min_margin`; and the recomputed distances.
    """
    logits_fn = as_logits_fn(model)
    adversarial = np.asarray(adversarial, np.float32)
    if adversarial.shape != np.shape(x):
        raise ValueError(
            f"Expected adversarial images shaped like the clean images {np.shape(x)}. "
            f"Received: adversarial with shape {adversarial.shape}"
        )
    y = np.asarray(y)
    flat = adversarial.reshape(len(adversarial), -1)
    finite = np.all(np.isfinite(flat), axis=1)
    valid = finite & np.all(flat >= clip_min, axis=1) & np.all(flat <= clip_max, axis=1)
    margins = np.empty(len(adversarial))
    for start in range(0, len(adversarial), batch_size):
        stop = start + batch_size
        batch = np.where(finite[start:stop, None, None, None], adversarial[start:stop], 0.0)
        logits = logits_fn(batch).numpy().astype(np.float64)
        rows = np.arange(len(logits))
        true_logit = logits[rows, y[start:stop]]
        logits[rows, y[start:stop]] = -np.inf
        margins[start:stop] = logits.max(axis=1) - true_logit
    return valid & (margins > min_margin), perturbation_distance(x, adversarial, norm)


@dataclasses.dataclass
class MinimalPerturbationResult:
    """Per-sample minimal perturbations for one norm.

    Attributes:
        norm: "linf" or "l2".
        distances: (n,) float64: the smallest verified distance; 0 where the clean image is already
            misclassified; ``np.inf`` where no adversarial was found.
        adversarials: (n, h, w, c) float32: the adversarial image of each distance (the clean image
            where the distance is 0 or inf).
        clean_correct: (n,) bool: whether the model classifies the clean image correctly.
        best_attack: (n,) str: the attack that found the kept adversarial ("clean_misclassified",
            or "" where none was found).
        per_attack: attack name -> (n,) distances found by that attack (0 for misclassified clean
            images, inf where it found nothing). Attacks after the first only search below the
            best distance found before them, so their entries are inf where they could not improve.
        seconds: Wall-clock seconds per attack.
    """

    norm: str
    distances: np.ndarray
    adversarials: np.ndarray
    clean_correct: np.ndarray
    best_attack: np.ndarray
    per_attack: dict
    seconds: dict

    def summary(self):
        """The score: median (and quartiles) over all samples, with the counts reported apart."""
        return summarize_distances(
            self.distances, self.clean_correct, self.per_attack, self.best_attack
        )


def quantile(values, q):
    """Quantile with linear interpolation that treats inf as a value (an inf neighbour gives inf)."""
    values = np.sort(np.asarray(values, np.float64))
    if values.size == 0:
        return float("nan")
    position = q * (values.size - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, values.size - 1)
    fraction = position - lower
    if fraction == 0 or values[lower] == values[upper]:
        return float(values[lower])
    if np.isinf(values[upper]):
        return float("inf")
    return float(values[lower] + (values[upper] - values[lower]) * fraction)


def summarize_distances(distances, clean_correct, per_attack=None, best_attack=None):
    """Median, quartiles and counts of minimal distances.

    Args:
        distances: (n,) minimal distances (0 for misclassified clean images, inf for not found).
        clean_correct: (n,) bool.
        per_attack: Optional attack name -> (n,) distances.
        best_attack: Optional (n,) names of the attack that found each kept adversarial.

    Returns:
        A dict: ``median``, ``q25``, ``q75`` over all n samples (the paper's score, misclassified
        clean images counting as 0), ``n``, ``n_clean_misclassified``, ``n_not_found``,
        ``median_clean_correct`` (over correctly classified samples only) and ``per_attack``
        (per attack: ``median``, ``n_found`` and ``n_best``, the samples where it was the best).
    """
    distances = np.asarray(distances, np.float64)
    clean_correct = np.asarray(clean_correct, bool)
    summary = {
        "median": quantile(distances, 0.5),
        "q25": quantile(distances, 0.25),
        "q75": quantile(distances, 0.75),
        "n": int(distances.size),
        "n_clean_misclassified": int(np.sum(~clean_correct)),
        "n_not_found": int(np.sum(np.isinf(distances))),
        "median_clean_correct": (
            quantile(distances[clean_correct], 0.5) if clean_correct.any() else None
        ),
    }
    if per_attack is not None:
        summary["per_attack"] = {
            name: {
                "median": quantile(found, 0.5),
                "n_found": int(np.sum(np.isfinite(found) & clean_correct)),
                "n_best": (
                    int(np.sum(np.asarray(best_attack) == name))
                    if best_attack is not None
                    else None
                ),
            }
            for name, found in per_attack.items()
        }
    return summary


def success_curve(distances, epsilons):
    """Fraction of samples broken within each budget: mean(distances <= eps) for each eps."""
    distances = np.asarray(distances, np.float64)
    return np.array([float(np.mean(distances <= eps)) for eps in np.asarray(epsilons, np.float64)])


def _run_batched(run, x, y, eps, batch_size):
    outputs = []
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        if eps is None:
            batch = run(x[start:stop], y[start:stop])
        else:
            batch = run(x[start:stop], y[start:stop], eps[start:stop])
        outputs.append(np.asarray(batch, np.float32))
    return np.concatenate(outputs)


def search_epsilon(
    run,
    verify,
    x,
    y,
    start,
    *,
    ceiling=None,
    factor=1.5,
    max_exponential_steps=20,
    search_steps=10,
    batch_size=500,
):
    """Exponential search then bisection on each sample's budget of a fixed-budget attack.

    Args:
        run: ``run(x, y, eps) -> candidates``, with one budget per image in ``eps``.
        verify: ``verify(x, candidates, y) -> (is_adversarial, distances)``.
        x: Images, (n, h, w, c).
        y: Labels, (n,).
        start: (n,) budgets where each sample's exponential search starts.
        ceiling: Optional (n,) distances already reached by other attacks (inf: none). A sample is
            never probed further up once the next upward budget would reach its ceiling: this
            attack can only matter below it. Start such samples just below their ceiling.
        factor: Multiply (after a failure) or divide (after a success) the budget by this factor
            until the sample has a failing and a succeeding budget.
        max_exponential_steps: Give up on a sample after this many exponential steps.
        search_steps: Bisection steps between the largest failing and smallest succeeding budget.
        batch_size: Images per `run` call.

    Returns:
        (distances, images, probes): the smallest verified distance per sample (inf if none), the
        corresponding images (the clean image if none) and the number of batched probes made.
    """
    count = len(x)
    failing = np.zeros(count)  # largest budget known to fail (0: none yet)
    succeeding = np.full(count, np.inf)  # smallest budget known to succeed
    exponential_steps = np.zeros(count, int)
    bisection_steps = np.zeros(count, int)
    best = np.full(count, np.inf)
    best_images = x.copy()
    ceiling = np.full(count, np.inf) if ceiling is None else np.asarray(ceiling, np.float64)
    probes = 0
    while True:
        bracketed = (failing > 0) & np.isfinite(succeeding)
        active = np.where(
            bracketed, bisection_steps < search_steps, exponential_steps < max_exponential_steps
        )
        active &= ~(np.isinf(succeeding) & (failing > 0) & (failing * factor >= ceiling))
        if not active.any():
            return best, best_images, probes
        index = np.flatnonzero(active)
        lo, hi = failing[index], succeeding[index]
        eps = np.where(
            np.isinf(hi),
            np.where(lo > 0, lo * factor, start[index]),
            np.where(lo > 0, (lo + hi) / 2.0, hi / factor),
        )
        candidates = _run_batched(run, x[index], y[index], eps.astype(np.float32), batch_size)
        success, distance = verify(x[index], candidates, y[index])
        probes += 1
        in_bisection = bracketed[index]
        bisection_steps[index[in_bisection]] += 1
        exponential_steps[index[~in_bisection]] += 1
        succeeding[index[success]] = eps[success]
        failing[index[~success]] = eps[~success]
        improved = success & (distance < best[index])
        best[index[improved]] = distance[improved]
        best_images[index[improved]] = candidates[improved]


def minimal_perturbation(
    model,
    x,
    y,
    norm="linf",
    *,
    attacks=None,
    step_fractions=(0.25,),
    iterations=(20,),
    losses=("margin",),
    target_ranks=(2, 3),
    carlini_wagner=True,
    cw_max_iterations=100,
    cw_binary_search_steps=5,
    cw_learning_rate=0.1,
    cw_initial_const=1.0,
    momentum=False,
    spsa=False,
    seed=0,
    decision_margin=1e-3,
    initial_epsilon=None,
    search_factor=1.5,
    max_exponential_steps=20,
    search_steps=10,
    batch_size=500,
    progress=_print_progress,
):
    """Smallest verified adversarial perturbation per sample (any wrong class), batched.

    Args:
        model: A Keras model or any callable mapping float32 images in [0, 1], NHWC, to logits.
        x: Images, float32 in [0, 1], shape (n, h, w, c).
        y: True integer labels, shape (n,).
        norm: "linf" or "l2".
        attacks: Attacks to run (see `neuroreg_tf.robustness.attacks`); default:
            `attacks.default_attacks(norm, step_fractions, iterations, ...)`.
        step_fractions: PGD step sizes, as fractions of epsilon (default attack grid).
        iterations: PGD iteration counts (default attack grid).
        losses: PGD objectives, "margin" and/or "ce" (default attack grid).
        target_ranks: Also run margin PGD toward the k-th most likely wrong class for each k here
            (multi-targeted; the untargeted margin attack covers k = 1).
        carlini_wagner: For L2, include Carlini & Wagner (default attacks).
        cw_max_iterations: C&W iterations per constant.
        cw_binary_search_steps: C&W binary-search steps on its constant.
        cw_learning_rate: C&W learning rate.
        cw_initial_const: C&W initial trade-off constant.
        momentum: Include the momentum iterative method on the same grid (default attacks).
        spsa: For L-inf, include the gradient-free SPSA attack (slow; default attacks).
        seed: Seed of random attacks (SPSA); the other attacks are deterministic.
        decision_margin: During the search a candidate counts only if its best wrong logit beats
            the true logit by more than this. Minimal adversarials sit on the decision boundary,
            where logits change by ~1e-5 with the batch composition (oneDNN); the margin keeps the
            final check (label flipped, any batch) from losing them.
        initial_epsilon: Budget where the exponential search starts for the first attack; default
            0.01 (L-inf) or 0.25 (L2). Later attacks start just below the best distance found so
            far and only search below it.
        search_factor: Factor of the exponential search (the paper's line of work uses 1.5).
        max_exponential_steps: Exponential-search steps per sample and attack before giving up.
        search_steps: Bisection steps per sample and attack once bracketed.
        batch_size: Images per attack call.
        progress: Called with a one-line message after each attack, or None.

    Returns:
        A `MinimalPerturbationResult` (``distances``, ``adversarials``, ``clean_correct``, ...);
        ``result.summary()`` gives the median score.

    Raises:
        ValueError: For images outside [0, 1] or not NHWC, labels of the wrong shape or out of
            range, an unknown norm, or non-positive search settings.
    """
    norm = attacks_lib.check_norm(norm)
    logits_fn = as_logits_fn(model)
    x = checks.check_images(x)
    num_classes = int(logits_fn(x[:1]).shape[-1])
    y = checks.check_labels(y, len(x), num_classes)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    search_steps = int(search_steps)
    max_exponential_steps = checks.check_positive_int(
        max_exponential_steps, "max_exponential_steps"
    )
    if search_steps < 0:
        raise ValueError(f"Expected search_steps >= 0. Received: search_steps={search_steps}")
    if not search_factor > 1:
        raise ValueError(f"Expected search_factor > 1. Received: search_factor={search_factor!r}")
    initial_epsilon = (
        DEFAULT_INITIAL_EPSILON[norm] if initial_epsilon is None else float(initial_epsilon)
    )
    if not initial_epsilon > 0:
        raise ValueError(
            f"Expected initial_epsilon > 0. Received: initial_epsilon={initial_epsilon!r}"
        )
    if attacks is None:
        attacks = attacks_lib.default_attacks(
            norm,
            step_fractions,
            iterations,
            losses=tuple(losses),
            target_ranks=tuple(target_ranks),
            momentum=momentum,
            carlini_wagner_l2=carlini_wagner,
            cw_max_iterations=cw_max_iterations,
            cw_binary_search_steps=cw_binary_search_steps,
            cw_learning_rate=cw_learning_rate,
            cw_initial_const=cw_initial_const,
            spsa=spsa,
            seed=seed,
            batch_size=batch_size,
        )
    for attack in attacks:
        if not isinstance(attack, (attacks_lib.EpsilonAttack, attacks_lib.MinimizingAttack)):
            raise ValueError(
                "Expected attacks built by neuroreg_tf.robustness.attacks (EpsilonAttack or "
                f"MinimizingAttack). Received: attack={attack!r}"
            )
        if attack.norm != norm:
            raise ValueError(
                f"Expected {norm} attacks only. Received: attack {attack.name!r} for {attack.norm}"
            )
    names = [attack.name for attack in attacks]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected distinct attack names. Received: attacks named {names}")

    def verify(clean, candidates, labels):
        return verify_adversarial(
            logits_fn,
            clean,
            candidates,
            labels,
            norm,
            min_margin=decision_margin,
            batch_size=batch_size,
        )

    clean_predictions = np.concatenate(
        [
            np.argmax(logits_fn(x[s : s + batch_size]).numpy(), axis=-1)
            for s in range(0, len(x), batch_size)
        ]
    )
    clean_correct = clean_predictions == y
    targets = np.flatnonzero(clean_correct)
    distances = np.where(clean_correct, np.inf, 0.0)
    adversarials = x.copy()
    best_attack = np.where(clean_correct, "", CLEAN_MISCLASSIFIED).astype(object)
    per_attack, seconds = {}, {}
    for attack in attacks:
        started = time.perf_counter()
        found = np.where(clean_correct, np.inf, 0.0)
        probes = 1
        if targets.size:
            run = attack.build(logits_fn)
            if isinstance(attack, attacks_lib.MinimizingAttack):
                candidates = _run_batched(run, x[targets], y[targets], None, batch_size)
                success, distance = verify(x[targets], candidates, y[targets])
                target_distances = np.where(success, distance, np.inf)
            else:
                known = distances[targets]
                start = np.where(np.isfinite(known), known * CEILING_PROBE, initial_epsilon)
                target_distances, candidates, probes = search_epsilon(
                    run,
                    verify,
                    x[targets],
                    y[targets],
                    start,
                    ceiling=known,
                    factor=search_factor,
                    max_exponential_steps=max_exponential_steps,
                    search_steps=search_steps,
                    batch_size=batch_size,
                )
            found[targets] = target_distances
            improved = target_distances < distances[targets]
            distances[targets[improved]] = target_distances[improved]
            adversarials[targets[improved]] = candidates[improved]
            best_attack[targets[improved]] = attack.name
        per_attack[attack.name] = found
        seconds[attack.name] = time.perf_counter() - started
        if progress is not None:
            broken = np.isfinite(distances)
            progress(
                f"{norm} {attack.name}: found {int(np.sum(np.isfinite(found[targets])))}/{targets.size} "
                f"({probes} probes, {seconds[attack.name]:.1f} s); best so far: median "
                f"{quantile(distances, 0.5):.5g} over {len(x)}, {int(np.sum(broken))} broken"
            )

    kept = np.flatnonzero(np.isfinite(distances) & clean_correct)
    if kept.size:
        still_adversarial, recomputed = verify_adversarial(
            logits_fn, x[kept], adversarials[kept], y[kept], norm, batch_size=batch_size
        )
        lost = kept[~still_adversarial]
        if lost.size and progress is not None:
            progress(
                f"{norm}: {lost.size} kept adversarials failed the final check; counted as not found"
            )
        distances[kept] = recomputed
        distances[lost] = np.inf
        adversarials[lost] = x[lost]
        best_attack[lost] = ""
    return MinimalPerturbationResult(
        norm=norm,
        distances=distances,
        adversarials=adversarials,
        clean_correct=clean_correct,
        best_attack=best_attack,
        per_attack=per_attack,
        seconds=seconds,
    )
