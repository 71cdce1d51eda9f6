"""The backend's /webhook on deletions (ANNOTATION_DELETED and Label Studio's ANNOTATIONS_DELETED): an annotation
labelmesh received stays submitted, and its item is flagged once Label Studio confirms it is gone; anything else
(never submitted, a skip, still there, already flagged) is ignored, by name. Stand-ins for Label Studio's API and
the gateway client; tests/e2e/test_label_studio.py deletes a real annotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request

from labelmesh.label_studio.backend import Bridge
from labelmesh.label_studio.config import BridgeConfig, MappedUser
from labelmesh.label_studio.ledger import Submitted


class Flags:
    def __init__(self) -> None:
        self.flags: list[tuple[str, str, str]] = []

    async def flag(self, project: str, comment: str, item_id: str = "") -> str:
        self.flags.append((project, item_id, comment))
        return f"f{len(self.flags)}"


class StillThere:
    """Label Studio's API: which annotations still exist."""

    def __init__(self, existing: set[int]) -> None:
        self.existing = existing

    async def annotation(self, annotation_id: int) -> dict[str, Any] | None:
        return {"id": annotation_id} if annotation_id in self.existing else None

    async def close(self) -> None:
        pass


async def _webhook(bridge: Bridge, body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    answer = await bridge.webhook(Request({"type": "http", "method": "POST", "path": "/webhook", "headers": []},
                                          receive))
    assert answer.status_code == 200
    return json.loads(answer.body)


async def test_a_deleted_annotation_flags_its_item_once_and_anything_else_is_ignored(tmp_path: Path) -> None:
    config = BridgeConfig(project="p", label_studio_url="http://ls", ls_project_id=1, gateway="127.0.0.1:1",
                          ledger=str(tmp_path / "ledger.sqlite"),
                          users=[MappedUser(email="a@x.io", ls_user_id=2, annotator="alice", token="ta")])
    bridge = Bridge(config, "pat")
    flags = Flags()
    bridge.submitter.clients["alice"] = flags  # type: ignore[assignment]
    bridge.ls = StillThere(existing={7})  # type: ignore[assignment]
    bridge.ledger.record(Submitted(5, "p", "i5", "t5", "alice", "pos", "s5", False))
    bridge.ledger.record(Submitted(6, "p", "i6", "t6", "alice", "", "", False))  # a skip
    bridge.ledger.record(Submitted(7, "p", "i7", "t7", "alice", "neg", "s7", False))
    try:
        answer = await _webhook(bridge, {"action": "ANNOTATION_DELETED", "annotation": {"id": 5}})
        assert answer == {"status": "flagged", "flags": ["f1"], "ignored": []}
        [(project, item, comment)] = flags.flags
        assert (project, item) == ("p", "i5") and "annotation 5 ('pos') was deleted in Label Studio" in comment
        assert bridge.ledger.get(5).label == "pos", "the submitted label stays"

        answer = await _webhook(bridge, {"action": "ANNOTATIONS_DELETED",
                                         "annotations": [{"id": 5}, {"id": 6}, {"id": 7}, {"id": 8}]})
        assert answer == {"status": "ignored", "flags": [], "ignored": [5, 6, 7, 8]}
        assert len(flags.flags) == 1 and bridge.counts["flagged"] == 1
    finally:
        await bridge.close()
