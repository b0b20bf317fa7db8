"""How adversarial minimal perturbations are searched: every setting and its default, once.

``AttackSettings`` is the one definition. The evaluation config's ``adversarial`` section is made
from it (``configs/evaluate.py``), and ``adversarial_evaluation``, ``minimal_perturbation`` and
``attacks.default_attacks`` all take it, so a setting has one name and one default everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from neuroreg_tf.errors import ConfigError

PGD_LOSSES = ("margin", "ce")
APGD_LOSSES = ("ce", "dlr")
NORMS = ("linf", "l2", "l1", "l0")
NORM_TITLES = {"linf": "L-inf", "l2": "L2", "l1": "L1", "l0": "L0"}
# The norms of the fixed-budget attacks (PGD, APGD, SPSA) and of the gradient-masking checks; L1
# and L0 are scored by minimum-norm attacks alone (Foolbox's FMN and Brendel & Bethge).
EPSILON_NORMS = ("linf", "l2")
# The Foolbox attacks (``AttackSettings.foolbox``): per name, the Foolbox class of each norm it has
# (``robustness.foolbox_attacks`` builds them; kept here, as names, so that settings need no Foolbox).
# Foolbox 3.3.4's L2FMNAttack returned perturbations of L2 norm about 1 on the linear test models
# (50x their minimal distance), so FMN has no L2 entry; DDN covers L2.
FOOLBOX_CLASSES = {
    "fmn": {"linf": "LInfFMNAttack", "l1": "L1FMNAttack", "l0": "L0FMNAttack"},
    "ddn": {"l2": "DDNAttack"},
    "brendel_bethge": {"linf": "LinfinityBrendelBethgeAttack", "l2": "L2BrendelBethgeAttack",
                       "l1": "L1BrendelBethgeAttack", "l0": "L0BrendelBethgeAttack"},
    "hop_skip_jump": {"linf": "HopSkipJumpAttack", "l2": "HopSkipJumpAttack"},
}
FOOLBOX_ATTACKS = tuple(FOOLBOX_CLASSES)
DEFAULT_INITIAL_EPSILON = {"linf": 0.01, "l2": 0.25}


def check_norm(norm: str) -> str:
    """Returns ``norm`` after checking it is one of ``NORMS``."""
    if norm not in NORMS:
        raise ValueError(f"Expected norm among {NORMS}. Received: norm={norm!r}")
    return norm


def check_epsilon_norm(norm: str) -> str:
    """Returns ``norm`` after checking it is one of ``EPSILON_NORMS`` (the budget attacks' norms)."""
    if norm not in EPSILON_NORMS:
        raise ValueError(
            f"Expected norm among {EPSILON_NORMS}: fixed-budget attacks and the gradient-masking checks exist "
            f"for those; L1 and L0 are scored by Foolbox's minimum-norm attacks. Received: norm={norm!r}")
    return norm


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """The attacks run per norm and the per-sample search over their budget.

    Attributes:
        step_fractions: PGD step sizes as fractions of epsilon.
        iterations: PGD iteration counts; every (iterations, step, loss) triple is one attack.
        losses: PGD objectives: "margin" (best wrong logit minus true logit; on a linear model it
            finds the exact minimum) and/or "ce" (cross-entropy, whose gradient mixes the wrong
            classes).
        target_ranks: For each k, also margin PGD toward the k-th most likely wrong class of the
            clean image (multi-targeted PGD: the nearest boundary is not always the runner-up's).
        momentum: Also run the momentum iterative method on the PGD grid.
        carlini_wagner: For L2, also run Carlini & Wagner (first: it is usually the strongest).
        cw_max_iterations: C&W iterations per constant (CleverHans' default: 1000).
        cw_binary_search_steps: C&W binary-search steps on its trade-off constant.
        cw_learning_rate: C&W Adam learning rate (in tanh space).
        cw_initial_const: C&W initial trade-off constant.
        spsa: For L-inf, also run the gradient-free SPSA attack (slow; a check on gradient
            masking).
        spsa_iterations: SPSA iterations.
        apgd: Also run APGD (Croce & Hein 2020, ``neuroreg_tf.robustness.apgd``), PGD without a
            step size to tune: one attack per ``apgd_losses`` entry and per ``apgd_target_ranks``
            entry, searched per sample like PGD.
        apgd_losses: APGD objectives: "ce" (cross-entropy) and/or "dlr" (difference of logits
            ratio; at least 3 classes).
        apgd_target_ranks: For each k, also APGD-T (targeted DLR) toward the k-th most likely
            wrong class of the clean image (at least 4 classes, k below the number of classes).
        apgd_iterations: APGD steps per restart (the paper: 100).
        apgd_restarts: APGD random starts per budget.
        foolbox: Foolbox 3 minimising attacks to add, each for the norms it has
            (``FOOLBOX_CLASSES``: "fmn" L-inf/L1/L0, "ddn" L2, "brendel_bethge" all four,
            "hop_skip_jump" L-inf/L2). Brendel & Bethge and HopSkipJump refine the best
            adversarial found before them, so they come after the others.
        foolbox_steps: their steps.
        seed: Seed of the random attacks (SPSA, APGD's random starts); the others are
            deterministic.
        search_steps: Bisection steps on epsilon per sample and attack, once bracketed.
        search_factor: Factor of the exponential search (the paper's line of work uses 1.5).
        max_exponential_steps: Exponential-search steps per sample and attack before giving up.
        initial_epsilon: Budget where the first attack's exponential search starts; None: 0.01
            for L-inf, 0.25 for L2. Later attacks start just below the best distance so far.
        decision_margin: During the search a candidate counts only if its best wrong logit beats
            the true logit by more than this; minimal adversarials sit on the decision boundary,
            where logits change by ~1e-5 with the batch composition, and the margin keeps the
            final check from losing them.
        batch_size: Images per attack call.
    """

    step_fractions: tuple[float, ...] = (0.25,)
    iterations: tuple[int, ...] = (20,)
    losses: tuple[str, ...] = ("margin",)
    target_ranks: tuple[int, ...] = (2, 3)
    momentum: bool = False
    carlini_wagner: bool = True
    cw_max_iterations: int = 100
    cw_binary_search_steps: int = 5
    cw_learning_rate: float = 0.1
    cw_initial_const: float = 1.0
    spsa: bool = False
    spsa_iterations: int = 50
    apgd: bool = False
    apgd_losses: tuple[str, ...] = APGD_LOSSES
    apgd_target_ranks: tuple[int, ...] = ()
    apgd_iterations: int = 100
    apgd_restarts: int = 1
    foolbox: tuple[str, ...] = ()
    foolbox_steps: int = 100
    seed: int = 0
    search_steps: int = 10
    search_factor: float = 1.5
    max_exponential_steps: int = 20
    initial_epsilon: float | None = None
    decision_margin: float = 1e-3
    batch_size: int = 500

    def __post_init__(self):
        for name in ("step_fractions", "iterations", "losses", "target_ranks", "apgd_losses",
                     "apgd_target_ranks", "foolbox"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raises ``ConfigError`` naming the first setting that cannot work."""
        if not self.step_fractions or any(not 0 < f <= 1 for f in self.step_fractions):
            raise ConfigError(
                "step_fractions must be a non-empty list of PGD step sizes in (0, 1] (fractions "
                f"of epsilon). Received: step_fractions={self.step_fractions}"
            )
        if not self.iterations or any(
            isinstance(n, bool) or int(n) != n or n < 1 for n in self.iterations
        ):
            raise ConfigError(
                "iterations must be a non-empty list of positive PGD iteration counts. "
                f"Received: iterations={self.iterations}"
            )
        unknown = [loss for loss in self.losses if loss not in PGD_LOSSES]
        if unknown or not (self.losses or self.target_ranks):
            raise ConfigError(
                f"losses must be among {PGD_LOSSES} (and not empty unless target_ranks are "
                f"given). Received: losses={self.losses}"
            )
        if any(isinstance(k, bool) or int(k) != k or k < 1 for k in self.target_ranks):
            raise ConfigError(
                f"target_ranks must be positive integers. Received: target_ranks={self.target_ranks}"
            )
        unknown = [loss for loss in self.apgd_losses if loss not in APGD_LOSSES]
        if unknown:
            raise ConfigError(
                f"apgd_losses must be among {APGD_LOSSES}. Received: apgd_losses={self.apgd_losses}"
            )
        if any(isinstance(k, bool) or int(k) != k or k < 1 for k in self.apgd_target_ranks):
            raise ConfigError(
                "apgd_target_ranks must be positive integers. "
                f"Received: apgd_target_ranks={self.apgd_target_ranks}"
            )
        unknown = [name for name in self.foolbox if name not in FOOLBOX_ATTACKS]
        if unknown:
            raise ConfigError(f"foolbox must be among {FOOLBOX_ATTACKS}. Received: foolbox={self.foolbox}")
        positive = ("cw_max_iterations", "cw_binary_search_steps", "spsa_iterations", "foolbox_steps",
                    "apgd_iterations", "apgd_restarts", "max_exponential_steps", "batch_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ConfigError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if isinstance(self.search_steps, bool) or int(self.search_steps) != self.search_steps \
                or self.search_steps < 0:
            raise ConfigError(
                f"search_steps must be an integer >= 0. Received: search_steps={self.search_steps!r}"
            )
        if not self.search_factor > 1:
            raise ConfigError(f"search_factor must exceed 1. Received: search_factor={self.search_factor!r}")
        if self.initial_epsilon is not None and not self.initial_epsilon > 0:
            raise ConfigError(
                f"initial_epsilon must be positive (or None). Received: initial_epsilon={self.initial_epsilon!r}"
            )
        if not self.decision_margin >= 0 or not self.cw_learning_rate > 0:
            raise ConfigError(
                "decision_margin must be >= 0 and cw_learning_rate > 0. Received: "
                f"decision_margin={self.decision_margin!r}, cw_learning_rate={self.cw_learning_rate!r}"
            )

    def attacks_missing(self, norms) -> str | None:
        """Why some of ``norms`` would have no attack under these settings, with the fix; None if
        every norm has one (L-inf and L2 always do: the PGD grid; L1 and L0 need a Foolbox attack)."""
        for norm in norms:
            check_norm(norm)
            if norm in EPSILON_NORMS:
                continue
            if not any(norm in FOOLBOX_CLASSES[name] for name in self.foolbox):
                return (f"norm {norm!r} has no attack: L1 and L0 are scored by Foolbox's minimum-norm "
                        f"attacks; add 'fmn' and/or 'brendel_bethge' to foolbox (the 'strong' and "
                        f"'paper' presets have them). Received: foolbox={self.foolbox}")
        return None

    def start_epsilon(self, norm: str) -> float:
        """Where the first attack's exponential search starts for ``norm``."""
        if self.initial_epsilon is not None:
            return float(self.initial_epsilon)
        if norm not in DEFAULT_INITIAL_EPSILON:
            raise ValueError(f"Budget searches run for {EPSILON_NORMS} only. Received: norm={norm!r}")
        return DEFAULT_INITIAL_EPSILON[norm]

    def replace(self, **changes: Any) -> "AttackSettings":
        """A copy with ``changes``; unknown names raise ``ConfigError`` listing the known ones."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"Unknown attack settings {unknown}. Known: {field_names()}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (config sections, reports)."""
        return dataclasses.asdict(self)

    def as_identity(self) -> dict[str, Any]:
        """The settings that take effect: ``as_dict`` without the APGD group when APGD is off and
        without the Foolbox group when no Foolbox attack runs, so that an evaluation recorded
        before they existed is the same evaluation now."""
        return {k: v for k, v in self.as_dict().items()
                if (self.apgd or not k.startswith("apgd")) and (self.foolbox or not k.startswith("foolbox"))}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], ignore=()) -> "AttackSettings":
        """Settings from a config section; keys in ``ignore`` belong to its caller."""
        values = {key: value for key, value in dict(mapping).items() if key not in ignore}
        return cls().replace(**values)


def field_names() -> list[str]:
    """The names of the settings, in definition order."""
    return [field.name for field in dataclasses.fields(AttackSettings)]


PRESETS = ("paper", "study", "strong", "runlocal")  # named attack schedules (None or "": the CPU default)


def preset(name: str | None) -> AttackSettings:
    """The settings of an evaluation variant: None (CPU default), "paper", "study", "strong" or "runlocal"."""
    if name in (None, ""):
        return AttackSettings()
    if name == "paper":
        # The paper's grid (its supplement, Fig. 7): PGD over iterations x step sizes, C&W, DDN and
        # the Brendel & Bethge family on L-inf, L2, L1 and L0 through Foolbox (at Foolbox's 1000
        # steps), per sample the smallest distance over all. FMN stands in for the L0/L1 attacks
        # Foolbox 3 no longer has (JSMA, SparseFool). Every attack here starts from the clean image
        # or the best adversarial so far, deterministically: the paper's five repetitions matter
        # for random starts only.
        return AttackSettings(
            iterations=(10, 30, 50, 100, 200),
            losses=("margin", "ce"),
            target_ranks=(2, 3, 4),
            # The paper's PGD step sizes 1e-6 .. 1 are absolute; here steps scale with epsilon.
            step_fractions=(0.01, 0.03, 0.1, 0.3, 1.0),
            search_steps=20,
            cw_max_iterations=1000,
            cw_binary_search_steps=9,
            cw_learning_rate=0.01,
            foolbox=("fmn", "ddn", "brendel_bethge"),
            foolbox_steps=1000,
        )
    if name == "study":
        # The studies' grid: every run of every condition is scored with it (one PGD schedule,
        # the runner-up target, 8 bisection steps, a short C&W), about a third of the default.
        return AttackSettings(
            iterations=(10,),
            target_ranks=(2,),
            search_steps=8,
            cw_max_iterations=50,
            cw_binary_search_steps=3,
        )
    if name == "strong":
        # The audit's ensemble (issue 20): PGD (20 steps, margin loss, then toward the runner-up),
        # APGD-CE, APGD-DLR and APGD-T toward the 3 most likely wrong classes (Croce & Hein 2020)
        # at 50 steps, C&W for L2, Foolbox's FMN (L-inf, L1, L0) and DDN (L2) at 100 steps, and
        # last Brendel & Bethge (all four norms, 100 steps) from the best adversarial so far; per
        # sample the smallest verified distance of any of them.
        # (PGD at 100 steps took 60% of the time and found nothing APGD did not: bench/RESULTS.md.)
        return AttackSettings(
            iterations=(20,),
            target_ranks=(2,),
            search_steps=8,
            cw_max_iterations=100,
            cw_binary_search_steps=5,
            apgd=True,
            apgd_losses=("ce", "dlr"),
            apgd_target_ranks=(1, 2, 3),
            apgd_iterations=50,
            foolbox=("fmn", "ddn", "brendel_bethge"),
        )
    if name == "runlocal":
        return AttackSettings(
            iterations=(10,),
            target_ranks=(2,),
            search_steps=6,
            cw_max_iterations=50,
            cw_binary_search_steps=3,
        )
    raise ConfigError(
        f"Unknown attack preset. Expected None or one of {PRESETS}. Received: {name!r}"
    )
