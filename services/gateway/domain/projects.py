"""Projects: a configuration or guideline text an admin may set, the version it gets, and its project.configured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.events import ProjectConfigured
from schemas.spans import TaskType
from services.gateway.domain import SERVICE
from services.gateway.domain.bounds import GUIDELINES_MAX_CHARS, LABELS_MAX
from services.gateway.domain.refusals import Problems, Refused, invalid

# What a ConfigureProject that leaves them out (proto3: 0) gets: the contract's own defaults.
DEFAULT_MULTI_ANNOTATORS = ProjectConfigured.model_fields["multi_annotators"].default
DEFAULT_TARGET_AUTO_ERROR = ProjectConfigured.model_fields["target_auto_error"].default


def configuration_problems(labels: Sequence[str], guidelines: str, multi_annotators: int,
                           target_auto_error: float) -> Problems:
    """Every problem of a ConfigureProject request, by field."""
    problems: Problems = []
    if len(labels) < 2:
        problems.append(("labels", "a project needs at least two labels"))
    elif len(labels) > LABELS_MAX:
        problems.append(("labels", f"a project has at most {LABELS_MAX} labels"))
    elif len(set(labels)) != len(labels) or any(not label.strip() for label in labels):
        problems.append(("labels", "labels must be distinct and non-empty"))
    if len(guidelines) > GUIDELINES_MAX_CHARS:
        problems.append(("guidelines", f"guidelines are longer than {GUIDELINES_MAX_CHARS} characters"))
    if multi_annotators and not 2 <= multi_annotators <= 9:
        problems.append(("multi_annotators", "multi_annotators must be between 2 and 9"))
    if target_auto_error and not 0 < target_auto_error < 1:
        problems.append(("target_auto_error", "target_auto_error must be in (0, 1)"))
    return problems


def next_version(current: Mapping[str, Any] | None, labels: Sequence[str], guidelines: str) -> int:
    """1 for a new project; the current version again when labels and guidelines stay, else the next one."""
    if current is None:
        return 1
    same = current["labels"] == list(labels) and current["guidelines"] == guidelines
    return current["guideline_version"] + (0 if same else 1)


def task_of(project: Mapping[str, Any]) -> TaskType:
    """A stored project's task type (projects stored before task types are classification projects)."""
    return TaskType(project.get("task") or TaskType.CLASSIFICATION.value)


def task_type(name: str, current: Mapping[str, Any] | None) -> TaskType:
    """ConfigureProject's task_type ("" is classification), or Refused: unknown, or another than the project's.

    A project keeps its task type: its items, labels, models and finals are all of that kind."""
    try:
        task = TaskType(name or TaskType.CLASSIFICATION.value)
    except ValueError:
        raise Refused("invalid", f"task_type {name!r} is not one of {[t.value for t in TaskType]}") from None
    if current is not None and task_of(current) is not task:
        raise Refused("precondition", f"the project is a {task_of(current).value} project; "
                                      f"its task type cannot change to {task.value}")
    return task


def configured(project: str, labels: Sequence[str], guidelines: str, multi_annotators: int, target_auto_error: float,
               current: Mapping[str, Any] | None, task_name: str = "") -> ProjectConfigured:
    """ConfigureProject's event (0 for multi_annotators or target_auto_error: the default), or Refused (invalid)."""
    task = task_type(task_name, current)
    problems = configuration_problems(labels, guidelines, multi_annotators, target_auto_error)
    event = None
    try:
        event = ProjectConfigured(
            producer=SERVICE, project=project, labels=tuple(labels),
            guideline_version=next_version(current, labels, guidelines), guidelines=guidelines,
            multi_annotators=multi_annotators or DEFAULT_MULTI_ANNOTATORS,
            target_auto_error=target_auto_error or DEFAULT_TARGET_AUTO_ERROR, task=task,
        )
    except ValueError as exc:
        problems = problems or [("project", f"invalid project: {exc}")]
    if problems or event is None:
        raise invalid(problems or [("project", "invalid project")])
    return event


def check_guidelines(text: str) -> None:
    if not text.strip():
        raise Refused("invalid", "text is required")
    if len(text) > GUIDELINES_MAX_CHARS:
        raise Refused("invalid", f"text is longer than {GUIDELINES_MAX_CHARS} characters")


def republished(project: str, current: Mapping[str, Any], text: str) -> ProjectConfigured | None:
    """PublishGuidelines' event: the next version with this text, and labels and settings as they are
    (ConfigureProject would reset settings the caller did not send); None for the same text again (a retry)."""
    if text == current["guidelines"]:
        return None
    return ProjectConfigured(
        producer=SERVICE, project=project, labels=tuple(current["labels"]),
        guideline_version=current["guideline_version"] + 1, guidelines=text,
        multi_annotators=current["multi_annotators"], target_auto_error=current["target_auto_error"],
        task=task_of(current),
    )


def wants_current(version: int, current_version: int) -> bool:
    """Whether GetGuidelines asks for the version in force (0 or its number); a negative version is refused."""
    if version < 0:
        raise Refused("invalid", "version must be positive, or 0 for the current one")
    return version in (0, current_version)
