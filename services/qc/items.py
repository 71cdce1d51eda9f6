"""qc's item handler: label sets, embeddings, escalations and final labels, for the items of its partitions.

It is the only writer of `items` and `labels` documents of the items whose partitions it owns (one consumer
group over the item-keyed topics, co-partitioned). What counts towards an annotator or a project (a label, a
golden answer, an expert's verdict, a first final label, a spot check) leaves as qc.evidence events for the
owner of those statistics (services/qc/tally.py) instead of being written here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelmesh.neighbours import LabelledIndex
from labelmesh.runtime.inbox import recovering
from labelmesh.runtime.projects import ProjectCatalog
from schemas.events import (
    Envelope,
    EvidenceKind,
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
    utcnow,
)
from schemas.keys import item_key
from schemas.spans import SPANS_LABEL, TaskType, answer_key
from services.qc.domain.consensus import decide as weighted_consensus
from services.qc.domain.consensus import majority_vote
from services.qc.domain.knn_check import knn_check
from services.qc.domain.spans import span_consensus, spans_of, vote_label
from services.qc.domain.verdicts import Verdict, lone_reviewer_verdict
from services.qc.evidence import fact
from services.qc.finalize import Escalate, Final, ReviewPolicy, SecondOpinion, next_step
from services.qc.metrics import QcMetrics
from services.qc.passes import SERVICE, flag
from services.qc.settings import QcSettings
from services.qc.store import ItemWrites, QcStore, item_state, vote_doc

log = logging.getLogger(__name__)


def review_flag(project: str, item_id: str, annotator: str, label: str, why: str,
                evidence: dict[str, Any]) -> QcFlagged:
    """An item labelled by a suspended annotator goes back to an expert (the router re-routes it on this flag)."""
    return flag(project, FlagKind.SUSPENDED_ANNOTATOR_LABEL, FlagSubject.ITEM, item_id,
                f"labelled {label!r} by {annotator}, who is suspended: {why}; back for review",
                {"annotator": annotator, "label": label, **evidence}, cause=(item_id, annotator), item_id=item_id)


def usable_final(doc: Mapping[str, Any]) -> Envelope:
    """The fact that an item has a final label and an embedding: the confident-learning pass reads exactly those
    items, and runs on their count (tally.py). Counted when both are there, whichever came first: counted at the
    final label, an item finalised before its item.prelabeled was consumed (another topic, in no order with
    item.routed) brought the count to a pass that then found fewer items, or none, to fit (bench/replay.py: a
    pass at 1,000 finals over 667 items; a rebuild where every pass met fewer than 10 and none was stored).
    Its id derives from the item, so the two moments announce one fact, counted once."""
    return fact(doc["project"], None, EvidenceKind.FINALIZED, doc["_id"], doc["item_id"])


class Items:
    def __init__(self, store: QcStore, catalog: ProjectCatalog, settings: QcSettings, metrics: QcMetrics) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.metrics = metrics
        # A speed-up for the kNN check, rebuilt from the store at start; see restore().
        self.indexes: dict[str, LabelledIndex] = {}

    async def restore(self) -> None:
        """Rebuild the labelled-embedding index from qc's own items."""
        async for doc in self.store.labelled_items():
            self._index(doc["project"]).upsert(doc["item_id"], doc["final"]["label"],
                                               np.frombuffer(doc["embedding"], np.float32))

    async def on_finalized(self, events: list[Envelope]) -> None:
        """Every final label, whichever replica decided it, into this replica's index (memory only): the kNN
        check of an item compares it with all labelled items, not only those of this replica's partitions."""
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        docs = await self.store.items_by_key([item_key(e.project, e.item_id) for e in finals],
                                             {"project": 1, "item_id": 1, "final.label": 1, "embedding": 1})
        for doc in docs:  # the stored final label: the latest, whatever order the events come in
            if "embedding" in doc and "final" in doc:
                self._index(doc["project"]).upsert(doc["item_id"], doc["final"]["label"],
                                                   np.frombuffer(doc["embedding"], np.float32))

    def _index(self, project: str) -> LabelledIndex:
        return self.indexes.setdefault(project, LabelledIndex())

    async def on_events(self, events: list[Envelope]) -> list[Envelope]:
        """Each event in order, decided right after it is applied, exactly as if it had come alone; returns what
        to publish.

        The decision after each event (not once per batch) keeps the outcome independent of how the
        stream was cut into batches, which a replay or a redelivery changes (tests/integration/test_idempotency).
        """
        out: list[Envelope] = await self._republish(recovering.get())
        facts: list[Envelope] = []  # counted towards annotators and projects (qc.evidence)
        run: list[Envelope] = []  # consecutive item facts and votes, each item at most once
        run_keys: set[str] = set()

        async def flush() -> None:
            if run:
                out.extend(await self._apply_facts_and_evaluate(run, facts))
                run.clear()
                run_keys.clear()

        for event in events:
            if isinstance(event, QcFlagged):
                await flush()
                await self._on_flag(event)
                continue
            key = item_key(event.project, event.item_id)
            if key in run_keys:
                await flush()  # the item's earlier fact is decided on first, as if it had come alone
            if isinstance(event, LabelSubmitted):
                side = event.golden or bool(event.session_id)
                if side:
                    await flush()
                await self.catalog.require(event)
                facts.append(fact(event.project, None, EvidenceKind.LABELLED, event.event_id, event.item_id))
                if event.role != "expert":
                    facts.append(fact(event.project, event.annotator_id, EvidenceKind.LABELLED, event.event_id,
                                      event.item_id))
                if side:
                    await self._on_side_label(key, event, facts)
                    continue
            run.append(event)
            run_keys.add(key)
        await flush()
        return [*out, *facts]

    async def _on_side_label(self, key: str, event: LabelSubmitted, facts: list[Envelope]) -> None:
        """A golden answer or a calibration label: stored, never a vote on the item."""
        if event.golden:
            await self._on_golden_answer(key, event, await self.store.item(key), facts)
        else:
            # A calibration label measures how annotators agree (qc-report --session); not a vote on the item.
            await self.store.save_labels([event])

    async def _republish(self, causes: frozenset[str]) -> list[Envelope]:
        """Decisions stored for events a killed process was handling, published again (same event ids).

        Handling one of them again finds its decision already stored and, without this, would not announce
        it: the final label or escalation would never leave qc. Only after a crash, so the scans (no index
        on these fields) cost nothing in normal running.
        """
        if not causes:
            return []
        out = await self.store.item_decisions_caused_by(list(causes))
        log.warning("republishing %d item decisions stored for %d interrupted events", len(out), len(causes))
        return out

    async def _on_flag(self, event: QcFlagged) -> None:
        """qc's own decision that an item goes back to an expert (an annotator was suspended): the owner of the
        annotator's statistics decided it, the owner of the item (here) marks the item."""
        if event.producer != SERVICE or event.kind is not FlagKind.SUSPENDED_ANNOTATOR_LABEL or not event.item_id:
            return
        await self.store.escalate(item_key(event.project, event.item_id))

    # --- applying events ---------------------------------------------------------------------------------
    async def _apply_facts_and_evaluate(self, run: list[Envelope], facts: list[Envelope]) -> list[Envelope]:
        """item.ingested, item.prelabeled, item.routed and votes (label.submitted) of distinct items: stored
        together, then each item decided on in stream order, with the same outcome as one event at a time.

        An item's decision reads only its own document, the annotators' reliability and suspensions (which
        the tally group writes, never this run) and the labelled-embedding index, which is updated in stream
        order below; so storing the run's facts and votes first changes nothing but the number of round trips.
        A run was three commands per event (a write, a read back, the annotators), and a vote eight (its item,
        the label, the vote, the suspensions, its item again, two for reliability, the final): most of the
        database time of a burst and of a rebuild (bench/replay.py).
        """
        sets: dict[str, dict[str, Any]] = {}
        vectors: dict[str, np.ndarray] = {}
        touched: dict[str, Envelope] = {}
        ingested: set[str] = set()
        votes: list[LabelSubmitted] = []
        embedded: dict[str, str] = {}  # key -> the item.prelabeled event that brought its embedding
        again = recovering.get()
        for event in run:
            key = item_key(event.project, event.item_id)
            if isinstance(event, LabelSubmitted):
                votes.append(event)
                touched[key] = event
                continue
            if not isinstance(event, (ItemIngested, ItemPrelabeled, ItemRouted)):
                continue
            update = sets.setdefault(key, {"project": event.project, "item_id": event.item_id})
            if isinstance(event, ItemIngested):
                golden = event.golden_label if event.golden_spans is None else answer_key(event.golden_spans)
                update |= {"golden_label": golden, "trusted_label": event.trusted_label}
                if (config := await self.catalog.get(event.project)) is not None and config.task is TaskType.SPANS:
                    update["text"] = event.payload.text  # its words are the units of agreement (passes.py)
                touched[key] = event
                ingested.add(key)
            elif isinstance(event, ItemPrelabeled):
                update["top_k"] = [s.model_dump() for s in event.top_k]
                vector = np.asarray(event.embedding, dtype=np.float32)
                if vector.size:
                    update["embedding"] = vector.tobytes()
                    vectors[key] = vector
                    embedded[key] = event.event_id
            elif isinstance(event, ItemRouted):
                top = event.top_k[0] if event.top_k else None
                update |= {"tier": event.tier.value, "required": event.required_annotators,
                           "spot_check": event.spot_check, "model_version": event.model_version,
                           "prelabel": [top.label, top.probability] if top else None,
                           "routed_top_k": [s.model_dump() for s in event.top_k]}
                if event.spans is not None and top is not None:
                    # A spans item's pre-label is its whole answer, which a reviewer confirms or not; its top-k is
                    # only the item confidence (no class prior for the review with the model).
                    update |= {"prelabel": [answer_key(event.spans), top.probability], "routed_top_k": []}
                if event.tier is Tier.EXPERT:
                    update["escalated"] = True
                touched[key] = event
        keys = list(dict.fromkeys(item_key(e.project, e.item_id) for e in run))  # stream order
        stored = {d["_id"]: d for d in await self.store.items_by_key(keys)}
        writes = ItemWrites()  # one update per stored item, sent once the run is decided
        docs: dict[str, dict[str, Any]] = {}
        new: list[dict[str, Any]] = []
        for key, fields in sets.items():
            if key in stored:
                docs[key] = {**stored[key], **fields}
                writes.set(key, fields)
            else:
                docs[key] = {"_id": key, **fields}
                new.append(docs[key])
        # New items are inserted before anything is decided: a decision's own writes (an escalation) find them.
        await self.store.insert_items(new)
        out: list[Envelope] = []
        if votes:
            voted, flagged = await self._on_labels(votes, stored, writes)
            docs |= voted
            out.extend(flagged)
        reliability = {p: await self.store.reliability(p) for p in {docs[k]["project"] for k in touched}}
        for key in keys:
            doc = docs.get(key)
            if doc is None:
                continue
            if key in vectors and "final" in doc:  # a final label can arrive before the embedding
                self._index(doc["project"]).upsert(doc["item_id"], doc["final"]["label"], vectors[key])
                if "embedding" not in stored.get(key, {}) or embedded[key] in again:
                    facts.append(usable_final(doc))  # the pass can use its final label from now on
            if key in ingested and doc.get("golden_label"):  # golden answers that came before the item, kept
                for answer in doc.get("golden_answers", []):
                    facts.append(fact(doc["project"], answer["annotator"], EvidenceKind.GOLDEN, answer["event_id"],
                                      doc["item_id"], answer["label"] == doc["golden_label"]))
            if key in touched:
                out.extend(await self._evaluate(doc, touched[key], reliability[doc["project"]], writes))
        await self.store.write_items(writes)
        return out

    async def _on_golden_answer(self, key: str, event: LabelSubmitted, item: Mapping[str, Any] | None,
                                facts: list[Envelope]) -> None:
        """Kept on the item (it may come before the item's item.ingested, whose golden label decides whether it
        was right), and counted towards the annotator once the golden label is known."""
        await self.store.save_labels([event])
        await self.store.keep_golden_answer(event, item)
        golden = (item or {}).get("golden_label")
        if golden:
            facts.append(fact(event.project, event.annotator_id, EvidenceKind.GOLDEN, event.event_id, event.item_id,
                              golden == vote_label(event.label, event.spans)))
        elif item is not None and "golden_label" in item:
            log.warning("golden answer for %s, which was ingested without a golden label", key)

    async def _on_labels(self, events: list[LabelSubmitted], stored: Mapping[str, dict[str, Any]],
                         writes: ItemWrites) -> tuple[dict[str, dict[str, Any]], list[Envelope]]:
        """Store the votes (of distinct items); an item labelled by a suspended annotator goes to an expert.
        Returns each item's document as the run's writes leave it, by key, and the flags sending items back.

        A vote on a stored item joins that item's update (`writes`); a vote on an item not stored yet (its
        item.ingested still to come) creates the document now, so that what is decided on it has one to write to.
        """
        await self.store.save_labels(events)
        await self.store.push_votes([e for e in events if item_key(e.project, e.item_id) not in stored], {})
        # Read after the labels were written: the owner of the annotator's statistics writes a suspension
        # before it reads their labels, so a label either sees the suspension here or is sent back by it.
        suspended = await self.store.suspended({(e.project, e.annotator_id) for e in events if e.role != "expert"})
        docs: dict[str, dict[str, Any]] = {}
        out: list[Envelope] = []
        for e in events:
            key = item_key(e.project, e.item_id)
            doc = docs[key] = {"_id": key, **stored.get(key, {}), "project": e.project, "item_id": e.item_id}
            if e.event_id not in {v["event_id"] for v in doc.get("votes", [])}:  # not already stored (a redelivery)
                doc["votes"] = [*doc.get("votes", []), vote_doc(e)]
                if key in stored:
                    writes.vote(e)
            if e.role == "expert" or (e.project, e.annotator_id) not in suspended or doc.get("escalated"):
                continue
            review = review_flag(e.project, e.item_id, e.annotator_id, e.label,
                                 "label arrived after its annotator was suspended", {})
            escalation = self.store.escalation(e, [review])
            writes.set(key, escalation)
            doc |= escalation
            out.append(review)
        return docs, out

    async def _evaluate(self, doc: dict[str, Any], cause: Envelope, reliability: dict[str, float],
                        writes: ItemWrites) -> list[Envelope]:
        key = doc["_id"]
        state = item_state(doc)
        config = await self.catalog.get(doc["project"])
        n_classes = len(config.labels) if config else None
        spans = config is not None and config.task is TaskType.SPANS

        def consensus(votes: Sequence[tuple[str, str]], rel: Mapping[str, float]) -> tuple[str, float, bool]:
            if spans:
                return span_consensus(votes, rel, min_confidence=self.settings.min_consensus_confidence)
            result = weighted_consensus(votes, rel, min_confidence=self.settings.min_consensus_confidence,
                                        n_classes=n_classes)
            return result.label, result.confidence, result.resolved

        review = ReviewPolicy(n_classes, self.settings.min_single_confidence, self.settings.shown_error_share) \
            if self.settings.review_with_model and n_classes and n_classes >= 2 and not spans else None
        step = next_step(state, reliability, consensus, confirm_single=self.settings.confirm_single, review=review,
                         second_opinion=self.settings.second_opinion)
        human = [(v.annotator, v.label) for v in state.votes if not v.expert]
        majority = majority_vote(human) if human else None
        if isinstance(step, Final):
            final = doc.get("final")
            if final and final["label"] == step.label and final["provenance"] == step.provenance.value:
                return []
            # Neighbours' whole span sets rarely repeat (WNUT: few surface forms do): no kNN check on spans items.
            if step.provenance in (Provenance.SINGLE_REVIEW, Provenance.CONSENSUS) and not spans:
                held = await self._knn_check(doc, step.label, cause)
                if held is not None:
                    return [held]
            verdict = lone_reviewer_verdict(state.votes) if step.provenance in (
                Provenance.EXPERT, Provenance.CORRECTED) else None
            return await self._finalize(doc, step, cause, majority, writes, verdict, spans)
        if isinstance(step, SecondOpinion) and not doc.get("second_opinion"):
            # Derived from the item, like an escalation: asked once, however the stream is replayed.
            asked: list[Envelope] = [QcFlagged(
                event_id=derived_id(key, "second-opinion"), producer=SERVICE, project=doc["project"],
                item_id=doc["item_id"], subject=FlagSubject.ITEM, subject_id=doc["item_id"],
                kind=FlagKind.SECOND_OPINION, message=step.reason, evidence=dict(step.evidence),
                correlation_id=cause.correlation_id,
            )]
            await self.store.ask_second_opinion(key, cause, asked)
            return asked
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
            if any(v.expert for v in state.votes):
                # An expert's answer is already here (an expert took the review, or a replay read it first): it
                # decides now, or never. The flag is not published: the router would send the item, final by then,
                # to an expert again, and the gateway open an expert task after it had closed the item's tasks
                # (bench/crash_recovery.py's open_tasks_for_final_items: an expert-1 review doubted at 0.617).
                await self.store.escalate(key, cause, [])
                return await self._evaluate({**doc, "escalated": True}, cause, reliability, writes)
            await self.store.escalate(key, cause, flagged)
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
        await self.store.escalate(doc["_id"], cause, [held], knn_flagged=True)
        return held

    async def _finalize(self, doc: dict[str, Any], step: Final, cause: Envelope, majority: Any,
                        writes: ItemWrites, verdict: Verdict | None, spans: bool = False) -> list[Envelope]:
        """The final label, and the facts it adds to the annotator's and the project's statistics, stored
        together in the final label's outbox so a re-run after a crash announces all of them. A spans item's
        decision is an answer key (domain/spans.py vote_label): its event carries the spans."""
        previous = doc.get("final")
        version = previous["version"] + 1 if previous else 1
        votes = doc.get("votes", [])
        prelabel = doc.get("prelabel")
        guideline_versions = [v["guideline_version"] for v in votes if v.get("guideline_version")]
        project, item_id = doc["project"], doc["item_id"]
        event = LabelFinalized(
            event_id=derived_id(doc["_id"], "final", str(version)),
            producer=SERVICE, project=project, item_id=item_id, label=SPANS_LABEL if spans else step.label,
            version=version, spans=spans_of(step.label) if spans else None,
            provenance=step.provenance, confidence=min(1.0, max(0.0, step.confidence)),
            human_labels=sum(1 for v in votes if not v["expert"]), expert_labels=sum(1 for v in votes if v["expert"]),
            guideline_version=max(guideline_versions) if guideline_versions else None,
            model_version=doc.get("model_version"),
            prelabel=LabelScore(label=SPANS_LABEL if spans else prelabel[0], probability=prelabel[1])
            if prelabel else None,
            verified=step.verified, golden=bool(doc.get("golden_label")), correlation_id=cause.correlation_id,
        )
        facts = []
        if version == 1 and "embedding" in doc:  # else counted once its embedding comes (usable_final)
            facts.append(usable_final(doc))
        if doc.get("tier") == Tier.AUTO.value and doc.get("spot_check") and prelabel and step.verified:
            facts.append(fact(project, None, EvidenceKind.SPOT_CHECK, event.event_id, item_id,
                              prelabel[0] == step.label))
        if verdict is not None:  # counted once per item, whichever expert label decided it
            facts.append(fact(project, verdict.annotator, EvidenceKind.VERDICT, doc["_id"], item_id, verdict.upheld))
        final = {"label": step.label, "version": version, "provenance": event.provenance.value,
                 "confidence": event.confidence, "at": utcnow(), "event_id": event.event_id}
        if majority is not None and step.provenance is Provenance.CONSENSUS:
            # The plain majority beside the reliability-weighted decision, for audit: where they differ, weighting won.
            final["majority_label"] = majority.label
        writes.final(doc["_id"], final, cause, [event, *facts])
        self.metrics.finals.labels(project, event.provenance.value).inc()
        if "embedding" in doc:
            self._index(project).upsert(item_id, step.label, np.frombuffer(doc["embedding"], np.float32))
        return [event, *facts]
