"""The gateway's outbox relay: labels, items and project configurations stored but not published get published.

SubmitLabel (before it finishes the lease), IngestItems/IngestStream and ConfigureProject/PublishGuidelines add
their events to the outbox (labelmesh/runtime/outbox.py) before they store what they announce. What the relay
finds there a while later was left by a gateway that died or failed to publish; it publishes it only if what it
announces was stored.
"""

from __future__ import annotations

from typing import Any

from schemas.events import Envelope, ItemIngested, LabelSubmitted, ProjectConfigured
from services.gateway.api import Gateway
from services.gateway.queue import LeaseError
from services.gateway.store import history


class GatewayRelay:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def run_once(self) -> int:
        """One pass over the outbox; how many events it published."""
        return await self.gw.outbox.relay(self.gw.settings.relay_after_s,
                                          {"submission": self._submission, "project": self._project,
                                           "ingest": self._ingested},
                                          {"submission": self._submissions_published,
                                           "ingest": self._ingests_published})

    async def _submission(self, rec: dict[str, Any]) -> Envelope | None:
        doc = rec["doc"]
        published = await self.gw.submissions.published(doc["_id"])
        if published is None:
            # The call died before it stored the submission, maybe before it finished the lease: finished here as
            # the client's retry would (the same submission finishing it again goes through). Refused, the label
            # does not stand (the lease expired, or was skipped) and the record goes.
            lease = await self.gw.queue.get_lease(doc["lease_id"])
            if lease is None:
                return None
            try:
                await self.gw.queue.finish(lease, "submitted", submission=doc["_id"])
            except LeaseError:
                return None
            await self.gw.submissions.insert_new([doc])
        elif published:
            return None  # a retry published it
        return LabelSubmitted.model_validate_json(rec["event"])

    async def _submissions_published(self, recs: list[dict[str, Any]]) -> None:
        await self.gw.submissions.mark_published([r["doc"]["_id"] for r in recs])
        await self.gw.history.add([r["history"] for r in recs])

    async def _project(self, rec: dict[str, Any]) -> Envelope | None:
        event = ProjectConfigured.model_validate_json(rec["event"])
        if not await self.gw.projects.holds(event):
            # Never stored (the call died before it), or replaced by a later configuration, announced by its own
            # record: publishing this one now would announce an older configuration after the newer one.
            return None
        await self.gw.projects.keep_guideline_version(event)
        return event

    async def _ingested(self, rec: dict[str, Any]) -> Envelope | None:
        event = ItemIngested.model_validate_json(rec["event"])
        if not await self.gw.items.stored_as(event):
            return None  # never stored (the call died before), or stored with the content of another call
        return event

    async def _ingests_published(self, recs: list[dict[str, Any]]) -> None:
        await self.gw.history.add([history.ingested(ItemIngested.model_validate_json(r["event"])) for r in recs])
