"""Simulated annotators with realistic mistakes: similar intents are confused more often than unrelated ones."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class SimulatedAnnotator:
    """Answers with the true label at `accuracy`; after `drift_after` labels, accuracy falls to `drifted_accuracy`.

    A wrong answer is, with probability `confusable_share`, one of the labels the model found plausible
    (the task's pre-label top-k, i.e. intents that really look alike); otherwise any other label.
    `random_answers` makes an annotator who clicks anything.
    """

    name: str
    accuracy: float = 0.9
    drift_after: int | None = None
    drifted_accuracy: float = 0.5
    random_answers: bool = False
    confusable_share: float = 0.8
    seconds_per_label: float = 8.0
    role: str = "annotator"
    seed: int = 0
    answered: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.name}/{self.seed}")

    def current_accuracy(self) -> float:
        if self.drift_after is not None and self.answered >= self.drift_after:
            return self.drifted_accuracy
        return self.accuracy

    def answer(self, truth: str, labels: Sequence[str], suggested: Sequence[str] = ()) -> str:
        self.answered += 1
        if self.random_answers:
            return self._rng.choice(list(labels))
        if self._rng.random() < self.current_accuracy():
            return truth
        similar = [label for label in suggested if label != truth]
        if similar and self._rng.random() < self.confusable_share:
            return self._rng.choice(similar)
        return self._rng.choice([label for label in labels if label != truth])

    def time_spent_ms(self) -> int:
        return int(1000 * self._rng.lognormvariate(0, 0.4) * self.seconds_per_label)


def default_team(seed: int = 0) -> list[SimulatedAnnotator]:
    """Five ~90% annotators, one who degrades after 150 labels, one who answers at random, and two experts."""
    team = [SimulatedAnnotator(f"ann-{i}", accuracy=0.88 + 0.01 * i, seed=seed) for i in range(5)]
    team.append(SimulatedAnnotator("ann-drifter", accuracy=0.9, drift_after=150, drifted_accuracy=0.4, seed=seed))
    team.append(SimulatedAnnotator("ann-random", random_answers=True, seed=seed))
    team += [SimulatedAnnotator(f"expert-{i}", accuracy=0.97, role="expert", seconds_per_label=20, seed=seed)
             for i in range(2)]
    return team
