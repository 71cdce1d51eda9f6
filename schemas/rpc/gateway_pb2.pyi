from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListProjectsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects", "next_page_token")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[ProjectDetail]
    next_page_token: str
    def __init__(self, projects: _Optional[_Iterable[_Union[ProjectDetail, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ProjectDetail(_message.Message):
    __slots__ = ("project", "labels", "guideline_version", "guidelines", "multi_annotators", "target_auto_error", "task_type")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GUIDELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GUIDELINES_FIELD_NUMBER: _ClassVar[int]
    MULTI_ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    TARGET_AUTO_ERROR_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    project: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    guideline_version: int
    guidelines: str
    multi_annotators: int
    target_auto_error: float
    task_type: str
    def __init__(self, project: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., guideline_version: _Optional[int] = ..., guidelines: _Optional[str] = ..., multi_annotators: _Optional[int] = ..., target_auto_error: _Optional[float] = ..., task_type: _Optional[str] = ...) -> None: ...

class ProjectStats(_message.Message):
    __slots__ = ("project", "ingested", "golden_items", "routed", "open_items", "final", "final_by_provenance", "human_labels", "golden_answered", "golden_correct", "multi_labelled", "unanimous", "first_final_unix_ms", "last_final_unix_ms", "prelabelled")
    class RoutedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FinalByProvenanceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    OPEN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FINAL_BY_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_CORRECT_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABELLED_FIELD_NUMBER: _ClassVar[int]
    UNANIMOUS_FIELD_NUMBER: _ClassVar[int]
    FIRST_FINAL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_FINAL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    PRELABELLED_FIELD_NUMBER: _ClassVar[int]
    project: str
    ingested: int
    golden_items: int
    routed: _containers.ScalarMap[str, int]
    open_items: int
    final: int
    final_by_provenance: _containers.ScalarMap[str, int]
    human_labels: int
    golden_answered: int
    golden_correct: int
    multi_labelled: int
    unanimous: int
    first_final_unix_ms: int
    last_final_unix_ms: int
    prelabelled: int
    def __init__(self, project: _Optional[str] = ..., ingested: _Optional[int] = ..., golden_items: _Optional[int] = ..., routed: _Optional[_Mapping[str, int]] = ..., open_items: _Optional[int] = ..., final: _Optional[int] = ..., final_by_provenance: _Optional[_Mapping[str, int]] = ..., human_labels: _Optional[int] = ..., golden_answered: _Optional[int] = ..., golden_correct: _Optional[int] = ..., multi_labelled: _Optional[int] = ..., unanimous: _Optional[int] = ..., first_final_unix_ms: _Optional[int] = ..., last_final_unix_ms: _Optional[int] = ..., prelabelled: _Optional[int] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("project", "item_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class AnnotatorLabel(_message.Message):
    __slots__ = ("annotator_id", "label")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    label: str
    def __init__(self, annotator_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class FinalLabel(_message.Message):
    __slots__ = ("project", "item_id", "text", "label", "version", "confidence", "provenance", "model_version", "guideline_version", "annotator_labels", "metadata", "golden", "cursor", "spans")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    GUIDELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    text: str
    label: str
    version: int
    confidence: float
    provenance: str
    model_version: int
    guideline_version: int
    annotator_labels: _containers.RepeatedCompositeFieldContainer[AnnotatorLabel]
    metadata: _containers.ScalarMap[str, str]
    golden: bool
    cursor: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ..., text: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ..., confidence: _Optional[float] = ..., provenance: _Optional[str] = ..., model_version: _Optional[int] = ..., guideline_version: _Optional[int] = ..., annotator_labels: _Optional[_Iterable[_Union[AnnotatorLabel, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., golden: _Optional[bool] = ..., cursor: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class ItemDetail(_message.Message):
    __slots__ = ("project", "item_id", "text", "source", "dataset", "metadata", "golden", "final")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    text: str
    source: str
    dataset: str
    metadata: _containers.ScalarMap[str, str]
    golden: bool
    final: FinalLabel
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ..., text: _Optional[str] = ..., source: _Optional[str] = ..., dataset: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., golden: _Optional[bool] = ..., final: _Optional[_Union[FinalLabel, _Mapping]] = ...) -> None: ...

class ListAnnotatorsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AnnotatorInfo(_message.Message):
    __slots__ = ("annotator_id", "role", "suspended", "revoked", "created_unix_ms", "expires_unix_ms")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    role: str
    suspended: bool
    revoked: bool
    created_unix_ms: int
    expires_unix_ms: int
    def __init__(self, annotator_id: _Optional[str] = ..., role: _Optional[str] = ..., suspended: _Optional[bool] = ..., revoked: _Optional[bool] = ..., created_unix_ms: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ...) -> None: ...

class ListAnnotatorsResponse(_message.Message):
    __slots__ = ("annotators", "next_page_token")
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedCompositeFieldContainer[AnnotatorInfo]
    next_page_token: str
    def __init__(self, annotators: _Optional[_Iterable[_Union[AnnotatorInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeAnnotatorRequest(_message.Message):
    __slots__ = ("annotator_id",)
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    def __init__(self, annotator_id: _Optional[str] = ...) -> None: ...

class ExportFinalLabelsRequest(_message.Message):
    __slots__ = ("project", "cursor", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    cursor: str
    limit: int
    def __init__(self, project: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class IngestItem(_message.Message):
    __slots__ = ("project", "item_id", "text", "source", "dataset", "golden_label", "trusted_label", "metadata", "golden_spans")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_LABEL_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_SPANS_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    text: str
    source: str
    dataset: str
    golden_label: str
    trusted_label: str
    metadata: _containers.ScalarMap[str, str]
    golden_spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ..., text: _Optional[str] = ..., source: _Optional[str] = ..., dataset: _Optional[str] = ..., golden_label: _Optional[str] = ..., trusted_label: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., golden_spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("start", "end", "label", "confidence")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    label: str
    confidence: float
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class IngestItemsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ...) -> None: ...

class IngestItemsResponse(_message.Message):
    __slots__ = ("accepted", "item_ids")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LeaseTaskRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class LabelProbability(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Neighbour(_message.Message):
    __slots__ = ("item_id", "label", "similarity")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    label: str
    similarity: float
    def __init__(self, item_id: _Optional[str] = ..., label: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "project", "item_id", "text", "tier", "prelabel", "neighbours", "reasons", "guideline_version", "lease_expires_unix_ms", "labels", "session_id", "model_version", "spans", "task_type")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRELABEL_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    GUIDELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    project: str
    item_id: str
    text: str
    tier: str
    prelabel: _containers.RepeatedCompositeFieldContainer[LabelProbability]
    neighbours: _containers.RepeatedCompositeFieldContainer[Neighbour]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    guideline_version: int
    lease_expires_unix_ms: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    model_version: int
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    task_type: str
    def __init__(self, task_id: _Optional[str] = ..., project: _Optional[str] = ..., item_id: _Optional[str] = ..., text: _Optional[str] = ..., tier: _Optional[str] = ..., prelabel: _Optional[_Iterable[_Union[LabelProbability, _Mapping]]] = ..., neighbours: _Optional[_Iterable[_Union[Neighbour, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., guideline_version: _Optional[int] = ..., lease_expires_unix_ms: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., model_version: _Optional[int] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., task_type: _Optional[str] = ...) -> None: ...

class SubmitLabelRequest(_message.Message):
    __slots__ = ("task_id", "label", "time_spent_ms", "idempotency_key", "spans")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TIME_SPENT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    label: str
    time_spent_ms: int
    idempotency_key: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, task_id: _Optional[str] = ..., label: _Optional[str] = ..., time_spent_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class SubmitLabelResponse(_message.Message):
    __slots__ = ("submission_id", "duplicate")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    duplicate: bool
    def __init__(self, submission_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SkipTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SkipTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FlagItemRequest(_message.Message):
    __slots__ = ("project", "item_id", "comment")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    comment: str
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class FlagItemResponse(_message.Message):
    __slots__ = ("flag_id",)
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    def __init__(self, flag_id: _Optional[str] = ...) -> None: ...

class GetGuidelinesRequest(_message.Message):
    __slots__ = ("project", "version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    version: int
    def __init__(self, project: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PublishGuidelinesRequest(_message.Message):
    __slots__ = ("project", "text")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    project: str
    text: str
    def __init__(self, project: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Guidelines(_message.Message):
    __slots__ = ("project", "version", "text", "labels")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    project: str
    version: int
    text: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., version: _Optional[int] = ..., text: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigureProjectRequest(_message.Message):
    __slots__ = ("project", "labels", "guidelines", "multi_annotators", "target_auto_error", "task_type")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GUIDELINES_FIELD_NUMBER: _ClassVar[int]
    MULTI_ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    TARGET_AUTO_ERROR_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    project: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    guidelines: str
    multi_annotators: int
    target_auto_error: float
    task_type: str
    def __init__(self, project: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., guidelines: _Optional[str] = ..., multi_annotators: _Optional[int] = ..., target_auto_error: _Optional[float] = ..., task_type: _Optional[str] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("project", "labels", "guideline_version", "task_type")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GUIDELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    project: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    guideline_version: int
    task_type: str
    def __init__(self, project: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., guideline_version: _Optional[int] = ..., task_type: _Optional[str] = ...) -> None: ...

class CreateAnnotatorRequest(_message.Message):
    __slots__ = ("annotator_id", "role", "projects", "expires_unix_ms")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    role: str
    projects: _containers.RepeatedScalarFieldContainer[str]
    expires_unix_ms: int
    def __init__(self, annotator_id: _Optional[str] = ..., role: _Optional[str] = ..., projects: _Optional[_Iterable[str]] = ..., expires_unix_ms: _Optional[int] = ...) -> None: ...

class AnnotatorCredentials(_message.Message):
    __slots__ = ("annotator_id", "role", "token")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    role: str
    token: str
    def __init__(self, annotator_id: _Optional[str] = ..., role: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class GetItemHistoryRequest(_message.Message):
    __slots__ = ("project", "item_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("kind", "at_unix_ms", "detail_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    at_unix_ms: int
    detail_json: str
    def __init__(self, kind: _Optional[str] = ..., at_unix_ms: _Optional[int] = ..., detail_json: _Optional[str] = ...) -> None: ...

class ItemHistory(_message.Message):
    __slots__ = ("project", "item_id", "entries")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class CreateCalibrationSessionRequest(_message.Message):
    __slots__ = ("project", "item_ids", "n", "annotators", "session_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    n: int
    annotators: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    def __init__(self, project: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., annotators: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class CalibrationSession(_message.Message):
    __slots__ = ("session_id", "project", "item_ids", "annotators")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    project: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    annotators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., project: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., annotators: _Optional[_Iterable[str]] = ...) -> None: ...
