"""The qc service: collects labels per item, decides final labels, and tracks annotator and label quality."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymongo import ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from labelmesh.neighbours import LabelledIndex
from labelmesh.runtime.inbox import recovering
from labelmesh.runtime.mongo import bulk_write, find_by_ids, upsert_many
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    FlagKind,
    FlagSubject,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    LabelSubmitted,
    Provenance,
    QcFlagged,
    Tier,
    derived_id,
    parse_event,
    utcnow,
)
from services.qc.domain.consensus import decide as weighted_consensus
from services.qc.domain.consensus import majority_vote
from services.qc.domain.golden import golden_accuracy, should_flag
from services.qc.domain.knn_check import knn_check
from services.qc.domain.reliability import DEFAULT_MIN_DS_ITEMS
from services.qc.domain.reliability import reliability as annotator_reliability
from services.qc.domain.verdicts import Verdict, lone_reviewer_verdict
from services.qc.finalize import Escalate, Final, ItemState, ReviewPolicy, Vote, next_step
from services.qc.metrics import QcMetrics
from services.qc.passes import SERVICE, Passes, flag
from services.qc.settings import QcSettings

log = logging.getLogger(__name__)


def _outbox(cause: Envelope, events: Sequence[Envelope]) -> dict[str, Any]:
    """Stored in the same write as the decision it announces: what to publish again if the process dies
    between that write and the publish (labelmesh.runtime.inbox's in-flight list says when)."""
    # JSON text, not documents: FerretDB 1.24 rejects nested arrays, which a flag's evidence can hold.
    # Which event caused a decision depends on how the stream was batched: kept out of the state proper
    # (labelmesh.state_digest treats `outbox` as volatile), so a replay still rebuilds equal state.
    return {"outbox": {"cause": cause.event_id, "events": [e.model_dump_json() for e in events]}}


def _unpack(outbox: Mapping[str, Any] | None) -> list[Envelope]:
    return [parse_event(raw) for raw in (outbox or {}).get("outbox", {}).get("events", [])]


def _crossed(new: int, added: int, every: int) -> bool:
    """Did a counter that just grew by `added` to `new` pass a multiple of `every`?"""
    return every > 0 and added > 0 and new // every > (new - added) // every


def _growing_pass(new: int, added: int, every: int, growth: float) -> int | None:
    """The number of the last pass due at a point in (new - added, new], or None. The points are `every`, then
    each at least `every` after the last and at least `growth` times larger: multiples of `every` while the
    project is small, then geometric, so a pass that reads all of a project's items costs O(n log n) in all
    over its life instead of O(n^2). growth=0 gives the multiples of `every` (pass k at k * every)."""
    if every <= 0 or added <= 0 or new < every:
        return None
    point, number, last = every, 1, None
    while point <= new:
        if point > new - added:
            last = number
        point = max(point + every, math.ceil(point * (1 + growth)))
        number += 1
    return last


class Qc:
    def __init__(self, rt: ServiceRuntime, settings: QcSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = ProjectCatalog(rt.db)
        self.items = rt.db["items"]
        self.annotators = rt.db["annotators"]
        self.labels = rt.db["labels"]
        self.metrics = QcMetrics(rt.registry)
        self.passes = Passes(rt.db, settings, self.metrics)
        self.indexes: dict[str, LabelledIndex] = {}
        self.final_items: dict[str, int] = {}  # per project; see _periodic

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        self.rt.bus.subscribe([ItemIngested.TOPIC, ItemPrelabeled.TOPIC, ItemRouted.TOPIC, LabelSubmitted.TOPIC],
                              self.on_events)
        self.rt.on_start.append(self.restore)

    async def restore(self) -> None:
        """Rebuild the labelled-embedding index from qc's own items."""
        async for doc in self.items.find({"final": {"$exists": True}, "embedding": {"$exists": True}},
                                         {"project": 1, "item_id": 1, "final.label": 1, "embedding": 1}):
            self._index(doc["project"]).upsert(doc["item_id"], doc["final"]["label"],
                                               np.frombuffer(doc["embedding"], np.float32))

    def _index(self, project: str) -> LabelledIndex:
        return self.indexes.setdefault(project, LabelledIndex())

    async def on_events(self, events: list[Envelope]) -> None:
        """Each event in order, decided right after it is applied, exactly as if it had come alone.

        The decision after each event (not once per batch) keeps the outcome independent of how the
        stream was cut into batches, which a replay or a redelivery changes (tests/integration/test_idempotency).
        """
        out: list[Envelope] = await self._republish(recovering.get())
        labels: Counter[str] = Counter()
        by_annotator: Counter[tuple[str, str]] = Counter()
        finals: Counter[str] = Counter()
        run: list[Envelope] = []  # consecutive item facts, each item at most once
        run_keys: set[str] = set()

        def take(decided: list[Envelope]) -> None:
            finals.update(e.project for e in decided if isinstance(e, LabelFinalized) and e.version == 1)
            out.extend(decided)

        async def flush() -> None:
            if run:
                take(await self._apply_facts_and_evaluate(run))
                run.clear()
                run_keys.clear()

        for event in events:
            key = f"{event.project}/{event.item_id}"
            if not isinstance(event, LabelSubmitted):
                if key in run_keys:
                    await flush()  # the item's earlier fact is decided on first, as if it had come alone
                run.append(event)
                run_keys.add(key)
                continue
            await flush()
            await self.catalog.require(event)
            labels[event.project] += 1
            if event.role != "expert":
                by_annotator[(event.project, event.annotator_id)] += 1
            item = await self.items.find_one({"_id": key})
            if event.golden:
                out.extend(await self._on_golden_answer(key, event, item))
                continue
            if event.session_id:
                # A calibration label measures how annotators agree (qc-report --session); not a vote on the item.
                await self.labels.replace_one({"_id": event.event_id}, self._label_doc(event, item), upsert=True)
                continue
            out.extend(await self._on_labels([event], {key: item} if item else {}))
            take(await self._evaluate_many({key: event}))
        await flush()
        out.extend(await self._periodic(labels, by_annotator, finals))
        await self._record_flags([e for e in out if isinstance(e, QcFlagged)])
        await self.rt.bus.publish(out)

    async def _republish(self, causes: frozenset[str]) -> list[Envelope]:
        """Decisions stored for events a killed process was handling, published again (same event ids).

        Handling one of them again finds its decision already stored and, without this, would not announce
        it: the final label, escalation or suspension would never leave qc. Only after a crash, so the scans
        (no index on these fields) cost nothing in normal running.
        """
        if not causes:
            return []
        ids = list(causes)
        out: list[Envelope] = []
        async for doc in self.items.find({"final.outbox.cause": {"$in": ids}}, {"final": 1}):
            out.extend(_unpack(doc["final"]))
        async for doc in self.items.find({"escalation.outbox.cause": {"$in": ids}}, {"escalation": 1}):
            out.extend(_unpack(doc["escalation"]))
        async for doc in self.annotators.find({"suspension.outbox.cause": {"$in": ids}}, {"suspension": 1}):
            out.extend(_unpack(doc["suspension"]))
        log.warning("republishing %d decisions stored for %d interrupted events", len(out), len(causes))
        return out

    # --- applying events ---------------------------------------------------------------------------------
    async def _apply_facts_and_evaluate(self, run: list[Envelope]) -> list[Envelope]:
        """item.ingested, item.prelabeled and item.routed of distinct items: stored together, then each item
        decided on in stream order, with the same outcome as one event at a time.

        An item's decision reads only its own document, the annotators' reliability (which item facts do
        not change) and the labelled-embedding index, which is updated in stream order below; so storing
        the run's facts first changes nothing but the number of round trips. A run was three commands per
        event (a write, a read back, the annotators): most of the database time of a burst.
        """
        sets: dict[str, dict[str, Any]] = {}
        vectors: dict[str, np.ndarray] = {}
        touched: dict[str, Envelope] = {}
        for event in run:
            if not isinstance(event, (ItemIngested, ItemPrelabeled, ItemRouted)):
                continue
            key = f"{event.project}/{event.item_id}"
            update = sets.setdefault(key, {"project": event.project, "item_id": event.item_id})
            if isinstance(event, ItemIngested):
                update |= {"golden_label": event.golden_label, "trusted_label": event.trusted_label}
                touched[key] = event
            elif isinstance(event, ItemPrelabeled):
                update["top_k"] = [s.model_dump() for s in event.top_k]
                vector = np.asarray(event.embedding, dtype=np.float32)
                if vector.size:
                    update["embedding"] = vector.tobytes()
                    vectors[key] = vector
            elif isinstance(event, ItemRouted):
                top = event.top_k[0] if event.top_k else None
                update |= {"tier": event.tier.value, "required": event.required_annotators,
                           "spot_check": event.spot_check, "model_version": event.model_version,
                           "prelabel": [top.label, top.probability] if top else None,
                           "routed_top_k": [s.model_dump() for s in event.top_k]}
                if event.tier is Tier.EXPERT:
                    update["escalated"] = True
                touched[key] = event
        keys = list(sets)
        # A new item's document is exactly what was inserted; only those stored before are read back.
        existed = {keys[i] for i in await upsert_many(self.items, [{"_id": k, **v} for k, v in sets.items()],
                                                      merge=True)}
        docs = {k: {"_id": k, **v} for k, v in sets.items() if k not in existed}
        docs |= {d["_id"]: d for d in await find_by_ids(self.items, [k for k in keys if k in existed])}
        reliability = {p: await self._reliability(p) for p in {docs[k]["project"] for k in touched}}
        out: list[Envelope] = []
        writes: list[UpdateOne] = []  # final labels, written together (one per item)
        for key in keys:  # stream order
            doc = docs[key]
            if key in vectors and "final" in doc:  # a final label can arrive before the embedding
                self._index(doc["project"]).upsert(doc["item_id"], doc["final"]["label"], vectors[key])
            if key in touched:
                out.extend(await self._evaluate(doc, touched[key], reliability[doc["project"]], writes))
        await self._bulk(self.items, writes)
        return out

    @staticmethod
    async def _bulk(collection: Any, ops: list[Any]) -> None:
        await bulk_write(collection, ops, ordered=False)

    @staticmethod
    def _label_doc(event: LabelSubmitted, item: Mapping[str, Any] | None) -> dict[str, Any]:
        """One document per human label: the sequences agreement, drift and the calibration report read.

        Only what the event says: anything taken from the item (its pre-label) would depend on whether
        item.routed happened to be consumed first, and a replay would rebuild different documents.
        """
        return {"project": event.project, "item_id": event.item_id, "annotator": event.annotator_id,
                "label": event.label, "expert": event.role == "expert", "golden": event.golden,
                "time_spent_ms": event.time_spent_ms, "session": event.session_id, "at": event.occurred_at}

    async def _on_labels(self, events: list[LabelSubmitted], items: dict[str, Any]) -> list[Envelope]:
        """Store the votes; an item labelled by a suspended annotator goes to an expert."""
        if not events:
            return []
        await self._bulk(self.labels, [ReplaceOne({"_id": e.event_id}, self._label_doc(e, items.get(
            f"{e.project}/{e.item_id}")), upsert=True) for e in events])
        # One $push per item, votes already stored left out (a redelivered batch after a partial write).
        pushes: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            key = f"{e.project}/{e.item_id}"
            known = {v["event_id"] for v in items.get(key, {}).get("votes", [])}
            if e.event_id not in known:
                pushes.setdefault(key, []).append(
                    {"annotator": e.annotator_id, "label": e.label, "expert": e.role == "expert",
                     "guideline_version": e.guideline_version, "time_spent_ms": e.time_spent_ms,
                     "event_id": e.event_id, "at": e.occurred_at, "project": e.project, "item_id": e.item_id})
        await self._bulk(self.items, [UpdateOne(
            {"_id": key}, {"$push": {"votes": {"$each": [{k: v for k, v in vote.items() if k not in (
                "project", "item_id")} for vote in votes]}},
             "$set": {"project": votes[0]["project"], "item_id": votes[0]["item_id"]}}, upsert=True)
            for key, votes in pushes.items()])
        suspended = {(d["project"], d["annotator"]) async for d in self.annotators.find(
            {"project": {"$in": list({e.project for e in events})}, "suspended": True}, {"project": 1, "annotator": 1})}
        out: list[Envelope] = []
        for e in events:
            key = f"{e.project}/{e.item_id}"
            if e.role == "expert" or (e.project, e.annotator_id) not in suspended or items.get(key, {}).get(
                    "escalated"):
                continue
            review = self._review_flag(e.project, e.item_id, e.annotator_id, e.label,
                                       "label arrived after its annotator was suspended", {})
            await self.items.update_one({"_id": key}, {"$set": {"escalated": True, "escalation": _outbox(e, [review])}})
            out.append(review)
        return out

    def _review_flag(self, project: str, item_id: str, annotator: str, label: str, why: str,
                     evidence: dict[str, Any]) -> QcFlagged:
        return flag(project, FlagKind.SUSPENDED_ANNOTATOR_LABEL, FlagSubject.ITEM, item_id,
                    f"labelled {label!r} by {annotator}, who is suspended: {why}; back for review",
                    {"annotator": annotator, "label": label, **evidence}, cause=(item_id, annotator), item_id=item_id)

    async def _reliability(self, project: str) -> dict[str, float]:
        """Annotators with evidence (golden answers or a Dawid-Skene estimate); the others get consensus' default."""
        return {
            doc["annotator"]: annotator_reliability(doc.get("golden_correct", 0), doc.get("golden_n", 0),
                                                    doc.get("ds_accuracy"), doc.get("ds_items", 0))
            async for doc in self.annotators.find({"project": project})
            if doc.get("golden_n", 0) > 0 or doc.get("ds_items", 0) >= DEFAULT_MIN_DS_ITEMS
        }

    async def _evaluate_many(self, touched: dict[str, Envelope]) -> list[Envelope]:
        if not touched:
            return []
        docs = await find_by_ids(self.items, list(touched))
        reliability = {p: await self._reliability(p) for p in {d["project"] for d in docs}}
        out: list[Envelope] = []
        writes: list[UpdateOne] = []  # final labels, written together (one per item)
        for doc in docs:
            out.extend(await self._evaluate(doc, touched[doc["_id"]], reliability[doc["project"]], writes))
        await self._bulk(self.items, writes)
        return out

    async def _evaluate(self, doc: dict[str, Any], cause: Envelope, reliability: dict[str, float],
                        writes: list[UpdateOne]) -> list[Envelope]:
        key = doc["_id"]
        state = ItemState(
            trusted_label=doc.get("trusted_label"),
            golden_label=doc.get("golden_label"),
            tier=Tier(doc["tier"]) if doc.get("tier") else None,
            required=doc.get("required", 0),
            spot_check=doc.get("spot_check", False),
            escalated=doc.get("escalated", False),
            prelabel=tuple(doc["prelabel"]) if doc.get("prelabel") else None,
            top_k=tuple((s["label"], s["probability"]) for s in doc.get("routed_top_k") or ()),
            votes=tuple(Vote(v["annotator"], v["label"], v["expert"]) for v in doc.get("votes", [])),
            final_label=(doc.get("final") or {}).get("label"),
        )
        config = await self.catalog.get(doc["project"])
        n_classes = len(config.labels) if config else None

        def consensus(votes: Sequence[tuple[str, str]], rel: Mapping[str, float]) -> tuple[str, float, bool]:
            result = weighted_consensus(votes, rel, min_confidence=self.settings.min_consensus_confidence,
                                        n_classes=n_classes)
            return result.label, result.confidence, result.resolved

        review = ReviewPolicy(n_classes, self.settings.min_single_confidence, self.settings.shown_error_share) \
            if self.settings.review_with_model and n_classes and n_classes >= 2 else None
        step = next_step(state, reliability, consensus, confirm_single=self.settings.confirm_single, review=review)
        human = [(v.annotator, v.label) for v in state.votes if not v.expert]
        majority = majority_vote(human) if human else None
        if isinstance(step, Final):
            final = doc.get("final")
            if final and final["label"] == step.label and final["provenance"] == step.provenance.value:
                return []
            if step.provenance in (Provenance.SINGLE_REVIEW, Provenance.CONSENSUS):
                held = await self._knn_check(doc, step.label, cause)
                if held is not None:
                    return [held]
            verdict = lone_reviewer_verdict(state.votes) if step.provenance in (
                Provenance.EXPERT, Provenance.CORRECTED) else None
            suspension = await self._on_verdict(cause, doc["project"], key, verdict) if verdict else []
            return [await self._finalize(doc, step, cause, majority, writes), *suspension]
        if isinstance(step, Escalate) and not doc.get("escalated"):
            evidence = dict(step.evidence)
            if majority is not None:
                evidence["majority"] = {"label": majority.label, "count": majority.count, "tied": list(majority.tied)}
            # Derived from the item, not the cause: a replay may escalate on another event, and must not
            # publish a second flag (the router would re-route the item to an expert again).
            flagged: list[Envelope] = [QcFlagged(
                event_id=derived_id(key, "escalated"), producer=SERVICE, project=doc["project"],
                item_id=doc["item_id"], subject=FlagSubject.ITEM, subject_id=doc["item_id"],
                kind=FlagKind.DISAGREEMENT, message=step.reason, evidence=evidence,
                correlation_id=cause.correlation_id,
            )]
            await self.items.update_one({"_id": key}, {"$set": {"escalated": True,
                                                                "escalation": _outbox(cause, flagged)}})
            if any(v.expert for v in state.votes):
                # Replayed out of order, the expert's answer can already be here: decide now, or never.
                return flagged + await self._evaluate({**doc, "escalated": True}, cause, reliability, writes)
            return flagged
        return []

    async def _knn_check(self, doc: dict[str, Any], label: str, cause: Envelope) -> QcFlagged | None:
        """Before a human label becomes final: do the most similar labelled items agree? If not, an expert looks."""
        index = self._index(doc["project"])
        if "embedding" not in doc or doc.get("knn_flagged") or len(index) < self.settings.knn_k:
            return None
        matrix, labels, ids = index.rows()
        finding = knn_check(np.frombuffer(doc["embedding"], np.float32), label, matrix, labels, ids,
                            item_id=doc["item_id"], k=self.settings.knn_k, threshold=self.settings.knn_threshold,
                            min_similarity=self.settings.knn_min_similarity)
        if not finding.flagged:
            return None
        held = flag(
            doc["project"], FlagKind.KNN_INCONSISTENCY, FlagSubject.ITEM, doc["item_id"], finding.message,
            {"label": label,
             "votes": [{"annotator": v["annotator"], "label": v["label"]} for v in doc.get("votes", [])],
             "majority_label": finding.majority_label, "majority_share": finding.majority_share,
             "agreeing_share": finding.agreeing_share, "k": finding.k,
             "neighbours": [{"item_id": i, "label": lbl, "similarity": s} for i, lbl, s in
                            zip(finding.neighbour_ids, finding.neighbour_labels, finding.similarities, strict=True)]},
            cause=(doc["item_id"], label), item_id=doc["item_id"], correlation_id=cause.correlation_id,
        )
        await self.items.update_one({"_id": doc["_id"]}, {"$set": {"escalated": True, "knn_flagged": True,
                                                                   "escalation": _outbox(cause, [held])}})
        return held

    async def _finalize(self, doc: dict[str, Any], step: Final, cause: Envelope, majority: Any,
                        writes: list[UpdateOne]) -> LabelFinalized:
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
        if majority is not None and step.provenance is Provenance.CONSENSUS:
            # The plain majority beside the reliability-weighted decision, for audit: where they differ, weighting won.
            final["majority_label"] = majority.label
        writes.append(UpdateOne({"_id": doc["_id"]}, {
            "$set": {"final": {**final, **_outbox(cause, [event])}},
            "$push": {"history": final}}))
        self.metrics.finals.labels(event.project, event.provenance.value).inc()
        if "embedding" in doc:
            self._index(event.project).upsert(event.item_id, event.label, np.frombuffer(doc["embedding"], np.float32))
        if doc.get("tier") == Tier.AUTO.value and doc.get("spot_check") and prelabel and step.verified:
            await self._record_spot_check(doc["project"], prelabel[0] == step.label)
        return event

    async def _record_spot_check(self, project: str, correct: bool) -> None:
        stats = await self.rt.db["spot_checks"].find_one_and_update(
            {"_id": project}, {"$inc": {"n": 1, "correct": int(correct)}}, upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        self.metrics.spot_accuracy.labels(project).set(stats["correct"] / stats["n"])

    async def _on_golden_answer(self, key: str, event: LabelSubmitted,
                                item: Mapping[str, Any] | None) -> list[Envelope]:
        if item is None or not item.get("golden_label"):
            log.warning("golden answer for %s which qc does not know as golden", key)
            return []
        await self.labels.replace_one({"_id": event.event_id}, self._label_doc(event, item), upsert=True)
        correct = item["golden_label"] == event.label
        akey = {"_id": f"{event.project}/{event.annotator_id}"}
        stats = await self._count_once(event.project, event.annotator_id, "golden_events", event.event_id,
                                       {"golden_n": 1, "golden_correct": int(correct)})
        acc = golden_accuracy(stats["golden_correct"], stats["golden_n"])
        await self.annotators.update_one(akey, {"$set": {"golden_lower": acc.lower, "golden_upper": acc.upper}})
        self.metrics.golden_accuracy.labels(event.project, event.annotator_id).set(acc.accuracy)
        self.metrics.golden_bound.labels(event.project, event.annotator_id, "lower").set(acc.lower)
        self.metrics.golden_bound.labels(event.project, event.annotator_id, "upper").set(acc.upper)
        if stats.get("suspended") or not should_flag(
            acc, threshold=self.settings.golden_accuracy_threshold, min_evidence=self.settings.golden_min_evidence
        ):
            return []
        return await self._suspend(
            event, event.project, event.annotator_id,
            (f"golden accuracy {acc.accuracy:.0%} over {acc.n} items (95% interval {acc.lower:.0%}-"
             f"{acc.upper:.0%}) is below {self.settings.golden_accuracy_threshold:.0%}"),
            {"golden_n": acc.n, "golden_correct": stats["golden_correct"], "lower": acc.lower,
             "upper": acc.upper, "threshold": self.settings.golden_accuracy_threshold},
            f"golden accuracy {acc.accuracy:.0%}", {"golden_accuracy": acc.accuracy},
        )

    async def _on_verdict(self, cause: Envelope, project: str, item_key: str, verdict: Verdict) -> list[Envelope]:
        """Count an expert's verdict on a lone reviewer (once per item); suspend them when the verdicts say so."""
        stats = await self._count_once(project, verdict.annotator, "verdict_items", item_key,
                                       {"verdicts_n": 1, "verdicts_upheld": int(verdict.upheld)})
        s = self.settings
        upheld = golden_accuracy(stats["verdicts_upheld"], stats["verdicts_n"])
        if stats.get("suspended") or not should_flag(upheld, threshold=s.expert_agreement_threshold,
                                                     min_evidence=s.expert_agreement_min_evidence):
            return []
        return await self._suspend(
            cause, project, verdict.annotator,
            (f"experts upheld {upheld.accuracy:.0%} of {upheld.n} labels of theirs that were escalated (95% "
             f"interval {upheld.lower:.0%}-{upheld.upper:.0%}), below {s.expert_agreement_threshold:.0%}"),
            {"verdicts_n": upheld.n, "verdicts_upheld": stats["verdicts_upheld"], "lower": upheld.lower,
             "upper": upheld.upper, "threshold": s.expert_agreement_threshold},
            f"experts upheld {upheld.accuracy:.0%} of their escalated labels", {"expert_upheld": upheld.accuracy},
        )

    async def _count_once(self, project: str, annotator: str, seen_field: str, seen: str,
                          counts: dict[str, int]) -> dict[str, Any]:
        """Add counts to an annotator's statistics unless `seen` is already listed in seen_field; their
        statistics after it either way (a redelivered event or item is counted once)."""
        akey = {"_id": f"{project}/{annotator}"}
        try:
            return await self.annotators.find_one_and_update(
                {**akey, seen_field: {"$ne": seen}},
                {"$inc": counts, "$push": {seen_field: seen}, "$set": {"project": project, "annotator": annotator}},
                upsert=True, return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # Already counted (a redelivery after a crash): the guard did not match, so the upsert collided.
            return await self.annotators.find_one(akey)

    async def _suspend(self, cause: Envelope, project: str, annotator: str, message: str, evidence: dict[str, Any],
                       why: str, review_evidence: dict[str, Any]) -> list[Envelope]:
        """Suspend an annotator: a flag, and their latest labels back to an expert (_send_back_for_review)."""
        suspended = QcFlagged(
            event_id=derived_id(cause.event_id, "suspended"), producer=SERVICE, project=project,
            subject=FlagSubject.ANNOTATOR, subject_id=annotator, kind=FlagKind.ANNOTATOR_SUSPENDED,
            message=message, evidence=evidence,
        )
        reviews, writes = await self._send_back_for_review(project, annotator, why, review_evidence)
        # The suspension with everything it sends back, stored first: the items' escalations below would
        # otherwise hide them from a re-run after a crash.
        await self.annotators.update_one({"_id": f"{project}/{annotator}"}, {"$set": {
            "suspended": True, "suspended_at": utcnow(), "suspension": _outbox(cause, [suspended, *reviews])}})
        await self._bulk(self.items, writes)
        return [suspended, *reviews]

    async def _send_back_for_review(self, project: str, annotator: str, why: str,
                                    evidence: dict[str, Any]) -> tuple[list[QcFlagged], list[UpdateOne]]:
        """The suspended annotator's latest labels go to an expert, unless their label was already outvoted."""
        recent = [d async for d in self.labels.find({"project": project, "annotator": annotator, "golden": False,
                                                     "expert": False})]
        recent.sort(key=lambda d: (d["at"], d["_id"]), reverse=True)
        latest: dict[str, str] = {}
        for d in recent[: self.settings.review_recent_labels]:
            latest.setdefault(d["item_id"], d["label"])
        items = {d["item_id"]: d async for d in self.items.find(
            {"project": project, "item_id": {"$in": list(latest)}}, {"item_id": 1, "final": 1, "escalated": 1})}
        flags, writes = [], []
        for item_id, label in latest.items():
            doc = items.get(item_id, {})
            if doc.get("escalated") or (doc.get("final") and doc["final"]["label"] != label):
                continue  # an expert will look anyway, or the final label does not rest on this vote
            writes.append(UpdateOne({"_id": f"{project}/{item_id}"}, {"$set": {"escalated": True}}))
            flags.append(self._review_flag(project, item_id, annotator, label, why, evidence))
        return flags, writes

    # --- periodic passes ---------------------------------------------------------------------------
    async def _periodic(self, labels: Counter[str], by_annotator: Counter[tuple[str, str]],
                        finals: Counter[str]) -> list[QcFlagged]:
        """Run the passes whose counter passed a multiple of its period in this batch.

        Counters are counted from the stored labels and final labels, never kept with $inc: a batch
        redelivered after a crash must leave the same state as one delivered once. (The count of final
        items is kept in memory between counts, from the first final labels the batches wrote: see below.)
        """
        out: list[QcFlagged] = []
        s = self.settings
        for project, added in labels.items():
            total = await self.labels.count_documents({"project": project})
            if _crossed(total, added, s.agreement_every):
                out.extend(await self.passes.agreement(project))
        due: dict[str, list[str]] = {}
        for (project, annotator), added in by_annotator.items():
            total = await self.labels.count_documents({"project": project, "annotator": annotator})
            if _crossed(total, added, s.drift_every):
                due.setdefault(project, []).append(annotator)
        for project, annotators in due.items():
            out.extend(await self.passes.drift(project, sorted(annotators)))
        for project, added in finals.items():
            # Items with a final label: counted from the store once per process, then kept up to date with
            # the first final labels each batch wrote (`finals` counts those, after their writes). Counting at
            # every batch read all of qc's items, embeddings included: ~20 events/s for a qc working through
            # a 100,000-item backlog on FerretDB, where every read of a collection decodes all of it.
            if project in self.final_items:
                self.final_items[project] += added
            else:
                self.final_items[project] = await self.items.count_documents(
                    {"project": project, "final": {"$exists": True}})
            total = self.final_items[project]
            number = _growing_pass(total, added, s.label_error_every, s.label_error_growth)
            if number is not None:
                out.extend(await self.passes.label_errors(project, number))
        return out

    async def _record_flags(self, flags: list[QcFlagged]) -> None:
        """Count the flags raised; the qc.flagged topic is their record (with evidence), replayable like any event."""
        for f in {f.event_id: f for f in flags}.values():
            self.metrics.flags.labels(f.project, f.kind.value).inc()


def create_app(settings: QcSettings | None = None) -> ServiceRuntime:
    settings = settings or QcSettings()
    rt = ServiceRuntime(SERVICE, settings)
    qc = Qc(rt, settings)
    qc.wire()
    rt.component = qc
    return rt
