"""The qc service: collects labels per item, decides final labels, and tracks annotator quality."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge
from pymongo.errors import DuplicateKeyError

from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    FlagKind,
    FlagSubject,
    ItemIngested,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    LabelSubmitted,
    QcFlagged,
    Tier,
    derived_id,
    utcnow,
)
from services.qc.domain.consensus import decide as weighted_consensus
from services.qc.domain.golden import golden_accuracy, should_flag, smoothed_accuracy
from services.qc.finalize import Escalate, Final, ItemState, Vote, next_step
from services.qc.settings import QcSettings

SERVICE = "qc"
log = logging.getLogger(__name__)


class Qc:
    def __init__(self, rt: ServiceRuntime, settings: QcSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = ProjectCatalog(rt.db)
        self.items = rt.db["items"]
        self.annotators = rt.db["annotators"]
        self.finals = Counter("labelmesh_qc_final_labels_total", "Final labels decided", ["project", "provenance"],
                              registry=rt.registry)
        self.flags = Counter("labelmesh_qc_flags_total", "Flags raised", ["project", "kind"], registry=rt.registry)
        self.golden_accuracy = Gauge("labelmesh_qc_golden_accuracy", "Golden-set accuracy per annotator",
                                     ["project", "annotator"], registry=rt.registry)
        self.spot_accuracy = Gauge("labelmesh_qc_auto_label_accuracy",
                                   "Accuracy of auto labels measured by spot checks", ["project"],
                                   registry=rt.registry)

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        self.rt.bus.subscribe([ItemIngested.TOPIC, ItemRouted.TOPIC, LabelSubmitted.TOPIC], self.on_events)

    async def on_events(self, events: list[Envelope]) -> None:
        out: list[Envelope] = []
        for event in events:
            key = f"{event.project}/{event.item_id}"
            if isinstance(event, ItemIngested):
                await self.items.update_one(
                    {"_id": key},
                    {"$set": {"project": event.project, "item_id": event.item_id,
                              "golden_label": event.golden_label, "trusted_label": event.trusted_label}},
                    upsert=True,
                )
            elif isinstance(event, ItemRouted):
                await self._on_routed(key, event)
            elif isinstance(event, LabelSubmitted):
                await self.catalog.require(event)
                if event.golden:
                    out.extend(await self._on_golden_answer(event))
                    continue
                vote = {"annotator": event.annotator_id, "label": event.label, "expert": event.role == "expert",
                        "guideline_version": event.guideline_version, "time_spent_ms": event.time_spent_ms,
                        "event_id": event.event_id}
                await self.items.update_one(
                    {"_id": key}, {"$setOnInsert": {"project": event.project, "item_id": event.item_id}}, upsert=True
                )
                # $addToSet, not a `votes.event_id $ne` guard: FerretDB 1.24 matches $ne on a path into an
                # array of documents when any element differs, so a redelivered vote was pushed twice.
                await self.items.update_one({"_id": key, "votes.event_id": {"$ne": event.event_id}},
                                            {"$addToSet": {"votes": vote}})
            out.extend(await self._evaluate(key, event))
        await self.rt.bus.publish(out)

    async def _on_routed(self, key: str, event: ItemRouted) -> None:
        top = event.top_k[0] if event.top_k else None
        update: dict[str, Any] = {
            "project": event.project, "item_id": event.item_id, "tier": event.tier.value,
            "required": event.required_annotators, "spot_check": event.spot_check,
            "model_version": event.model_version,
            "prelabel": [top.label, top.probability] if top else None,
        }
        if event.tier is Tier.EXPERT:
            update["escalated"] = True
        await self.items.update_one({"_id": key}, {"$set": update}, upsert=True)

    async def _reliability(self, project: str) -> dict[str, float]:
        reliability = {}
        async for doc in self.annotators.find({"project": project, "golden_n": {"$gt": 0}}):
            # Shrunk towards the prior, so three lucky golden answers do not make anyone infallible.
            reliability[doc["annotator"]] = smoothed_accuracy(doc["golden_correct"], doc["golden_n"])
        return reliability

    async def _evaluate(self, key: str, cause: Envelope) -> list[Envelope]:
        doc = await self.items.find_one({"_id": key})
        if doc is None:
            return []
        state = ItemState(
            trusted_label=doc.get("trusted_label"),
            golden_label=doc.get("golden_label"),
            tier=Tier(doc["tier"]) if doc.get("tier") else None,
            required=doc.get("required", 0),
            spot_check=doc.get("spot_check", False),
            escalated=doc.get("escalated", False),
            prelabel=tuple(doc["prelabel"]) if doc.get("prelabel") else None,
            votes=tuple(Vote(v["annotator"], v["label"], v["expert"]) for v in doc.get("votes", [])),
            final_label=(doc.get("final") or {}).get("label"),
        )
        reliability = await self._reliability(doc["project"])
        config = await self.catalog.get(doc["project"])
        n_classes = len(config.labels) if config else None

        def consensus(votes: Sequence[tuple[str, str]], rel: Mapping[str, float]) -> tuple[str, float, bool]:
            result = weighted_consensus(votes, rel, min_confidence=self.settings.min_consensus_confidence,
                                        n_classes=n_classes)
            return result.label, result.confidence, result.resolved

        step = next_step(state, reliability, consensus)
        if isinstance(step, Final):
            final = doc.get("final")
            if final and final["label"] == step.label and final["provenance"] == step.provenance.value:
                return []
            return [await self._finalize(doc, step, cause)]
        if isinstance(step, Escalate) and not doc.get("escalated"):
            await self.items.update_one({"_id": key}, {"$set": {"escalated": True}})
            self.flags.labels(doc["project"], FlagKind.DISAGREEMENT.value).inc()
            # Derived from the item, not the cause: a replay may escalate on another event, and must not
            # publish a second flag (the router would re-route the item to an expert again).
            flag: list[Envelope] = [QcFlagged(
                event_id=derived_id(key, "escalated"), producer=SERVICE, project=doc["project"],
                item_id=doc["item_id"], subject=FlagSubject.ITEM, subject_id=doc["item_id"],
                kind=FlagKind.DISAGREEMENT, message=step.reason, evidence=step.evidence,
                correlation_id=cause.correlation_id,
            )]
            if any(v.expert for v in state.votes):
                # Replayed out of order, the expert's answer can already be here: decide now, or never.
                return flag + await self._evaluate(key, cause)
            return flag
        return []

    async def _finalize(self, doc: dict[str, Any], step: Final, cause: Envelope) -> LabelFinalized:
        previous = doc.get("final")
        version = previous["version"] + 1 if previous else 1
        votes = doc.get("votes", [])
        prelabel = doc.get("prelabel")
        guideline_versions = [v["guideline_version"] for v in votes if v.get("guideline_version")]
        event = LabelFinalized(
            event_id=derived_id(doc["_id"], "final", str(version)),
            producer=SERVICE, project=doc["project"], item_id=doc["item_id"], label=step.label, version=version,
            provenance=step.provenance, confidence=min(1.0, max(0.0, step.confidence)),
            human_labels=sum(1 for v in votes if not v["expert"]), expert_labels=sum(1 for v in votes if v["expert"]),
            guideline_version=max(guideline_versions) if guideline_versions else None,
            model_version=doc.get("model_version"),
            prelabel=LabelScore(label=prelabel[0], probability=prelabel[1]) if prelabel else None,
            verified=step.verified, golden=bool(doc.get("golden_label")), correlation_id=cause.correlation_id,
        )
        final = {"label": event.label, "version": version, "provenance": event.provenance.value,
                 "confidence": event.confidence, "at": utcnow(), "event_id": event.event_id}
        await self.items.update_one({"_id": doc["_id"]}, {"$set": {"final": final}, "$push": {"history": final}})
        self.finals.labels(event.project, event.provenance.value).inc()
        if doc.get("tier") == Tier.AUTO.value and doc.get("spot_check") and prelabel and step.verified:
            await self._record_spot_check(doc["project"], prelabel[0] == step.label)
        return event

    async def _record_spot_check(self, project: str, correct: bool) -> None:
        stats = await self.rt.db["spot_checks"].find_one_and_update(
            {"_id": project}, {"$inc": {"n": 1, "correct": int(correct)}}, upsert=True, return_document=True
        )
        self.spot_accuracy.labels(project).set(stats["correct"] / stats["n"])

    async def _on_golden_answer(self, event: LabelSubmitted) -> list[Envelope]:
        item = await self.items.find_one({"_id": f"{event.project}/{event.item_id}"})
        if item is None or not item.get("golden_label"):
            log.warning("golden answer for %s which qc does not know as golden", event.item_id)
            return []
        correct = item["golden_label"] == event.label
        key = {"_id": f"{event.project}/{event.annotator_id}"}
        try:
            stats = await self.annotators.find_one_and_update(
                {**key, "golden_events": {"$ne": event.event_id}},
                {"$inc": {"golden_n": 1, "golden_correct": int(correct)}, "$push": {"golden_events": event.event_id},
                 "$set": {"project": event.project, "annotator": event.annotator_id}},
                upsert=True, return_document=True,
            )
        except DuplicateKeyError:
            # Already counted (a redelivery after a crash): the guard did not match, so the upsert collided.
            stats = await self.annotators.find_one(key)
        acc = golden_accuracy(stats["golden_correct"], stats["golden_n"])
        self.golden_accuracy.labels(event.project, event.annotator_id).set(acc.accuracy)
        if stats.get("suspended") or not should_flag(
            acc, threshold=self.settings.golden_accuracy_threshold, min_evidence=self.settings.golden_min_evidence
        ):
            return []
        await self.annotators.update_one(key, {"$set": {"suspended": True, "suspended_at": utcnow()}})
        self.flags.labels(event.project, FlagKind.ANNOTATOR_SUSPENDED.value).inc()
        return [QcFlagged(
            event_id=derived_id(event.event_id, "suspended"), producer=SERVICE, project=event.project,
            subject=FlagSubject.ANNOTATOR, subject_id=event.annotator_id, kind=FlagKind.ANNOTATOR_SUSPENDED,
            message=(f"golden accuracy {acc.accuracy:.0%} over {acc.n} items (upper bound {acc.upper:.0%}) "
                     f"is below {self.settings.golden_accuracy_threshold:.0%}"),
            evidence={"golden_n": acc.n, "golden_correct": stats["golden_correct"], "upper": acc.upper},
        )]


def create_app(settings: QcSettings | None = None) -> ServiceRuntime:
    settings = settings or QcSettings()
    rt = ServiceRuntime(SERVICE, settings)
    qc = Qc(rt, settings)
    qc.wire()
    rt.component = qc
    return rt
