"""Hyper-parameters of a predictive model and of its training: the one definition.

``configs/build_target.py``'s ``model`` section is made from these defaults
(``PredictiveModelConfig().as_dict()``), and ``problems`` is its validator.
"""

from __future__ import annotations

import dataclasses

READOUTS = ("factorized", "gaussian")


@dataclasses.dataclass
class PredictiveModelConfig:
    """Hyper-parameters of the predictive model and its training.

    Attributes:
        channels: feature channels per core layer.
        input_kernel: first-layer kernel size.
        hidden_kernel: kernel size of layers 2 and 3.
        readout: 'factorized' or 'gaussian'.
        readout_pool: average-pooling of the core features before a factorized
            readout (1: none); cuts readout cost by its square.
        laplace_weight: Laplace smoothness penalty on the first layer.
        readout_l1: L1 penalty on the factorized readout weights.
        use_shifter: learn pupil centre -> readout shift.
        use_modulator: learn behaviour -> gain.
        learning_rate: Adam learning rate.
        batch_size: trials per step.
        max_epochs: upper bound on epochs.
        patience: epochs without a better validation correlation before stopping.
        seed: initialisation and shuffling seed.
        jit_compile: compile the training step with XLA.
    """

    channels: int = 12
    input_kernel: int = 9
    hidden_kernel: int = 3
    readout: str = "factorized"
    readout_pool: int = 4
    laplace_weight: float = 0.1
    readout_l1: float = 0.05
    use_shifter: bool = True
    use_modulator: bool = True
    learning_rate: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 15
    patience: int = 3
    seed: int = 0
    jit_compile: bool = False

    def as_dict(self) -> dict:
        """The fields and their values, in definition order."""
        return dataclasses.asdict(self)

    def problems(self) -> list[tuple[str, str]]:
        """(field, what it must be) for every invalid field; empty when all are valid."""
        found = []
        if self.readout not in READOUTS:
            found.append(("readout", f"one of {READOUTS}"))
        for name in ("channels", "input_kernel", "hidden_kernel", "readout_pool", "batch_size", "max_epochs", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append((name, "a positive integer"))
        for name in ("laplace_weight", "readout_l1"):
            if not float(getattr(self, name)) >= 0:
                found.append((name, ">= 0"))
        if not float(self.learning_rate) > 0:
            found.append(("learning_rate", "> 0"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            found.append(("seed", "an integer >= 0"))
        return found

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        for name, expected in self.problems():
            raise ValueError(f"`{name}` must be {expected}. Received: {name}={getattr(self, name)!r}")
