"""An item's final-label history: versions with provenance, kept when relabelled, and the human cost spent on it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from schemas.events import Provenance

# The seed's range for manual labelling is $0.10-0.50 per label: ordinary labels at the bottom of
# it, expert labels at the top. Decimal, because cents summed over 100,000 labels must add up exactly.
DEFAULT_LABEL_PRICE = Decimal("0.10")
DEFAULT_EXPERT_PRICE = Decimal("0.50")

Price = Decimal | float | str


def _money(price: Price) -> Decimal:
    value = Decimal(str(price)) if not isinstance(price, Decimal) else price
    if value < 0:
        raise ValueError(f"a price cannot be negative, got {price}")
    return value


def human_cost(
    human_labels: int,
    expert_labels: int,
    *,
    label_price: Price = DEFAULT_LABEL_PRICE,
    expert_price: Price = DEFAULT_EXPERT_PRICE,
) -> Decimal:
    """What the human labels cost: ordinary labels at label_price, expert labels at expert_price."""
    if human_labels < 0 or expert_labels < 0:
        raise ValueError(f"label counts cannot be negative, got {human_labels}, {expert_labels}")
    return human_labels * _money(label_price) + expert_labels * _money(expert_price)


@dataclass(frozen=True, slots=True)
class FinalLabel:
    """One version of an item's final label. Counts are cumulative over the item's life up to this version."""

    item_id: str
    version: int
    label: str
    provenance: Provenance
    confidence: float
    human_labels: int
    expert_labels: int
    reason: str = ""  # why this version exists, e.g. the flag that led to a correction

    def cost(self, *, label_price: Price = DEFAULT_LABEL_PRICE, expert_price: Price = DEFAULT_EXPERT_PRICE) -> Decimal:
        return human_cost(self.human_labels, self.expert_labels, label_price=label_price, expert_price=expert_price)


@dataclass(frozen=True, slots=True)
class LabelHistory:
    """Every final label an item has had, oldest first; the last one is in force."""

    item_id: str
    versions: tuple[FinalLabel, ...] = ()

    @property
    def current(self) -> FinalLabel | None:
        return self.versions[-1] if self.versions else None

    @property
    def next_version(self) -> int:
        return self.versions[-1].version + 1 if self.versions else 1


def record_final(
    history: LabelHistory,
    label: str,
    provenance: Provenance,
    confidence: float,
    *,
    human_labels: int,
    expert_labels: int,
    reason: str = "",
) -> tuple[LabelHistory, FinalLabel | None]:
    """Add a version when the label or its provenance changed; return the history and the new version.

    The same label with the same provenance again (a replayed event, one more agreeing vote) adds
    nothing and returns None, so a consumer can publish exactly when a version is returned. Human
    and expert label counts are cumulative and may not go down: earlier spending never disappears.
    """
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1], got {confidence}")
    current = history.current
    if current is not None:
        if human_labels < current.human_labels or expert_labels < current.expert_labels:
            raise ValueError(
                f"label counts are cumulative: {human_labels}/{expert_labels} is below version "
                f"{current.version}'s {current.human_labels}/{current.expert_labels}"
            )
        if current.label == label and current.provenance == provenance:
            return history, None
    version = FinalLabel(
        history.item_id, history.next_version, label, Provenance(provenance), confidence, human_labels,
        expert_labels, reason,
    )
    return LabelHistory(history.item_id, (*history.versions, version)), version


def correction_provenance(history: LabelHistory, label: str, provenance: Provenance) -> Provenance:
    """CORRECTED when a human decision replaces a different label already in force, else provenance as given."""
    current = history.current
    human = provenance in (Provenance.SINGLE_REVIEW, Provenance.CONSENSUS, Provenance.EXPERT)
    if human and current is not None and current.label != label:
        return Provenance.CORRECTED
    return provenance
