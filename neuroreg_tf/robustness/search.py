"""The minimal adversarial perturbation per sample: attacks searched over their budget.

For every sample that the model classifies correctly, ``minimal_perturbation`` looks for the smallest
perturbation (L-inf, L2, L1 or L0) that makes the model output any wrong class:

* fixed-budget attacks (``attacks.EpsilonAttack``, e.g. PGD with step = fraction of epsilon) are
  searched over epsilon per sample (``search_epsilon``): an exponential search (multiply, or
  divide, by ``settings.search_factor`` until the sample's outcome changes) from the initial
  budget, then ``settings.search_steps`` bisection steps between the largest failing and the
  smallest succeeding budget. Later attacks start just below the best distance found so far
  (``CEILING_PROBE``) and never search above it, so a sample costs them one probe unless they can
  improve it. All samples are searched together, in batches, each with its own epsilon;
* minimising attacks (``attacks.MinimizingAttack``: Carlini & Wagner L2, Foolbox's FMN and DDN)
  run once; those that refine an adversarial (Brendel & Bethge, HopSkipJump) run once on the
  samples already broken, from their best adversarial so far;
* every candidate is verified before it counts (``scoring.verify_adversarial``): the model's label
  on the returned image differs from the true label, the image lies within [0, 1] and is finite,
  and the distance is recomputed (float64) from the returned image. Per sample the smallest
  verified distance over all attacks and settings is kept, and the kept adversarials are verified
  once more at the end.

Samples misclassified without any perturbation get distance 0 and are counted separately; samples
where no attack succeeded get ``np.inf``. What is searched is ``settings.AttackSettings``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from neuroreg_tf.progress import Reporter, print_line, reporter
from neuroreg_tf.robustness import attacks as attacks_lib
from neuroreg_tf.robustness import checks
from neuroreg_tf.robustness.loading import as_logits_fn, predict_labels
from neuroreg_tf.robustness.scoring import (
    CLEAN_MISCLASSIFIED,
    quantile,
    summarize_distances,
    verify_adversarial,
)
from neuroreg_tf.robustness.settings import AttackSettings, check_norm

# Later attacks first probe a sample at this fraction of the best distance found so far; if they
# fail there, they cannot improve it by more than that margin and the sample is left alone.
CEILING_PROBE = 0.98


@dataclasses.dataclass
class MinimalPerturbationResult:
    """Per-sample minimal perturbations for one norm.

    Attributes:
        norm: One of ``settings.NORMS``.
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


def _refine(run, verify, x, y, best_images, best_distances, fallback=None):
    """A refining attack (``MinimizingAttack.refines``) started from each sample's best adversarial
    so far, or where there is none from its verified ``fallback`` adversarial (one found for another
    norm), or else from its own initial search; (distances, images), inf and the clean image where
    it found nothing."""
    distances = np.full(len(x), np.inf)
    images = x.copy()
    starts = best_images.copy()
    broken = np.isfinite(best_distances)
    if fallback is not None and not broken.all():
        missing = np.flatnonzero(~broken)
        usable, _ = verify(x[missing], fallback[missing], y[missing])
        starts[missing[usable]] = fallback[missing[usable]]
        broken[missing[usable]] = True
    # Samples with a start begin there; the others from the attack's own initial search.
    for index, given in ((np.flatnonzero(broken), True), (np.flatnonzero(~broken), False)):
        if not index.size:
            continue
        extra = {"starting_points": starts[index]} if given else {}
        candidates = np.asarray(run(x[index], y[index], **extra), np.float32)
        success, distance = verify(x[index], candidates, y[index])
        distances[index[success]] = distance[success]
        images[index] = candidates
    return distances, images


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
        batch_size: Images per ``run`` call.

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
    norm: str = "linf",
    *,
    settings: AttackSettings | None = None,
    attacks=None,
    starting_points=None,
    progress: Reporter = print_line,
    **overrides,
) -> MinimalPerturbationResult:
    """Smallest verified adversarial perturbation per sample (any wrong class), batched.

    Args:
        model: A Keras model or any callable mapping float32 images in [0, 1], NHWC, to logits.
        x: Images, float32 in [0, 1], shape (n, h, w, c).
        y: True integer labels, shape (n,).
        norm: One of ``settings.NORMS``.
        settings: The attacks and the search (``AttackSettings``; default: its defaults).
        attacks: Attacks to run instead of ``attacks.default_attacks(norm, settings)`` (see
            ``neuroreg_tf.robustness.attacks``); the search settings still apply.
        starting_points: Optional (n, h, w, c) adversarials of other searches (e.g. another
            norm's): a refining attack starts from a sample's one, once verified, where no attack
            before it broke the sample.
        progress: Reporter of a one-line message after each attack (None: silent).
        **overrides: Changes to ``settings`` by name, e.g. ``search_steps=6``.

    Returns:
        A ``MinimalPerturbationResult`` (``distances``, ``adversarials``, ``clean_correct``, ...);
        ``result.summary()`` gives the median score.

    Raises:
        ValueError: For images outside [0, 1] or not NHWC, labels of the wrong shape or out of
            range, an unknown norm, or settings that cannot work.
    """
    settings = (settings or AttackSettings()).replace(**overrides)
    norm = check_norm(norm)
    report = reporter(progress)
    logits_fn = as_logits_fn(model)
    x = checks.check_images(x)
    num_classes = int(logits_fn(x[:1]).shape[-1])
    y = checks.check_labels(y, len(x), num_classes)
    batch_size = settings.batch_size
    if attacks is None:
        attacks = attacks_lib.default_attacks(norm, settings)
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
            min_margin=settings.decision_margin,
            batch_size=batch_size,
        )

    clean_correct = predict_labels(logits_fn, x, batch_size) == y
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
            if isinstance(attack, attacks_lib.MinimizingAttack) and attack.refines:
                target_distances, candidates = _refine(
                    run, verify, x[targets], y[targets], adversarials[targets], distances[targets],
                    None if starting_points is None else starting_points[targets])
            elif isinstance(attack, attacks_lib.MinimizingAttack):
                candidates = _run_batched(run, x[targets], y[targets], None, batch_size)
                success, distance = verify(x[targets], candidates, y[targets])
                target_distances = np.where(success, distance, np.inf)
            else:
                known = distances[targets]
                start = np.where(np.isfinite(known), known * CEILING_PROBE, settings.start_epsilon(norm))
                target_distances, candidates, probes = search_epsilon(
                    run,
                    verify,
                    x[targets],
                    y[targets],
                    start,
                    ceiling=known,
                    factor=settings.search_factor,
                    max_exponential_steps=settings.max_exponential_steps,
                    search_steps=settings.search_steps,
                    batch_size=batch_size,
                )
            found[targets] = target_distances
            improved = target_distances < distances[targets]
            distances[targets[improved]] = target_distances[improved]
            adversarials[targets[improved]] = candidates[improved]
            best_attack[targets[improved]] = attack.name
        per_attack[attack.name] = found
        seconds[attack.name] = time.perf_counter() - started
        broken = np.isfinite(distances)
        report(
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
        if lost.size:
            report(
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
