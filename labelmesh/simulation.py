"""Simulated annotators with realistic mistakes: similar intents are confused more often than unrelated ones."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# How many nearest intents (by embedding-centroid similarity) a confused annotator chooses among.
DEFAULT_CONFUSABLE_INTENTS = 5


@dataclass
class SimulatedAnnotator:
    """Answers with the true label at `accuracy`; after `drift_after` labels, accuracy falls to `drifted_accuracy`.

    A wrong answer is, with probability `confusable_share`, a label that really looks like the truth:
    one of the labels the model found plausible (the task's pre-label top-k) when the task shows any,
    otherwise one of `similar[truth]` (the intents nearest the truth, see confusable_intents). Otherwise,
    or when neither is known, any other label. `random_answers` makes an annotator who clicks anything.
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
    similar: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)
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
        if not similar:
            similar = [label for label in self.similar.get(truth, ()) if label != truth]
        if similar and self._rng.random() < self.confusable_share:
            return self._rng.choice(similar)
        return self._rng.choice([label for label in labels if label != truth])

    def time_spent_ms(self) -> int:
        return int(1000 * self._rng.lognormvariate(0, 0.4) * self.seconds_per_label)


def confusable_intents(
    embeddings: np.ndarray, labels: Sequence[str], k: int = DEFAULT_CONFUSABLE_INTENTS
) -> dict[str, tuple[str, ...]]:
    """For each label, the k other labels whose embedding centroids are most cosine-similar, nearest first.

    What a person confuses without a model's hint: "card_arrival" with "card_delivery_estimate",
    not with "exchange_rate". Built from the dataset's own texts, so it is part of the simulated
    world, not something the pipeline learns.
    """
    X = np.asarray(embeddings, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(labels):
        raise ValueError(f"embeddings {X.shape} do not match {len(labels)} labels")
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    rows = np.array([index[label] for label in labels])
    centroids = np.zeros((len(names), X.shape[1]))
    np.add.at(centroids, rows, X)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sims = centroids @ centroids.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(names) - 1)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {name: tuple(names[j] for j in order[i]) for i, name in enumerate(names)}


def default_team(seed: int = 0, similar: Mapping[str, Sequence[str]] | None = None) -> list[SimulatedAnnotator]:
    """Five ~90% annotators, one who degrades after 150 labels, one who answers at random, and two experts.

    similar (label -> confusable labels, see confusable_intents) shapes unhinted mistakes for everyone.
    """
    similar = similar or {}
    team = [SimulatedAnnotator(f"ann-{i}", accuracy=0.88 + 0.01 * i, seed=seed, similar=similar) for i in range(5)]
    team.append(SimulatedAnnotator("ann-drifter", accuracy=0.9, drift_after=150, drifted_accuracy=0.4, seed=seed,
                                   similar=similar))
    team.append(SimulatedAnnotator("ann-random", random_answers=True, seed=seed))
    team += [SimulatedAnnotator(f"expert-{i}", accuracy=0.97, role="expert", seconds_per_label=20, seed=seed,
                                similar=similar) for i in range(2)]
    return team
