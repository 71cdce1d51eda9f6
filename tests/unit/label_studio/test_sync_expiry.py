"""The sync deletes Label Studio tasks whose labelmesh lease expired before anyone answered them (on its clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labelmesh.label_studio.config import BridgeConfig
from labelmesh.label_studio.sync import expired, sync


class FakeLabelStudio:
    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.listed = tasks
        self.deleted: list[int] = []

    async def tasks(self, project_id: int) -> list[dict[str, Any]]:
        return self.listed

    async def delete_task(self, task_id: int) -> None:
        self.deleted.append(task_id)


def _task(ls_id: int, expires: int, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": ls_id, "annotations": annotations or [],
            "data": {"labelmesh_task_id": f"t{ls_id}", "labelmesh_lease_expires_unix_ms": expires}}


def test_only_an_unanswered_task_past_its_lease_has_expired() -> None:
    assert expired(_task(1, 1000), now_ms=1001)
    assert not expired(_task(1, 1000), now_ms=1000)
    assert not expired(_task(1, 1000, [{"id": 3}]), now_ms=5000)  # answered: the sync submits it, or says why not
    assert not expired({"id": 1, "data": {"text": "not ours"}}, now_ms=5000)


async def test_the_sync_deletes_expired_tasks(tmp_path: Path) -> None:
    config = BridgeConfig(project="p", label_studio_url="http://ls", ls_project_id=1,
                          ledger=str(tmp_path / "ledger.sqlite"))
    ls = FakeLabelStudio([_task(1, 1000), _task(2, 9000), _task(3, 1000, [{"id": 7, "was_cancelled": False}])])
    report = await sync(config, ls, per_annotator=1, now_ms=lambda: 5000)  # type: ignore[arg-type]
    assert ls.deleted == [1] and report.expired == 1
