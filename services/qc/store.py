"""qc's documents and the domain objects they hold: items, labels, annotator and project tallies, outboxes.

Who writes what (DESIGN.md, "Replicas and ownership"): `items` and `labels` only the owner of the item's
partition (services/qc/items.py); `annotators`, `project_stats`, `evidence` and every project-wide pass result
(`agreement`, `reliability`, `label_issues`, `label_error_passes`) only the owner of the annotator's or the
project's partition of qc.evidence (services/qc/tally.py). Each reads the other's documents, never writes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import bulk_write, find_by_ids, insert_new, upsert_many
from schemas.events import Envelope, EvidenceKind, LabelSubmitted, QcEvidence, Tier, parse_event
from schemas.keys import annotator_key, item_key
from services.qc.domain.spans import vote_label
from services.qc.domain.reliability import DEFAULT_MIN_DS_ITEMS
from services.qc.domain.reliability import reliability as annotator_reliability
from services.qc.domain.tally import AnnotatorTally, ProjectTally
from services.qc.finalize import ItemState, Vote


def outbox(cause: Envelope, events: Sequence[Envelope]) -> dict[str, Any]:
    """Stored in the same write as the decision it announces: what to publish again if the process dies
    between that write and the publish (labelmesh.runtime.inbox's in-flight list says when)."""
    # JSON text, not documents: FerretDB 1.24 rejects nested arrays, which a flag's evidence can hold.
    # Which event caused a decision depends on how the stream was batched: kept out of the state proper
    # (labelmesh.state_digest treats `outbox` as volatile), so a replay still rebuilds equal state.
    return {"outbox": {"cause": cause.event_id, "events": [e.model_dump_json() for e in events]}}


def unpack(stored: Mapping[str, Any] | None) -> list[Envelope]:
    return [parse_event(raw) for raw in (stored or {}).get("outbox", {}).get("events", [])]


def item_state(doc: Mapping[str, Any]) -> ItemState:
    return ItemState(
        trusted_label=doc.get("trusted_label"),
        golden_label=doc.get("golden_label"),
        tier=Tier(doc["tier"]) if doc.get("tier") else None,
        required=doc.get("required", 0),
        spot_check=doc.get("spot_check", False),
        escalated=doc.get("escalated", False),
        prelabel=tuple(doc["prelabel"]) if doc.get("prelabel") else None,  # type: ignore[arg-type]
        top_k=tuple((s["label"], s["probability"]) for s in doc.get("routed_top_k") or ()),
        votes=tuple(Vote(v["annotator"], v["label"], v["expert"]) for v in doc.get("votes", [])),
        final_label=(doc.get("final") or {}).get("label"),
        second_opinion=bool(doc.get("second_opinion")),
    )


def label_doc(event: LabelSubmitted) -> dict[str, Any]:
    """One document per human label: the sequences agreement, drift and the calibration report read.

    Only what the event says: anything taken from the item (its pre-label) would depend on whether
    item.routed happened to be consumed first, and a replay would rebuild different documents.
    """
    return {"project": event.project, "item_id": event.item_id, "annotator": event.annotator_id,
            "label": vote_label(event.label, event.spans), "expert": event.role == "expert", "golden": event.golden,
            "time_spent_ms": event.time_spent_ms, "session": event.session_id, "at": event.occurred_at}


def vote_doc(event: LabelSubmitted) -> dict[str, Any]:
    return {"annotator": event.annotator_id, "label": vote_label(event.label, event.spans),
            "expert": event.role == "expert",
            "guideline_version": event.guideline_version, "time_spent_ms": event.time_spent_ms,
            "event_id": event.event_id, "at": event.occurred_at}


# The ids of the latest facts a tally counted, kept on its document: a batch that comes back after a crash
# counts a fact whose evidence row exists only if the tally does not hold its id, so the tally stays exact
# without re-reading the key's rows. The facts counted between an attempt that died and its batch coming back
# are at most a few batches (the bus hands at most 500 records), far below this.
RECENT_FACTS = 2_000


def recent_facts(doc: Mapping[str, Any] | None, counted: Sequence[QcEvidence], keep: int = RECENT_FACTS) -> list[str]:
    """The document's `recent_facts` after counting `counted`: the last `keep` ids (bounded, like a $slice)."""
    return [*(doc or {}).get("recent_facts", []), *(f.event_id for f in counted)][-keep:]


_ANNOTATOR_FIELDS = ("labels", "golden_n", "golden_correct", "verdicts_n", "verdicts_upheld")
_PROJECT_FIELDS = ("labels", "finals", "spot_n", "spot_correct")


def annotator_tally(doc: Mapping[str, Any] | None) -> AnnotatorTally:
    return AnnotatorTally(**{f: (doc or {}).get(f, 0) for f in _ANNOTATOR_FIELDS})


def annotator_fields(tally: AnnotatorTally) -> dict[str, Any]:
    acc = tally.golden
    return {**{f: getattr(tally, f) for f in _ANNOTATOR_FIELDS}, "golden_lower": acc.lower, "golden_upper": acc.upper}


def project_tally(doc: Mapping[str, Any] | None) -> ProjectTally:
    return ProjectTally(**{f: (doc or {}).get(f, 0) for f in _PROJECT_FIELDS})


def project_fields(tally: ProjectTally) -> dict[str, Any]:
    return {f: getattr(tally, f) for f in _PROJECT_FIELDS}


class ItemWrites:
    """What one run does to the items it holds, gathered into one update per item: the run's new fields, its
    vote, its escalation and its final label. FerretDB 1.24 rewrites a whole document (embedding included) for
    every update statement, so an item routed and finalised in one run was two rewrites, and a vote and its
    final label two more. One update per document is also one atomic step: a crash leaves all of it or none."""

    def __init__(self) -> None:
        self.updates: dict[str, dict[str, dict[str, Any]]] = {}

    def set(self, key: str, fields: Mapping[str, Any]) -> None:
        self.updates.setdefault(key, {}).setdefault("$set", {}).update(fields)

    def push(self, key: str, field: str, values: Sequence[Any]) -> None:
        pushes = self.updates.setdefault(key, {}).setdefault("$push", {})
        pushes[field] = {"$each": [*pushes.get(field, {"$each": []})["$each"], *values]}

    def vote(self, event: LabelSubmitted) -> None:
        key = item_key(event.project, event.item_id)
        self.push(key, "votes", [vote_doc(event)])
        self.set(key, {"project": event.project, "item_id": event.item_id})

    def final(self, key: str, final: dict[str, Any], cause: Envelope, events: Sequence[Envelope]) -> None:
        self.set(key, {"final": {**final, **outbox(cause, events)}})
        self.push(key, "history", [final])


class QcStore:
    """qc's collections, and the reads both of its handlers share."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.items = db["items"]
        self.labels = db["labels"]
        self.annotators = db["annotators"]
        self.project_stats = db["project_stats"]
        self.evidence = db["evidence"]
        self.reliability_docs = db["reliability"]

    async def reliability(self, project: str) -> dict[str, float]:
        """Annotators with evidence (golden answers or a Dawid-Skene estimate); the others get consensus' default."""
        golden = {d["annotator"]: d async for d in self.annotators.find(
            {"project": project}, {"annotator": 1, "golden_n": 1, "golden_correct": 1})}
        ds_doc = await self.reliability_docs.find_one({"_id": project}) or {}
        ds = {r["annotator"]: r for r in ds_doc.get("annotators", [])}
        out = {}
        for name in golden.keys() | ds.keys():
            g, d = golden.get(name, {}), ds.get(name, {})
            if g.get("golden_n", 0) > 0 or d.get("items", 0) >= DEFAULT_MIN_DS_ITEMS:
                out[name] = annotator_reliability(g.get("golden_correct", 0), g.get("golden_n", 0),
                                                  d.get("accuracy"), d.get("items", 0))
        return out

    async def suspended(self, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (project, annotator) pairs are suspended, looked up by `_id`."""
        docs = await find_by_ids(self.annotators, [annotator_key(p, a) for p, a in pairs],
                                 {"project": 1, "annotator": 1, "suspended": 1})
        return {(d["project"], d["annotator"]) for d in docs if d.get("suspended")}

    # --- items and labels: written only by the owner of the item's partition (services/qc/items.py) ---------
    async def labelled_items(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.items.find({"final": {"$exists": True}, "embedding": {"$exists": True}},
                                         {"project": 1, "item_id": 1, "final.label": 1, "embedding": 1}):
            yield doc

    async def items_by_key(self, keys: Sequence[str], projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await find_by_ids(self.items, keys, projection)

    async def item(self, key: str) -> dict[str, Any] | None:
        return await self.items.find_one({"_id": key})

    async def insert_items(self, docs: Sequence[dict[str, Any]]) -> None:
        """New items' documents, in one insert command (one found there after all is merged into)."""
        await upsert_many(self.items, docs, merge=True)

    async def save_labels(self, events: Sequence[LabelSubmitted]) -> None:
        await bulk_write(self.labels, [ReplaceOne({"_id": e.event_id}, label_doc(e), upsert=True) for e in events],
                         ordered=False)

    async def push_votes(self, events: Sequence[LabelSubmitted], items: Mapping[str, Any]) -> None:
        """One $push per item, votes already stored left out (a redelivered batch after a partial write)."""
        pushes: dict[str, list[LabelSubmitted]] = {}
        for e in events:
            key = item_key(e.project, e.item_id)
            if e.event_id not in {v["event_id"] for v in items.get(key, {}).get("votes", [])}:
                pushes.setdefault(key, []).append(e)
        await bulk_write(self.items, [UpdateOne(
            {"_id": key}, {"$push": {"votes": {"$each": [vote_doc(e) for e in votes]}},
                           "$set": {"project": votes[0].project, "item_id": votes[0].item_id}}, upsert=True)
            for key, votes in pushes.items()], ordered=False)

    async def keep_golden_answer(self, event: LabelSubmitted, item: Mapping[str, Any] | None) -> None:
        """A golden answer stays on its item (it can come before the item's golden label does)."""
        if any(a["event_id"] == event.event_id for a in (item or {}).get("golden_answers", [])):
            return
        await self.items.update_one({"_id": item_key(event.project, event.item_id)}, {
            "$push": {"golden_answers": {"event_id": event.event_id, "annotator": event.annotator_id,
                                         "label": vote_label(event.label, event.spans)}},
            "$set": {"project": event.project, "item_id": event.item_id}}, upsert=True)

    @staticmethod
    def escalation(cause: Envelope | None = None, flags: Sequence[Envelope] = (), **marks: Any) -> dict[str, Any]:
        """The fields of an item that waits for an expert; with a cause, the flags announcing it, to publish again."""
        return {"escalated": True, **marks, **({"escalation": outbox(cause, flags)} if cause else {})}

    async def escalate(self, key: str, cause: Envelope | None = None, flags: Sequence[Envelope] = (),
                       **marks: Any) -> None:
        await self.items.update_one({"_id": key}, {"$set": self.escalation(cause, flags, **marks)})

    async def ask_second_opinion(self, key: str, cause: Envelope, flags: Sequence[Envelope]) -> None:
        """The item waits for a second ordinary reviewer; the flag asking for one is stored to publish again."""
        await self.items.update_one({"_id": key}, {"$set": {"second_opinion": True,
                                                            "second_opinion_request": outbox(cause, flags)}})

    async def write_items(self, writes: ItemWrites) -> None:
        await bulk_write(self.items, [UpdateOne({"_id": key}, update) for key, update in writes.updates.items()],
                         ordered=False)

    async def item_decisions_caused_by(self, causes: Sequence[str]) -> list[Envelope]:
        """Final labels and escalations stored for these events (their outboxes). Scans: only after a crash."""
        out: list[Envelope] = []
        async for doc in self.items.find({"final.outbox.cause": {"$in": list(causes)}}, {"final": 1}):
            out.extend(unpack(doc["final"]))
        async for doc in self.items.find({"escalation.outbox.cause": {"$in": list(causes)}}, {"escalation": 1}):
            out.extend(unpack(doc["escalation"]))
        async for doc in self.items.find({"second_opinion_request.outbox.cause": {"$in": list(causes)}},
                                         {"second_opinion_request": 1}):
            out.extend(unpack(doc["second_opinion_request"]))
        return out

    # --- statistics: written only by the owner of the annotator's or project's key (services/qc/tally.py) ----
    async def record_facts(self, facts: Sequence[tuple[str, QcEvidence]]) -> set[str]:
        """Insert a row per (key, fact), `_id` the fact's event id; returns the ids whose row existed already."""
        rows = [{"_id": f.event_id, "key": key, "project": f.project, "annotator": f.annotator, "kind": f.kind.value,
                 "item_id": f.item_id, "correct": f.correct, "at": f.occurred_at} for key, f in facts]
        return {rows[i]["_id"] for i in await insert_new(self.evidence, rows)}

    async def prune_evidence(self, cutoff: datetime) -> int:
        """Forget the rows of facts older than the inbox's retention window (the tallies keep their counts)."""
        return (await self.evidence.delete_many({"at": {"$lt": cutoff}})).deleted_count

    async def annotator_docs(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in await find_by_ids(self.annotators, keys)}

    async def save_annotators(self, docs: Sequence[dict[str, Any]]) -> None:
        await upsert_many(self.annotators, docs, merge=True)

    async def project_docs(self, projects: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in await find_by_ids(self.project_stats, projects)}

    async def save_projects(self, tallies: Mapping[str, tuple[ProjectTally, list[str]]]) -> None:
        """Each project's tally and its recent_facts."""
        await upsert_many(self.project_stats, [{"_id": p, **project_fields(t), "recent_facts": recent}
                                               for p, (t, recent) in tallies.items()], merge=True)

    async def latest_labels(self, project: str, annotator: str, n: int) -> dict[str, str]:
        """item -> label of an annotator's latest n ordinary labels (golden answers and expert labels left out)."""
        recent = [d async for d in self.labels.find({"project": project, "annotator": annotator, "golden": False,
                                                     "expert": False})]
        recent.sort(key=lambda d: (d["at"], d["_id"]), reverse=True)
        latest: dict[str, str] = {}
        for d in recent[:n]:
            latest.setdefault(d["item_id"], d["label"])
        return latest

    async def suspensions_caused_by(self, causes: Sequence[str]) -> list[dict[str, Any]]:
        """Annotators whose suspension these events caused (a scan: only after a crash)."""
        return [d async for d in self.annotators.find({"suspension.outbox.cause": {"$in": list(causes)}})]
