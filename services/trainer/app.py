"""The trainer service: keeps versioned final labels with their embeddings, retrains, promotes, publishes models.

It runs as one process (TrainerSettings says why, and what two would break); its version numbers are safe
with two anyway (services/trainer/registry.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from gridfs import AsyncGridFSBucket
from prometheus_client import Counter, Gauge, Histogram
from threadpoolctl import threadpool_limits

from labelmesh.ml.head import TrainedHead, sha256_hex, train_head
from labelmesh.runtime.mongo import find_by_ids, insert_new, upsert_by_id, upsert_many
from labelmesh.runtime.pacing import next_due
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    ArtifactRef,
    Envelope,
    ItemPrelabeled,
    LabelFinalized,
    ModelUpdated,
    Thresholds,
    derived_id,
    utcnow,
)
from schemas.keys import item_key
from services.trainer.evaluation import (
    decide_promotion,
    evaluate,
    judges_models,
    recommend_thresholds,
)
from services.trainer.items import ItemTexts
from services.trainer.lineage import in_holdout, member_key, training_set_version
from services.trainer.registry import model_key, register
from services.trainer.settings import TrainerSettings

SERVICE = "trainer"
log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, rt: ServiceRuntime, settings: TrainerSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.examples = rt.db["examples"]
        self.models = rt.db["models"]
        self.artifacts = AsyncGridFSBucket(rt.db, bucket_name="artifacts")
        self._lock = asyncio.Lock()
        self._last_check: dict[str, float] = {}
        self.runs = Counter("labelmesh_trainer_runs_total", "Training runs", ["project", "outcome"],
                            registry=rt.registry)
        self.seconds = Histogram("labelmesh_trainer_train_seconds", "Time per training run", registry=rt.registry)
        self.version = Gauge("labelmesh_trainer_model_version", "Champion model version", ["project"],
                             registry=rt.registry)
        self.heldout = Gauge("labelmesh_trainer_heldout_accuracy", "Champion's held-out accuracy", ["project"],
                             registry=rt.registry)
        # Training runs beside the consumer, not inside its handler: a run takes seconds to minutes of CPU,
        # and a handler that long would hold its batch uncommitted and starve the group's heartbeats.
        self._due: set[str] = set()
        self._next_check: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        self.rt.bus.subscribe([ItemPrelabeled.TOPIC, LabelFinalized.TOPIC], self.on_events, max_records=1000)
        self.rt.on_start.append(self.start_background)
        self.rt.on_started.append(self.publish_pending)
        self.rt.on_stop.append(self.stop_background)

    async def start_background(self) -> None:
        # Labels stored just before a crash may not have been looked at yet: check every known project once.
        for project in await self.examples.distinct("project"):
            self.request_check(project)
        self._tasks.append(asyncio.create_task(self._train_loop(), name="trainer-runs"))
        if self.settings.retrain_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._tick(), name="trainer-ticker"))

    async def stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def request_check(self, project: str) -> None:
        """Ask the training loop to look at a project (train if due); cheap, never blocks the caller."""
        self._due.add(project)
        self._wake.set()

    async def _train_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._due:
                project = self._due.pop()
                wait = self._next_check.get(project, 0.0) - time.monotonic()
                if wait > 0:  # see maybe_train: the count is spaced to a small share of the time
                    await asyncio.sleep(wait)
                try:
                    await self.publish_pending()  # a model whose announcement failed (the broker was away)
                    await self.maybe_train(project)
                except Exception:  # noqa: BLE001 - the stored labels stay; the check is retried shortly
                    log.exception("training check for %s failed; retrying in %.0fs", project,
                                  self.settings.retry_delay_s)
                    await asyncio.sleep(self.settings.retry_delay_s)
                    self.request_check(project)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retrain_interval_s)
            async for state in self.rt.db["train_state"].find():
                try:
                    await self.maybe_train(state["_id"], by_time=True)
                except Exception:  # noqa: BLE001 - a failed timed run is retried at the next tick
                    log.exception("timed retrain of %s failed", state["_id"])

    async def on_events(self, events: list[Envelope]) -> None:
        # One merged $set per example: new examples (nearly all) are then one insert for the whole batch.
        sets: dict[str, dict[str, Any]] = {}
        versions: list[dict[str, Any]] = []
        # Versions already stored, read by id: FerretDB 1.24 stalls on $or filters in updates, so
        # "newer version only" is decided here rather than in the update's filter.
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        stored = {d["_id"]: d.get("version", 0) for d in await find_by_ids(
            self.examples, [item_key(e.project, e.item_id) for e in finals], {"version": 1})}
        for event in events:
            key = item_key(event.project, event.item_id)
            if isinstance(event, ItemPrelabeled):
                vector = np.asarray(event.embedding, dtype=np.float32)
                sets.setdefault(key, {"_id": key}).update(
                    project=event.project, item_id=event.item_id, embedding=vector.tobytes(), encoder=event.encoder)
            elif isinstance(event, LabelFinalized):
                if stored.get(key, 0) >= event.version:
                    continue
                stored[key] = event.version
                sets.setdefault(key, {"_id": key}).update(
                    project=event.project, item_id=event.item_id, label=event.label, version=event.version,
                    provenance=event.provenance.value, golden=event.golden, guideline_version=event.guideline_version,
                    holdout=event.golden or in_holdout(event.project, event.item_id, self.settings.holdout_fraction))
                versions.append({"_id": f"{key}@{event.version}",
                                 "project": event.project, "item_id": event.item_id, "version": event.version,
                                 "label": event.label, "provenance": event.provenance.value,
                                 "guideline_version": event.guideline_version, "at": event.occurred_at})
        docs = list(sets.values())
        existed = await upsert_many(self.examples, docs, merge=True)
        await upsert_many(self.rt.db["label_versions"], versions)
        # The count of usable examples changes only with a label, or with an embedding for an example stored
        # before (its label may have come first); a batch of new items' embeddings alone changes nothing.
        for project in {e.project for e in finals} | {docs[i]["project"] for i in existed}:
            self.request_check(project)

    async def _usable(self, project: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The project's labelled examples with an embedding, (trained on, held out), each ordered by _id.

        One query, split here: FerretDB scans the whole collection for each (bench/results/retrain_time.json).
        """
        query = {"project": project, "label": {"$exists": True}, "embedding": {"$exists": True}}
        docs = [d async for d in self.examples.find(query, sort=[("_id", 1)])]
        return [d for d in docs if d.get("holdout") is False], [d for d in docs if d.get("holdout") is True]

    async def maybe_train(self, project: str, by_time: bool = False) -> None:
        async with self._lock:
            state = {"trained_on": 0, "champion": None,
                     **(await self.rt.db["train_state"].find_one({"_id": project}) or {})}
            counted = time.monotonic()
            n = await self.examples.count_documents(
                {"project": project, "label": {"$exists": True}, "embedding": {"$exists": True}, "holdout": False}
            )
            # The count reads every example: 0.9 s each at a few thousand examples under load. The next check
            # is spaced (labelmesh.runtime.pacing); a retrain is then due a little later, on a few more labels.
            self._next_check[project] = next_due(counted)
            await upsert_by_id(self.rt.db["train_state"], project, {"$set": {"available": n}})
            fresh = n - state["trained_on"]
            due = (
                (state["champion"] is None and n >= self.settings.first_model_min)
                or (state["champion"] is not None and fresh >= self.settings.retrain_every)
                or (by_time and state["champion"] is not None and fresh > 0)
            )
            if due:
                await self.train(project, state)

    async def train(self, project: str, state: dict[str, Any]) -> ModelUpdated | None:
        config = await self.catalog.get(project)
        if config is None:
            return None
        train_docs, held_out = await self._usable(project)
        eval_docs = [d for d in held_out
                     if judges_models(d.get("provenance"), exclude_auto=self.settings.heldout_excludes_auto)]
        X = np.stack([np.frombuffer(d["embedding"], np.float32) for d in train_docs])
        y = [d["label"] for d in train_docs]
        encoder = train_docs[0]["encoder"]
        X_eval = np.stack([np.frombuffer(d["embedding"], np.float32) for d in eval_docs]) if eval_docs else X[:0]
        y_eval = [d["label"] for d in eval_docs]
        # Temperature from the held-out labels once there are enough of them: one fit instead of 6-21
        # cross-validation fits (bench/results/retrain_time.json), and a random holdout calibrates better
        # than out-of-fold logits of actively chosen training items. Small projects keep cross-validation.
        calibrate_on_holdout = len(eval_docs) >= self.settings.calibration_min_holdout
        champion_head = await self._load(project, state["champion"]) if state.get("champion") else None
        started = time.perf_counter()
        head = await asyncio.to_thread(
            self._fit, X, y, X_eval if calibrate_on_holdout else None, y_eval if calibrate_on_holdout else None,
            encoder, config.labels, champion_head,
        )
        seconds = time.perf_counter() - started
        self.seconds.observe(seconds)
        challenger = evaluate(head, X_eval, y_eval)
        champion_eval = None if champion_head is None else evaluate(champion_head, X_eval, y_eval)
        decision = decide_promotion(challenger, champion_eval, self.settings.promotion_alpha,
                                    self.settings.min_eval_items)
        members = [(d["item_id"], d["version"], d["label"]) for d in train_docs]
        ts_version = training_set_version(members)
        # Content-addressed, so one already there is this one: an insert that leaves an existing id alone (two
        # upserts of one new _id at once can both try to insert, and one fails with a duplicate key).
        await insert_new(self.rt.db["training_sets"], [
            {"_id": ts_version, "project": project, "size": len(members), "created_at": utcnow(),
             "members": [member_key(i, v) for i, v, _ in members],
             "guideline_versions": sorted({d.get("guideline_version") or 0 for d in train_docs})}])
        content = head.to_bytes()
        digest = sha256_hex(content)
        # Named after what it was trained on, not its version: the version is known only once registered.
        file_id = await self.artifacts.upload_from_stream(
            f"{project}-{ts_version}.npz", content,
            metadata={"project": project, "training_set_version": ts_version, "sha256": digest},
        )
        metrics = {"heldout_n": float(challenger.n), "heldout_accuracy": challenger.accuracy,
                   "heldout_ece": challenger.ece, "train_seconds": seconds, "train_size": float(len(members))}
        if champion_eval is not None:
            metrics["champion_heldout_accuracy"] = champion_eval.accuracy
        thresholds = recommend_thresholds(challenger, config.target_auto_error)

        def announcement(version: int) -> ModelUpdated:
            return ModelUpdated(
                event_id=derived_id(project, "model", str(version), ts_version),
                producer=SERVICE, project=project, model_version=version, encoder=encoder,
                artifact=ArtifactRef(uri=f"gridfs://{self.rt.db.name}/artifacts/{file_id}", sha256=digest,
                                     size=len(content), content_b64=""),
                training_set_version=ts_version, training_set_size=len(members),
                heldout_metrics={k: v for k, v in metrics.items() if np.isfinite(v)},
                calibration={"temperature": float(head.temperature)},
                recommended_thresholds=Thresholds(auto_accept=thresholds.auto_accept,
                                                  single_review=thresholds.single_review),
            )

        # A promoted model carries its announcement (the artifact itself left out: it is in GridFS), marked
        # published only once the broker has it; a trainer killed in between publishes it on its next start.
        version = await register(self.models, project, lambda v: {
            "artifact_id": file_id, "sha256": digest, "size": len(content), "training_set_version": ts_version,
            "metrics": metrics, "promoted": decision.promote, "reason": decision.reason, "created_at": utcnow(),
            "encoder": encoder,
            "thresholds": {"auto_accept": thresholds.auto_accept, "single_review": thresholds.single_review},
            **({"outbox": announcement(v).model_dump_json(), "published": False} if decision.promote else {}),
        })
        stored = announcement(version)
        event = stored.model_copy(update={"artifact": stored.artifact.model_copy(
            update={"content_b64": base64.b64encode(content).decode()})})
        # $max: a champion is never replaced by an older version, whatever order two trainers finish in.
        await upsert_by_id(self.rt.db["train_state"], project,
                           {"$set": {"trained_on": len(members)},
                            **({"$max": {"champion": version}} if decision.promote else {})})
        self.runs.labels(project, "promoted" if decision.promote else "kept_champion").inc()
        log.info("%s model v%d: %s (%.1fs)", project, version, decision.reason, seconds)
        if not decision.promote:
            return None
        await self.rt.bus.publish([event])
        await self.models.update_one({"_id": model_key(project, version)}, {"$set": {"published": True}})
        self.version.labels(project).set(version)
        if np.isfinite(challenger.accuracy):
            self.heldout.labels(project).set(challenger.accuracy)
        return event

    def _fit(self, X: np.ndarray, y: list[str], X_cal: np.ndarray | None, y_cal: list[str] | None, encoder: str,
             classes: Sequence[str], champion: TrainedHead | None) -> TrainedHead:
        # Warm-started from the champion of the same encoder, with BLAS held to `fit_threads` (TrainerSettings
        # says why).
        with threadpool_limits(self.settings.fit_threads):
            return train_head(X, y, X_cal, y_cal, encoder_name=encoder, classes=classes,
                              warm_start=champion if self.settings.warm_start and champion is not None
                              and champion.encoder_name == encoder else None)

    async def publish_pending(self) -> int:
        """Announce each project's champion that was promoted but whose model.updated never reached the broker."""
        sent = 0
        async for state in self.rt.db["train_state"].find({"champion": {"$exists": True}}):
            doc = await self.models.find_one({"_id": model_key(state["_id"], state["champion"])})
            if doc is None or doc.get("published", True) or "outbox" not in doc:
                continue
            stream = await self.artifacts.open_download_stream(doc["artifact_id"])
            content = await stream.read()
            announcement = ModelUpdated.model_validate_json(doc["outbox"])
            artifact = announcement.artifact.model_copy(update={"content_b64": base64.b64encode(content).decode()})
            await self.rt.bus.publish([announcement.model_copy(update={"artifact": artifact})])
            await self.models.update_one({"_id": doc["_id"]}, {"$set": {"published": True}})
            log.warning("published model v%d of %s, promoted before the last stop but not announced",
                        doc["version"], state["_id"])
            sent += 1
        return sent

    async def _load(self, project: str, version: int) -> TrainedHead:
        doc = await self.models.find_one({"_id": model_key(project, version)})
        stream = await self.artifacts.open_download_stream(doc["artifact_id"])
        content = await stream.read()
        if sha256_hex(content) != doc["sha256"]:
            raise RuntimeError(f"stored artifact {project} v{version} fails its checksum")
        return TrainedHead.from_bytes(content)


def create_app(settings: TrainerSettings | None = None) -> ServiceRuntime:
    settings = settings or TrainerSettings()
    rt = ServiceRuntime(SERVICE, settings)
    trainer = Trainer(rt, settings)
    trainer.wire()
    ItemTexts(rt.db).attach(rt.bus)
    rt.component = trainer
    return rt
