"""The trainer's handlers: keep versioned final labels with their embeddings, retrain when due, promote, publish.

It runs as one process (TrainerSettings says why, and what two would break); its version numbers are safe with
two anyway (services/trainer/store.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from labelmesh.ml.head import TrainedHead, sha256_hex
from labelmesh.ml.spans import features_name, word_features
from labelmesh.runtime.pacing import next_due
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Envelope, ItemPrelabeled, LabelFinalized, ModelUpdated, utcnow
from schemas.keys import item_key
from schemas.spans import TaskType
from services.trainer.domain.evaluation import Evaluation, decide_promotion, evaluate, recommend_thresholds
from services.trainer.domain.examples import fold_events
from services.trainer.domain.spans import eval_examples, evaluate_tagger, fit_tagger, span_examples
from services.trainer.domain.training import (
    TrainingData,
    announcement,
    finite,
    fit,
    retrain_due,
    run_metrics,
    training_data,
)
from services.trainer.queries import item_texts
from services.trainer.registry import model_key
from services.trainer.settings import TrainerSettings
from services.trainer.store import ExampleStore, ModelStore, TrainStateStore

SERVICE = "trainer"
log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, rt: ServiceRuntime, settings: TrainerSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.store = ExampleStore(rt.db)
        self.states = TrainStateStore(rt.db)
        self.registry = ModelStore(rt.db)
        self._lock = asyncio.Lock()
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
        self.word_features = None  # a spans project's word features, loaded for its first training run

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        self.rt.bus.subscribe([ItemPrelabeled.TOPIC, LabelFinalized.TOPIC], self.on_events, max_records=1000)
        self.rt.on_start.append(self.start_background)
        self.rt.on_started.append(self.publish_pending)
        self.rt.on_stop.append(self.stop_background)

    async def start_background(self) -> None:
        # Labels stored just before a crash may not have been looked at yet: check every known project once.
        for project in await self.store.projects():
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
            async for state in self.states.all():
                try:
                    await self.maybe_train(state["_id"], by_time=True)
                except Exception:  # noqa: BLE001 - a failed timed run is retried at the next tick
                    log.exception("timed retrain of %s failed", state["_id"])

    async def on_events(self, events: list[Envelope]) -> None:
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        stored = await self.store.label_versions_of([item_key(e.project, e.item_id) for e in finals])
        changes = fold_events(events, stored, self.settings.holdout_fraction)
        existed = await self.store.apply(changes)
        # The count of usable examples changes only with a label, or with an embedding for an example stored
        # before (its label may have come first); a batch of new items' embeddings alone changes nothing.
        for project in changes.labelled | existed:
            self.request_check(project)

    async def maybe_train(self, project: str, by_time: bool = False) -> None:
        async with self._lock:
            state = await self.states.get(project)
            counted = time.monotonic()
            n = await self.store.count_usable(project)
            # The count reads every example: 0.9 s each at a few thousand examples under load. The next check
            # is spaced (labelmesh.runtime.pacing); a retrain is then due a little later, on a few more labels.
            self._next_check[project] = next_due(counted)
            await self.states.set_available(project, n)
            if retrain_due(available=n, trained_on=state["trained_on"], has_champion=state["champion"] is not None,
                           first_model_min=self.settings.first_model_min, retrain_every=self.settings.retrain_every,
                           by_time=by_time):
                await self.train(project, state)

    async def train(self, project: str, state: dict[str, Any]) -> ModelUpdated | None:
        config = await self.catalog.get(project)
        if config is None:
            return None
        train_docs, held_out = await self.store.usable(project)
        data = training_data(train_docs, held_out, exclude_auto=self.settings.heldout_excludes_auto)
        started = time.perf_counter()
        if config.task is TaskType.SPANS:
            fitted = await self._fit_spans(project, state, data, config.labels, train_docs, held_out)
            if fitted is None:
                return None
        else:
            fitted = await self._fit_head(project, state, data, config.labels)
        content, temperature, challenger, champion_eval, extra = fitted
        seconds = time.perf_counter() - started
        self.seconds.observe(seconds)
        decision = decide_promotion(challenger, champion_eval, self.settings.promotion_alpha,
                                    self.settings.min_eval_items)
        ts_version = await self.registry.record_training_set(project, data)
        digest = sha256_hex(content)
        file_id, uri = await self.registry.upload(project, ts_version, content)
        metrics = {**run_metrics(challenger, champion_eval, seconds, len(data.members)), **extra}
        thresholds = recommend_thresholds(challenger, config.target_auto_error)

        def announce(version: int) -> ModelUpdated:
            return announcement(producer=SERVICE, project=project, version=version, encoder=data.encoder,
                                artifact_uri=uri, sha256=digest, size=len(content), training_set=ts_version,
                                training_set_size=len(data.members), metrics=metrics, temperature=temperature,
                                thresholds=thresholds)

        # A promoted model carries its announcement (the artifact itself left out: it is in GridFS), marked
        # published only once the broker has it; a trainer killed in between publishes it on its next start.
        version = await self.registry.register(project, lambda v: {
            "artifact_id": file_id, "sha256": digest, "size": len(content), "training_set_version": ts_version,
            "metrics": finite(metrics), "promoted": decision.promote, "reason": decision.reason, "created_at": utcnow(),
            "encoder": data.encoder,
            "thresholds": {"auto_accept": thresholds.auto_accept, "single_review": thresholds.single_review},
            **({"outbox": announce(v).model_dump_json(), "published": False} if decision.promote else {}),
        })
        stored = announce(version)
        event = stored.model_copy(update={"artifact": stored.artifact.model_copy(
            update={"content_b64": base64.b64encode(content).decode()})})
        await self.states.trained(project, len(data.members), version if decision.promote else None)
        self.runs.labels(project, "promoted" if decision.promote else "kept_champion").inc()
        log.info("%s model v%d: %s (%.1fs)", project, version, decision.reason, seconds)
        if not decision.promote:
            return None
        await self.rt.bus.publish([event])
        await self.registry.mark_published(model_key(project, version))
        self.version.labels(project).set(version)
        if np.isfinite(challenger.accuracy):
            self.heldout.labels(project).set(challenger.accuracy)
        return event

    async def _fit_head(self, project: str, state: dict[str, Any], data: TrainingData, labels: Sequence[str]
                        ) -> tuple[bytes, float, Evaluation, Evaluation | None, dict[str, float]]:
        """A classification head: its artifact, temperature, and the challenger's and champion's evaluations."""
        champion_head = await self._load(project, state["champion"]) if state.get("champion") else None
        head = await asyncio.to_thread(
            fit, data, labels, champion_head, calibration_min_holdout=self.settings.calibration_min_holdout,
            warm_start=self.settings.warm_start, fit_threads=self.settings.fit_threads)
        challenger = evaluate(head, data.X_eval, data.y_eval)
        champion_eval = None if champion_head is None else evaluate(champion_head, data.X_eval, data.y_eval)
        return head.to_bytes(), head.temperature, challenger, champion_eval, {}

    async def _fit_spans(self, project: str, state: dict[str, Any], data: TrainingData, types: Sequence[str],
                         train_docs: list[dict[str, Any]], held_out: list[dict[str, Any]]
                         ) -> tuple[bytes, float, Evaluation, Evaluation | None, dict[str, float]] | None:
        """A span tagger from the final spans and the items' texts (None: no text has arrived yet), judged like a
        head: an item is right only if all its spans are; held-out span F1 recorded beside."""
        texts = await item_texts(self.rt.db, project)
        examples = span_examples(train_docs, texts)
        if not examples:
            return None
        evaluation = eval_examples(held_out, texts, exclude_auto=self.settings.heldout_excludes_auto)
        if self.word_features is None:
            self.word_features = word_features(data.encoder)
        features = self.word_features
        name = features_name(data.encoder)
        tagger = await asyncio.to_thread(fit_tagger, examples, types, features, name,
                                         fit_threads=self.settings.fit_threads)
        challenger, f1 = await asyncio.to_thread(evaluate_tagger, tagger, evaluation, features)
        champion_eval = None
        if state.get("champion"):
            champion = await self.registry.load_tagger(project, state["champion"])
            if champion.features == name:
                champion_eval, _ = await asyncio.to_thread(evaluate_tagger, champion, evaluation, features)
        extra = {"heldout_span_f1": f1} if evaluation else {}
        return tagger.to_bytes(), 1.0, challenger, champion_eval, extra

    async def publish_pending(self) -> int:
        """Announce each project's champion that was promoted but whose model.updated never reached the broker."""
        sent = 0
        async for state in self.states.with_champion():
            doc = await self.registry.get(state["_id"], state["champion"])
            if doc is None or doc.get("published", True) or "outbox" not in doc:
                continue
            content = await self.registry.download(doc["artifact_id"])
            stored = ModelUpdated.model_validate_json(doc["outbox"])
            artifact = stored.artifact.model_copy(update={"content_b64": base64.b64encode(content).decode()})
            await self.rt.bus.publish([stored.model_copy(update={"artifact": artifact})])
            await self.registry.mark_published(doc["_id"])
            log.warning("published model v%d of %s, promoted before the last stop but not announced",
                        doc["version"], state["_id"])
            sent += 1
        return sent

    async def _load(self, project: str, version: int) -> TrainedHead:
        return await self.registry.load(project, version)
