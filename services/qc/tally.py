"""qc's statistics handler: counts qc.evidence into annotator and project tallies, suspends, runs the passes.

qc.evidence is keyed by `project/annotator` (an annotator's statistics) or by `project` (a project's), and read
by its own consumer group: the replica that owns a key's partition is the only writer of that key's tally, of
the annotator's suspension and drift flags, and runs that project's periodic passes. Every fact is counted
once: its row in `evidence` (unique `_id`) is inserted first, and only facts whose row is new are added to the
tally. A process killed between the two leaves rows without counts; the batch then comes again as
"recovering" (labelmesh.runtime.inbox), and its facts whose rows exist are counted unless the tally's
`recent_facts` (store.py) holds them. Nothing reads a key's rows back, so they only guard against duplicates.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from labelmesh.runtime.inbox import recovering
from schemas.events import Envelope, EvidenceKind, FlagKind, FlagSubject, QcEvidence, QcFlagged, derived_id
from schemas.keys import annotator_key, item_key
from services.qc.domain.tally import (
    AnnotatorTally,
    ProjectTally,
    Suspension,
    SuspensionRule,
    crossed,
    fold_annotator,
    fold_project,
    growing_pass,
)
from services.qc.items import review_flag
from services.qc.metrics import QcMetrics
from services.qc.passes import SERVICE, Passes
from services.qc.settings import QcSettings
from services.qc.store import (
    QcStore,
    annotator_fields,
    annotator_tally,
    outbox,
    project_tally,
    recent_facts,
    unpack,
)

log = logging.getLogger(__name__)


class Tallies:
    def __init__(self, store: QcStore, passes: Passes, settings: QcSettings, metrics: QcMetrics) -> None:
        self.store = store
        self.passes = passes
        self.settings = settings
        self.metrics = metrics
        s = settings
        self.rule = SuspensionRule(s.golden_accuracy_threshold, s.golden_min_evidence, s.expert_agreement_threshold,
                                   s.expert_agreement_min_evidence)

    async def on_events(self, events: list[Envelope]) -> list[Envelope]:
        """Count the batch's new facts per key, then decide (suspensions, passes); returns what to publish."""
        again = recovering.get()
        out: list[Envelope] = await self._republish(again)
        facts: dict[str, list[QcEvidence]] = defaultdict(list)  # key -> the batch's facts, in stream order
        for event in {e.event_id: e for e in events if isinstance(e, QcEvidence)}.values():
            facts[event.key].append(event)
        if not facts:
            return out
        existed = await self.store.record_facts([(key, f) for key, batch in facts.items() for f in batch])
        # A fact whose row existed was counted before, unless an interrupted attempt inserted the row and died
        # before adding it up: then it is recovering, and missing from the tally's recent_facts.
        redo = {key for key, batch in facts.items() if any(f.event_id in again for f in batch)}
        out.extend(await self._annotators([k for k, b in facts.items() if b[0].annotator is not None], facts,
                                          existed, again, redo))
        out.extend(await self._projects([k for k, b in facts.items() if b[0].annotator is None], facts, existed,
                                        again, redo))
        return out

    @staticmethod
    def _uncounted(batch: list[QcEvidence], doc: dict[str, Any], existed: set[str],
                   again: frozenset[str]) -> list[QcEvidence]:
        held = set(doc.get("recent_facts", ()))
        return [f for f in batch if f.event_id not in existed or (f.event_id in again and f.event_id not in held)]

    async def _annotators(self, keys: list[str], facts: dict[str, list[QcEvidence]], existed: set[str],
                          again: frozenset[str], redo: set[str]) -> list[Envelope]:
        if not keys:
            return []
        stored = await self.store.annotator_docs(keys)
        writes, decided, drift_due = [], [], defaultdict(list)
        for key in keys:
            cause = facts[key][-1]
            project, annotator = cause.project, cause.annotator
            assert annotator is not None
            doc = stored.get(key, {})
            before = annotator_tally(doc)
            new = self._uncounted(facts[key], doc, existed, again)
            tally, suspension = fold_annotator(before, new, self.rule, suspended=bool(doc.get("suspended")))
            fields: dict[str, Any] = {"_id": key, "project": project, "annotator": annotator, **annotator_fields(tally),
                                      "recent_facts": recent_facts(doc, new)}
            if suspension is not None:
                flagged = self._suspended_flag(cause, project, annotator, suspension)
                fields |= {"suspended": True, "suspension": {"reason": suspension.why, "review": suspension.review_evidence,
                                                             **outbox(cause, [flagged])}}
                decided.append((project, annotator, suspension, flagged))
            writes.append(fields)
            added = len(facts[key]) if key in redo else tally.labels - before.labels
            if crossed(tally.labels, added, self.settings.drift_every):
                drift_due[project].append(annotator)
            self._golden_gauges(project, annotator, tally)
        await self.store.save_annotators(writes)
        out: list[Envelope] = []
        # After the suspensions are stored: a label stored before this reads them (services/qc/items.py).
        for project, annotator, suspension, flagged in decided:
            out.append(flagged)
            out.extend(await self._send_back_for_review(project, annotator, suspension))
        for project, names in drift_due.items():
            out.extend(await self.passes.drift(project, sorted(names)))
        return out

    async def _projects(self, keys: list[str], facts: dict[str, list[QcEvidence]], existed: set[str],
                        again: frozenset[str], redo: set[str]) -> list[Envelope]:
        if not keys:
            return []
        stored = await self.store.project_docs(keys)
        s = self.settings
        tallies: dict[str, tuple[ProjectTally, ProjectTally, list[str]]] = {}
        for project in keys:
            doc = stored.get(project, {})
            before = project_tally(doc)
            new = self._uncounted(facts[project], doc, existed, again)
            tallies[project] = (before, fold_project(before, new), recent_facts(doc, new))
        await self.store.save_projects({p: (after, recent) for p, (_, after, recent) in tallies.items()})
        out: list[Envelope] = []
        for project, (before, after, _) in tallies.items():
            if after.spot_n:
                self.metrics.spot_accuracy.labels(project).set(after.spot_correct / after.spot_n)
            labels_added, finals_added = after.labels - before.labels, after.finals - before.finals
            if project in redo:  # the interrupted attempt may have counted them, and died before the passes
                kinds = [f.kind for f in facts[project]]
                labels_added, finals_added = kinds.count(EvidenceKind.LABELLED), kinds.count(EvidenceKind.FINALIZED)
            if crossed(after.labels, labels_added, s.agreement_every):
                out.extend(await self.passes.agreement(project))
            number = growing_pass(after.finals, finals_added, s.label_error_every, s.label_error_growth)
            if number is not None:
                out.extend(await self.passes.label_errors(project, number))
        return out

    def _golden_gauges(self, project: str, annotator: str, tally: AnnotatorTally) -> None:
        if not tally.golden_n:
            return
        acc = tally.golden
        self.metrics.golden_accuracy.labels(project, annotator).set(acc.accuracy)
        self.metrics.golden_bound.labels(project, annotator, "lower").set(acc.lower)
        self.metrics.golden_bound.labels(project, annotator, "upper").set(acc.upper)

    @staticmethod
    def _suspended_flag(cause: Envelope, project: str, annotator: str, suspension: Suspension) -> QcFlagged:
        # Derived from the annotator, not the cause: an annotator is suspended once, whichever fact tipped it.
        return QcFlagged(
            event_id=derived_id(annotator_key(project, annotator), "suspended"), producer=SERVICE, project=project,
            subject=FlagSubject.ANNOTATOR, subject_id=annotator, kind=FlagKind.ANNOTATOR_SUSPENDED,
            message=suspension.message, evidence=suspension.evidence, correlation_id=cause.correlation_id,
        )

    async def _send_back_for_review(self, project: str, annotator: str, suspension: Suspension) -> list[QcFlagged]:
        """The suspended annotator's latest labels go to an expert, unless their label was already outvoted.

        The flags are the decision; the owner of each item marks it escalated when it reads them (the router
        re-routes it). Recomputed, never stored: a re-run after a crash sends the same flags (same ids) again.
        """
        latest = await self.store.latest_labels(project, annotator, self.settings.review_recent_labels)
        items = {d["item_id"]: d for d in await self.store.items_by_key(
            [item_key(project, i) for i in latest], {"item_id": 1, "final": 1, "escalated": 1})}
        flags = []
        for item_id, label in latest.items():
            doc = items.get(item_id, {})
            if doc.get("escalated") or (doc.get("final") and doc["final"]["label"] != label):
                continue  # an expert will look anyway, or the final label does not rest on this vote
            flags.append(review_flag(project, item_id, annotator, label, suspension.why, suspension.review_evidence))
        return flags

    async def _republish(self, causes: frozenset[str]) -> list[Envelope]:
        """Suspensions stored for events a killed process was handling, announced again with their reviews."""
        if not causes:
            return []
        out: list[Envelope] = []
        for doc in await self.store.suspensions_caused_by(list(causes)):
            flagged = unpack(doc["suspension"])
            out.extend(flagged)
            for f in flagged:
                if isinstance(f, QcFlagged) and f.kind is FlagKind.ANNOTATOR_SUSPENDED:
                    stored = doc["suspension"]
                    out.extend(await self._send_back_for_review(doc["project"], doc["annotator"], Suspension(
                        f.message, f.evidence, stored.get("reason", ""), stored.get("review", {}))))
        return out
