"""ProjectCatalog's rules, with the database replaced by a stub that knows no project."""

from __future__ import annotations

from typing import Any

import pytest

from labelmesh.runtime.bus import PoisonEvent
from labelmesh.runtime.projects import ProjectCatalog
from schemas.events import ItemIngested, ProjectConfigured, TextPayload


class NoProjects:
    def __init__(self) -> None:
        self.lookups = 0

    async def find_one(self, *args: Any, **kwargs: Any) -> None:
        self.lookups += 1


def _catalog(wait_s: float) -> tuple[ProjectCatalog, NoProjects]:
    collection = NoProjects()
    return ProjectCatalog({"projects": collection}, wait_s=wait_s), collection  # type: ignore[arg-type]


def _item(project: str) -> ItemIngested:
    return ItemIngested(producer="t", project=project, item_id="i", payload=TextPayload(text="x"))


async def test_an_unknown_project_costs_one_wait_not_one_per_event() -> None:
    catalog, collection = _catalog(wait_s=0.3)
    with pytest.raises(PoisonEvent):
        await catalog.require(_item("ghost"))
    assert collection.lookups > 1  # it waited
    collection.lookups = 0
    with pytest.raises(PoisonEvent):
        await catalog.require(_item("ghost"))
    assert collection.lookups == 1  # one look, no second wait


async def test_the_cache_keeps_the_newest_guideline_version_whatever_the_order() -> None:
    catalog, _ = _catalog(wait_s=0.0)
    v1, v2 = (ProjectConfigured(producer="t", project="p", labels=("a", "b"), guideline_version=v) for v in (1, 2))
    await catalog.learn([v2, v1])
    assert (await catalog.require(_item("p"))).guideline_version == 2
    await catalog.learn([ProjectConfigured(producer="t", project="ghost", labels=("a", "b"), guideline_version=1)])
    assert (await catalog.require(_item("ghost"))).project == "ghost"
