"""Versioned event contracts shared by every producer and consumer of labelmesh's topics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from schemas.keys import annotator_key
from schemas.spans import Spans, TaskType

ItemId = Annotated[str, Field(min_length=1, max_length=256)]
ProjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
LabelName = Annotated[str, Field(min_length=1, max_length=256)]


def new_event_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    """Base for every contract: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Model):
    """Fields every event carries; `key` is the Kafka key so one subject's events stay ordered."""

    TOPIC: ClassVar[str]
    event_id: str = Field(default_factory=new_event_id, min_length=1)
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    project: ProjectId
    item_id: ItemId | None = None
    correlation_id: str | None = None

    @property
    def key(self) -> str:
        return self.item_id or self.project


class LabelScore(Model):
    label: LabelName
    probability: float = Field(ge=0.0, le=1.0)


class Neighbour(Model):
    item_id: ItemId
    label: LabelName
    similarity: float = Field(ge=-1.0, le=1.0)


class Tier(StrEnum):
    AUTO = "auto"
    SINGLE = "single"
    MULTI = "multi"
    EXPERT = "expert"


# The seed's borders, read literally: auto-accept above 95%, one reviewer from 70% to 95%,
# several annotators below 70%. A border of 1.0 therefore means "never" for the auto tier.
SEED_AUTO_ACCEPT = 0.95
SEED_SINGLE_REVIEW = 0.70


# The one definition of a threshold pair: the router's rules and learner, the trainer and the events use it.
class Thresholds(Model):
    """Calibrated-confidence borders: > auto_accept is auto-labelled, >= single_review gets one human."""

    auto_accept: float = Field(default=SEED_AUTO_ACCEPT, ge=0.0, le=1.0)
    single_review: float = Field(default=SEED_SINGLE_REVIEW, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.single_review > self.auto_accept:
            raise ValueError(
                f"need 0 <= single_review <= auto_accept <= 1, got single_review={self.single_review}, "
                f"auto_accept={self.auto_accept}"
            )
        return self


class Provenance(StrEnum):
    IMPORTED = "imported"
    AUTO = "auto"
    SINGLE_REVIEW = "single_review"
    CONSENSUS = "consensus"
    EXPERT = "expert"
    CORRECTED = "corrected"


class FlagKind(StrEnum):
    DISAGREEMENT = "disagreement"
    GOLDEN_MISS = "golden_miss"
    KNN_INCONSISTENCY = "knn_inconsistency"
    LIKELY_LABEL_ERROR = "likely_label_error"
    DRIFT = "drift"
    LOW_AGREEMENT = "low_agreement"
    ANNOTATOR_FEEDBACK = "annotator_feedback"
    ANNOTATOR_SUSPENDED = "annotator_suspended"
    # An item labelled by an annotator since suspended: its label goes back for review.
    SUSPENDED_ANNOTATOR_LABEL = "suspended_annotator_label"
    MODEL_REJECTED = "model_rejected"
    # A lone reviewer's label is in doubt: one more ordinary reviewer before an expert (qc's second_opinion).
    SECOND_OPINION = "second_opinion"


class FlagSubject(StrEnum):
    ITEM = "item"
    ANNOTATOR = "annotator"
    DATASET = "dataset"
    MODEL = "model"
    GUIDELINES = "guidelines"


class ProjectConfigured(Envelope):
    """A labelling project's taxonomy and guidelines, as set by an admin (latest wins)."""

    TOPIC: ClassVar[str] = "project.configured"
    type: Literal["project.configured"] = "project.configured"
    labels: tuple[LabelName, ...] = Field(min_length=2)
    guideline_version: int = Field(ge=1)
    guidelines: str = ""
    multi_annotators: int = Field(default=3, ge=2, le=9)
    target_auto_error: float = Field(default=0.02, gt=0.0, lt=1.0)
    task: TaskType = Field(default=TaskType.CLASSIFICATION, description="spans: the labels are entity types")

    @property
    def key(self) -> str:
        return self.project


class TextPayload(Model):
    kind: Literal["text"] = "text"
    text: str


class ItemIngested(Envelope):
    """An item entered the pipeline; golden and trusted labels are never shown to annotators."""

    TOPIC: ClassVar[str] = "item.ingested"
    type: Literal["item.ingested"] = "item.ingested"
    item_id: ItemId
    payload: TextPayload
    source: str = "api"
    dataset: str = "default"
    golden_label: LabelName | None = None
    trusted_label: LabelName | None = None
    golden_spans: Spans | None = Field(default=None, description="spans projects: a golden item's entities")


class ItemPrelabeled(Envelope):
    """The model's draft: calibrated top-k and the embedding that qc, router and trainer reuse."""

    TOPIC: ClassVar[str] = "item.prelabeled"
    type: Literal["item.prelabeled"] = "item.prelabeled"
    item_id: ItemId
    model_version: int | None = None
    encoder: str
    top_k: tuple[LabelScore, ...] = ()
    embedding: tuple[float, ...] = ()
    truncated: bool = False
    trusted: bool = False
    golden: bool = False
    spans: Spans | None = Field(default=None, description="spans projects: the model's entities, calibrated")


class ItemRouted(Envelope):
    """Who must look at an item, and why."""

    TOPIC: ClassVar[str] = "item.routed"
    type: Literal["item.routed"] = "item.routed"
    item_id: ItemId
    tier: Tier
    required_annotators: int = Field(ge=0, le=9)
    spot_check: bool = False
    golden: bool = False
    model_version: int | None = None
    top_k: tuple[LabelScore, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    thresholds: Thresholds
    reasons: tuple[str, ...] = ()
    spans: Spans | None = Field(default=None, description="spans projects: the pre-labelled entities shown")
    counted: tuple[Annotated[str, Field(min_length=1, max_length=128)], ...] = Field(default=(), max_length=8, description=(
        "annotators whose labels of the item already count towards required_annotators (a second opinion): "
        "the gateway fills their slots and does not offer them the item again"))
    promoted: bool = Field(default=False, description=(
        "a re-route to auto of an item already queued for humans, because the auto-accept border moved below "
        "its confidence: the gateway withdraws the item's tasks nobody has claimed"))


class LabelSubmitted(Envelope):
    """One annotator's answer for one task, exactly once per idempotency key."""

    TOPIC: ClassVar[str] = "label.submitted"
    type: Literal["label.submitted"] = "label.submitted"
    item_id: ItemId
    task_id: str
    annotator_id: str
    role: Literal["annotator", "expert", "admin"] = "annotator"
    label: LabelName
    time_spent_ms: int = Field(ge=0)
    guideline_version: int = Field(ge=1)
    idempotency_key: str = Field(min_length=1, max_length=128)
    golden: bool = False
    # Set when the label belongs to a calibration session: it measures agreement and is not a vote on the item.
    session_id: str | None = None
    spans: Spans | None = Field(default=None, description="spans projects: the annotator's entities")


class LabelFinalized(Envelope):
    """qc's decision for an item: the label the trainer and exports use, with provenance and cost."""

    TOPIC: ClassVar[str] = "label.finalized"
    type: Literal["label.finalized"] = "label.finalized"
    item_id: ItemId
    label: LabelName
    version: int = Field(ge=1)
    provenance: Provenance
    confidence: float = Field(ge=0.0, le=1.0)
    human_labels: int = Field(ge=0)
    expert_labels: int = Field(ge=0)
    guideline_version: int | None = None
    model_version: int | None = None
    prelabel: LabelScore | None = None
    verified: bool = Field(description="a human checked the model's pre-label for this item")
    golden: bool = Field(default=False, description="a golden-set item: for evaluation, never for training")
    spans: Spans | None = Field(default=None, description="spans projects: the final entities")


class QcFlagged(Envelope):
    """Something a labelling lead should look at: a subject, a kind, and the evidence."""

    TOPIC: ClassVar[str] = "qc.flagged"
    type: Literal["qc.flagged"] = "qc.flagged"
    subject: FlagSubject
    subject_id: str
    kind: FlagKind
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.item_id or f"{self.subject}:{self.subject_id}"


class EvidenceKind(StrEnum):
    LABELLED = "labelled"  # a human label (an annotator's counts: ordinary labels; a project's: every label)
    GOLDEN = "golden"  # an answer to a golden item, `correct` or not
    VERDICT = "verdict"  # an expert upheld (`correct`) or overturned a lone reviewer's label
    FINALIZED = "finalized"  # an item got its first final label
    SPOT_CHECK = "spot_check"  # a human checked a spot-checked auto label: `correct` if they confirmed it


class QcEvidence(Envelope):
    """qc-internal: one fact an item's owner saw that counts towards an annotator's or a project's statistics,
    sent to the owner of that annotator's (or project's) partition, the only writer of those statistics and of
    the annotator's suspension. Its event id derives from the fact, so a fact seen twice is counted once."""

    TOPIC: ClassVar[str] = "qc.evidence"
    type: Literal["qc.evidence"] = "qc.evidence"
    item_id: ItemId
    annotator: str | None = Field(default=None, description="None: the project's own statistics")
    kind: EvidenceKind
    correct: bool | None = None

    @property
    def key(self) -> str:
        return annotator_key(self.project, self.annotator) if self.annotator is not None else self.project


class ArtifactRef(Model):
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_b64: str = Field(description="the artifact itself, so a consumer needs no other service's store")


class ModelUpdated(Envelope):
    """A promoted model version and the thresholds the trainer recommends for it."""

    TOPIC: ClassVar[str] = "model.updated"
    type: Literal["model.updated"] = "model.updated"
    model_version: int = Field(ge=1)
    encoder: str
    artifact: ArtifactRef
    training_set_version: str
    training_set_size: int = Field(ge=0)
    heldout_metrics: dict[str, float] = Field(default_factory=dict)
    calibration: dict[str, float] = Field(default_factory=dict)
    recommended_thresholds: Thresholds

    @property
    def key(self) -> str:
        return self.project


class ThresholdEvidenceKind(StrEnum):
    VERIFIED = "verified"
    RECOMMENDED = "recommended"
    MODEL_FLAGGED = "model_flagged"


class ThresholdEvidence(Envelope):
    """The router's own: one input to a project's thresholds, keyed by project so one replica owns each project.

    verified: a human checked the pre-label of item_id (confidence, correct, weight = 1 / chance it was checked);
    recommended: a new model's recommended thresholds (model_version, recommended, details = held-out metrics);
    model_flagged: qc distrusts the model (reason).
    """

    TOPIC: ClassVar[str] = "threshold.evidence"
    type: Literal["threshold.evidence"] = "threshold.evidence"
    kind: ThresholdEvidenceKind
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    correct: bool | None = None
    weight: float | None = Field(default=None, gt=0.0)
    model_version: int | None = None
    recommended: Thresholds | None = None
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.project


Event = Annotated[
    ProjectConfigured
    | ItemIngested
    | ItemPrelabeled
    | ItemRouted
    | LabelSubmitted
    | LabelFinalized
    | QcFlagged
    | ModelUpdated
    | QcEvidence
    | ThresholdEvidence,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[type[Envelope], ...] = (
    ProjectConfigured,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelSubmitted,
    LabelFinalized,
    QcFlagged,
    ModelUpdated,
    QcEvidence,
    ThresholdEvidence,
)
TOPICS: tuple[str, ...] = tuple(t.TOPIC for t in EVENT_TYPES)
EVENT_BY_TOPIC: dict[str, type[Envelope]] = {t.TOPIC: t for t in EVENT_TYPES}
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: bytes | str) -> Envelope:
    """Decode any labelmesh event from JSON; raises pydantic.ValidationError with the reason."""
    return _event_adapter.validate_json(raw)


class DeadLetter(Model):
    """An event a consumer could not process: where it came from, why, and its original bytes."""

    TOPIC: ClassVar[str] = "deadletter"
    dead_letter_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    original_b64: str


_DERIVED_NS = uuid.UUID("6f1c7a4e-5b1d-4c55-9d0e-2d6a1f0b7c11")


def derived_id(*parts: str) -> str:
    """A deterministic event id for an event caused by another, so a redelivered cause yields the same effect."""
    return uuid.uuid5(_DERIVED_NS, "/".join(parts)).hex
