"""qc's periodic passes over stored labels: agreement and Dawid-Skene, drift per annotator, confident learning.

Each pass loads what it needs from qc's own database, calls the pure domain (in a thread, so the
consumer's event loop keeps serving), persists the result and returns the flags to publish.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import bulk_write, find_by_ids
from schemas.spans import TaskType
from schemas.events import FlagKind, FlagSubject, Provenance, QcFlagged, derived_id, utcnow
from schemas.keys import annotator_key, item_key
from services.qc.domain import drift, quality_drift
from services.qc.domain.agreement import AgreementReport, Record, agreement, below_threshold
from services.qc.domain.spans import span_agreement
from services.qc.domain.consensus import dawid_skene
from services.qc.domain.label_errors import label_error_pass
from services.qc.metrics import QcMetrics
from services.qc.settings import QcSettings

SERVICE = "qc"


def flag(project: str, kind: FlagKind, subject: FlagSubject, subject_id: str, message: str, evidence: dict[str, Any],
         *, cause: Sequence[str], item_id: str | None = None, correlation_id: str | None = None) -> QcFlagged:
    """A qc.flagged event whose id derives from its cause, so a re-run publishes the same id."""
    return QcFlagged(event_id=derived_id(project, kind.value, *cause), producer=SERVICE, project=project,
                     item_id=item_id, subject=subject, subject_id=subject_id, kind=kind, message=message,
                     evidence=evidence, correlation_id=correlation_id)


def _window_key(at: datetime, width_s: int) -> str:
    start = int(at.timestamp()) // width_s * width_s
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _report_doc(report: AgreementReport) -> dict[str, Any]:
    f = report.fleiss
    return {"items": report.items, "multiply_labelled": report.multiply_labelled, "alpha": report.alpha,
            "fleiss": {"kappa": f.kappa, "raters": f.raters, "items_used": f.items_used,
                       "items_dropped": f.items_dropped},
            "kappa_mean": report.kappa.mean(),
            "pairs": [{"a": a, "b": b, "kappa": k, "shared": n} for a, b, k, n in report.kappa.pairs()]}


class Passes:
    def __init__(self, db: AsyncDatabase, settings: QcSettings, metrics: QcMetrics) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics

    async def project_labels(self, project: str) -> list[dict[str, Any]]:
        """Every human label of a project (golden answers included), in the order they happened."""
        docs = [d async for d in self.db["labels"].find(
            {"project": project},
            {"item_id": 1, "annotator": 1, "label": 1, "expert": 1, "golden": 1, "time_spent_ms": 1, "at": 1},
        )]
        docs.sort(key=lambda d: (d["at"], d["_id"]))
        return docs

    async def model_labels(self, project: str, item_ids: Sequence[str]) -> dict[str, str]:
        """item -> the model's top-1 pre-label, the reference quality drift compares each label with, for the
        labelled items only (by `_id`): every item of the project at every drift pass, as before, is reads that grow
        with the square of the project (a 10,000-item rebuild runs about a hundred drift passes)."""
        out = {}
        keys = [item_key(project, i) for i in dict.fromkeys(item_ids)]
        for d in await find_by_ids(self.db["items"], keys, {"item_id": 1, "prelabel": 1, "top_k": 1}):
            if d.get("prelabel"):
                out[d["item_id"]] = d["prelabel"][0]
            elif d.get("top_k"):
                out[d["item_id"]] = d["top_k"][0]["label"]
        return out

    # --- agreement and Dawid-Skene --------------------------------------------------------------------
    async def agreement(self, project: str) -> list[QcFlagged]:
        """Agreement over the whole project and per time window; Dawid-Skene reliability per annotator."""
        docs = await self.project_labels(project)
        records: list[Record] = [(d["item_id"], d["annotator"], d["label"]) for d in docs if not d["expert"]]
        if await self._is_spans(project):
            return await self._span_agreement(project, records)
        windows: dict[str, list[Record]] = defaultdict(list)
        for d in docs:
            if not d["expert"]:
                windows[_window_key(d["at"], self.settings.agreement_window_s)].append(
                    (d["item_id"], d["annotator"], d["label"]))
        known = {d["_id"]: d async for d in self.db["agreement"].find({"project": project})}
        todo = {"all": records, **windows}
        todo = {w: r for w, r in todo.items() if known.get(f"{project}/{w}", {}).get("labels") != len(r)}
        reports = await asyncio.to_thread(lambda: {w: agreement(r) for w, r in todo.items()})
        out: list[QcFlagged] = []
        writes = []
        for window, report in reports.items():
            key = f"{project}/{window}"
            shortfalls = below_threshold(report, min_alpha=self.settings.min_alpha, min_kappa=self.settings.min_kappa,
                                         min_items=self.settings.agreement_min_items)
            previous = known.get(key, {})
            episode = previous.get("episode", 0)
            doc = {"project": project, "window": window, "labels": len(todo[window]), "at": utcnow(),
                   **_report_doc(report),
                   "shortfalls": [{"measure": s.measure, "value": s.value, "threshold": s.threshold,
                                   "items": s.items, "annotators": list(s.annotators)} for s in shortfalls],
                   "flag_open": bool(shortfalls), "episode": episode}
            if shortfalls and not previous.get("flag_open"):
                doc["episode"] = episode + 1
                worst = min(shortfalls, key=lambda s: s.value - s.threshold)
                where = "the whole project" if window == "all" else f"the window starting {window}"
                out.append(flag(
                    project, FlagKind.LOW_AGREEMENT, FlagSubject.DATASET, project,
                    f"agreement below threshold over {where}: {len(shortfalls)} measure(s), worst {worst.measure} "
                    f"{worst.value:.2f} < {worst.threshold:.2f} over {worst.items} items"
                    + (f" ({' vs '.join(worst.annotators)})" if worst.annotators else ""),
                    {"window": window, "shortfalls": doc["shortfalls"], "alpha": report.alpha,
                     "fleiss_kappa": report.fleiss.kappa, "mean_cohen_kappa": report.kappa.mean()},
                    cause=(window, str(doc["episode"])),
                ))
            writes.append(UpdateOne({"_id": key}, {"$set": doc}, upsert=True))
            self._agreement_gauges(project, "all" if window == "all" else "latest", report)
        if writes:
            await bulk_write(self.db["agreement"], writes, ordered=False)
        await self._dawid_skene(project, docs)
        return out

    async def _is_spans(self, project: str) -> bool:
        config = await self.db["projects"].find_one({"_id": project}, {"task": 1})
        return (config or {}).get("task") == TaskType.SPANS.value

    async def _span_agreement(self, project: str, records: list[Record]) -> list[QcFlagged]:
        """A spans project's agreement: span F1 between annotators (kappa and alpha over whole answers would call
        two answers that differ in one boundary as different as two with nothing in common); flagged below
        min_span_f1 over agreement_min_items multiply-labelled items, once per episode."""
        key = f"{project}/all"
        previous = await self.db["agreement"].find_one({"_id": key}) or {}
        if previous.get("labels") == len(records):
            return []
        report = await asyncio.to_thread(span_agreement, records, await self._texts(project, records))
        low = (report.mean_f1 is not None and report.multiply_labelled >= self.settings.agreement_min_items
               and report.mean_f1 < self.settings.min_span_f1)
        episode = previous.get("episode", 0) + (1 if low and not previous.get("flag_open") else 0)
        doc = {"project": project, "window": "all", "labels": len(records), "at": utcnow(), "items": report.items,
               "multiply_labelled": report.multiply_labelled, "span_f1": report.mean_f1,
               "krippendorff_alpha": report.alpha, "alpha_items": report.alpha_items,
               "pairs": [{"a": a, "b": b, "span_f1": f1, "shared": n} for a, b, f1, n in report.pairs],
               "flag_open": low, "episode": episode}
        await self.db["agreement"].update_one({"_id": key}, {"$set": doc}, upsert=True)
        for measure, value in (("span_f1", report.mean_f1), ("krippendorff_alpha", report.alpha)):
            if value is not None:
                self.metrics.agreement.labels(project, "all", measure).set(value)
        if not low or previous.get("flag_open"):
            return []
        return [flag(project, FlagKind.LOW_AGREEMENT, FlagSubject.DATASET, project,
                     f"span F1 between annotators {report.mean_f1:.2f} < {self.settings.min_span_f1:.2f} over "
                     f"{report.multiply_labelled} items labelled more than once",
                     {"window": "all", "span_f1": report.mean_f1, "krippendorff_alpha": report.alpha,
                      "pairs": doc["pairs"]},
                     cause=("all", str(episode)))]

    async def _texts(self, project: str, records: list[Record]) -> dict[str, str]:
        """The texts of the items answered more than once (their words are the units of alpha), as qc stored them
        from item.ingested."""
        answered = Counter(item for item, _ in {(item, annotator) for item, annotator, _ in records})
        ids = [item_key(project, item) for item, n in answered.items() if n >= 2]
        docs = await find_by_ids(self.db["items"], ids, {"item_id": 1, "text": 1})
        return {d["item_id"]: d["text"] for d in docs if d.get("text") is not None}

    def _agreement_gauges(self, project: str, window: str, report: AgreementReport) -> None:
        for measure, value in (("krippendorff_alpha", report.alpha), ("fleiss_kappa", report.fleiss.kappa),
                               ("mean_cohen_kappa", report.kappa.mean())):
            if value is not None:
                self.metrics.agreement.labels(project, window, measure).set(value)
        if window == "all":
            for a, b, kappa, _ in report.kappa.pairs():
                if kappa is not None:
                    self.metrics.pair_kappa.labels(project, a, b).set(kappa)

    async def _dawid_skene(self, project: str, docs: list[dict[str, Any]]) -> None:
        per_item = Counter(d["item_id"] for d in docs)
        records = [(d["item_id"], d["annotator"], d["label"]) for d in docs if per_item[d["item_id"]] >= 2]
        if not records:
            return
        result = await asyncio.to_thread(dawid_skene, records)
        items_per_worker = Counter(w for _, w in {(t, w) for t, w, _ in records})
        for worker, accuracy in result.worker_accuracy.items():
            self.metrics.reliability.labels(project, worker).set(accuracy)
        # One document per project, beside (not in) the annotators' own: those have another writer, the owner
        # of the annotator's partition (services/qc/store.py).
        await self.db["reliability"].replace_one({"_id": project}, {
            "project": project,
            "annotators": [{"annotator": w, "accuracy": a, "items": items_per_worker[w]}
                           for w, a in sorted(result.worker_accuracy.items())]}, upsert=True)

    # --- drift and fatigue -------------------------------------------------------------------------------
    async def drift(self, project: str, annotators: Sequence[str]) -> list[QcFlagged]:
        """Label mix, time per label and agreement with the model's pre-label, vs own baseline and the crowd."""
        docs = [d for d in await self.project_labels(project) if not d["expert"]]
        model = await self.model_labels(project, [d["item_id"] for d in docs])
        for d in docs:
            d["model_label"] = model.get(d["item_id"])
        state = {d["annotator"]: d async for d in self.db["annotators"].find(
            {"project": project, "annotator": {"$in": list(annotators)}})}
        out: list[QcFlagged] = []
        for annotator in annotators:
            own = [d for d in docs if d["annotator"] == annotator]
            others = [d for d in docs if d["annotator"] != annotator]
            crowd = Counter(d["label"] for d in others)
            ref_others = [d["model_label"] == d["label"] for d in others if d.get("model_label")]
            outcomes = [d["model_label"] == d["label"] for d in own if d.get("model_label")]
            s = self.settings
            label_findings = await asyncio.to_thread(
                drift.scan, [d["label"] for d in own], times_ms=[float(d["time_spent_ms"]) for d in own],
                crowd=crowd or None, baseline=s.drift_baseline, window=s.drift_window, step=s.drift_step,
                alpha=s.drift_alpha,
            )
            quality = quality_drift.scan_agreement(
                outcomes, crowd=(sum(ref_others), len(ref_others)) if ref_others else None,
                baseline=s.quality_baseline, window=s.quality_window, step=s.quality_step, alpha=s.drift_alpha,
                min_drop=s.quality_min_drop,
            )
            done = set(state.get(annotator, {}).get("drift_flagged", []))
            found: dict[str, tuple[str, dict[str, Any]]] = {}
            for kind in drift.DriftKind:
                first = drift.first_significant(label_findings, kind)
                if first is not None:
                    found[f"labels_{kind.value}" if kind is not drift.DriftKind.TIME else "time"] = (first.message, {
                        "statistic": first.statistic, "p_value": first.p_value, "start": first.start,
                        "end": first.end, "most_increased": first.most_increased})
            for against in ("baseline", "crowd"):
                first_q = quality_drift.first_drop(quality, against)  # type: ignore[arg-type]
                if first_q is not None:
                    found[f"quality_{against}"] = (first_q.message, {
                        "rate": first_q.rate, "reference_rate": first_q.reference_rate, "p_value": first_q.p_value,
                        "start": first_q.start, "end": first_q.end, "reference": "model pre-label"})
            new = {k: v for k, v in found.items() if k not in done}
            if not new:
                continue
            for test, (message, evidence) in sorted(new.items()):
                out.append(flag(project, FlagKind.DRIFT, FlagSubject.ANNOTATOR, annotator,
                                f"{annotator} drifted ({test}): {message}",
                                {"test": test, "annotator": annotator, "labels_seen": len(own), **evidence},
                                cause=(annotator, test)))
            await self.db["annotators"].update_one(
                {"_id": annotator_key(project, annotator)},
                {"$set": {"project": project, "annotator": annotator, "drift_flagged": sorted(done | set(new)),
                          "drift_at": utcnow()}},
                upsert=True,
            )
        return out

    # --- confident learning ---------------------------------------------------------------------------
    async def label_errors(self, project: str, pass_no: int) -> list[QcFlagged]:
        """Rank likely label errors among the final labels (out-of-fold probabilities); flag the top ones. Not on
        spans projects: a sentence classifier over whole span sets (nearly one class per item) finds nothing."""
        if await self._is_spans(project):
            return []
        docs = [d async for d in self.db["items"].find(
            {"project": project, "final": {"$exists": True}, "embedding": {"$exists": True}},
            {"item_id": 1, "final": 1, "embedding": 1},
        )]
        if len(docs) < 2 * self.settings.label_error_folds:
            return []
        x = np.stack([np.frombuffer(d["embedding"], np.float32) for d in docs])
        labels = [d["final"]["label"] for d in docs]
        ids = [d["item_id"] for d in docs]
        report = await asyncio.to_thread(label_error_pass, x, labels, ids, folds=self.settings.label_error_folds)
        by_id = {d["item_id"]: d for d in docs}
        # Imported labels (golden, trusted) are known answers: never flagged, though they train the pass.
        issues = [i for i in report.issues if by_id[i.item_id]["final"]["provenance"] != Provenance.IMPORTED.value]
        self.metrics.label_issues.labels(project).set(len(issues))
        top = issues[: self.settings.label_error_max_flags]
        known = {d["_id"]: d for d in await find_by_ids(self.db["label_issues"],
                                                         [item_key(project, i.item_id) for i in top])}
        out: list[QcFlagged] = []
        writes = []
        for rank, issue in enumerate(top, start=1):
            final = by_id[issue.item_id]["final"]
            key = item_key(project, issue.item_id)
            evidence = {"given": issue.given, "suggested": issue.suggested, "self_confidence": issue.self_confidence,
                        "normalized_margin": issue.normalized_margin, "rank": rank, "of": len(issues),
                        "pass": pass_no, "labelled_items": len(docs), "final_version": final["version"]}
            writes.append(UpdateOne({"_id": key}, {"$set": {"project": project, "item_id": issue.item_id,
                                                            "at": utcnow(), **evidence}}, upsert=True))
            if known.get(key, {}).get("final_version") == final["version"]:
                continue  # already flagged for this version of the label
            out.append(flag(
                project, FlagKind.LIKELY_LABEL_ERROR, FlagSubject.ITEM, issue.item_id,
                f"likely label error (rank {rank} of {len(issues)}): labelled {issue.given!r}, but a model that never "
                f"saw this label gives it {issue.self_confidence:.0%} and confidently prefers {issue.suggested!r}",
                evidence, cause=(issue.item_id, str(final["version"])), item_id=issue.item_id,
            ))
        if writes:
            await bulk_write(self.db["label_issues"], writes, ordered=False)
        await self.db["label_error_passes"].update_one(
            {"_id": f"{project}/{pass_no}"},
            {"$set": {"project": project, "pass": pass_no, "at": utcnow(), "labelled_items": len(docs),
                      "issues": len(issues), "skipped": len(report.skipped), "flagged": len(out)}},
            upsert=True,
        )
        return out
