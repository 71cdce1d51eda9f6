"""The prelabeler's handlers: embed ingested items, pre-label them with the active model, hot-swap models, and
pre-label again the items that waited for a project's first model (cold start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from labelmesh.ml.encoder import EncodeResult, Encoder
from labelmesh.ml.spans import SpanPrediction, word_features
from labelmesh.runtime.bus import PoisonEvent
from labelmesh.runtime.models import ModelRegistry
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Envelope, ItemIngested, LabelFinalized, ModelUpdated
from schemas.spans import TaskType
from services.prelabeler.concurrency import embed_pieces, longest_first, piece_size
from labelmesh.ml.artifact import ActiveModel, ModelRejected, load_artifact
from services.prelabeler.domain.prelabel import prelabels, rejection, reprelabels, span_reprelabels
from services.prelabeler.domain.text import check_text
from services.prelabeler.settings import PrelabelerSettings
from services.prelabeler.store import PrelabelStore

SERVICE = "prelabeler"
log = logging.getLogger(__name__)


class Prelabeler:
    def __init__(self, rt: ServiceRuntime, settings: PrelabelerSettings, encoder: Encoder, workers: int = 1) -> None:
        self.rt = rt
        self.settings = settings
        self.encoder = encoder
        self.workers = max(1, workers)
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.store = ModelRegistry(rt.db)
        self.prelabels = PrelabelStore(rt.db)
        self.active: dict[str, ActiveModel] = {}
        self.word_features = None  # a span tagger's word features, loaded when a spans model is first served
        self.items_total = Counter(
            "labelmesh_prelabeler_items_total", "Items pre-labelled", ["project"], registry=rt.registry
        )
        self.truncated_total = Counter(
            "labelmesh_prelabeler_truncated_total", "Items whose text was cut", ["project"], registry=rt.registry
        )
        self.cold_started = Counter(
            "labelmesh_prelabeler_cold_start_items_total", "Open items pre-labelled again when a model arrived",
            ["project"], registry=rt.registry,
        )
        self.model_version = Gauge(
            "labelmesh_prelabeler_model_version", "Model version in service", ["project"], registry=rt.registry
        )
        # Seconds the workers spent embedding, one observation per piece. Its rate over workers (the
        # labelmesh_prelabeler_encode_workers gauge) is the share of the embedding capacity in use: below ~1
        # under a backlog, the service's own work (consume, store, publish) is what holds it back.
        self.encode_seconds = Histogram(
            "labelmesh_prelabeler_encode_seconds", "Time one worker spent embedding one piece", registry=rt.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        Gauge("labelmesh_prelabeler_encode_workers", "Pieces embedded at the same time",
              registry=rt.registry).set(self.workers)
        self.batch_size = Histogram(
            "labelmesh_prelabeler_batch_size", "Items per embedded batch", registry=rt.registry,
            buckets=(1, 8, 32, 64, 128, 256, 512, 1024),
        )

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        # Every replica serves every model (broadcast); one of them records it and flags a rejected one.
        self.rt.bus.subscribe([ModelUpdated.TOPIC], self.on_models, max_records=10, name=f"{SERVICE}.models",
                              broadcast=True)
        self.rt.bus.subscribe([ModelUpdated.TOPIC], self.record_models, max_records=10, name=f"{SERVICE}.models")
        self.rt.bus.subscribe(
            [ItemIngested.TOPIC],
            self.on_items,
            max_records=self.settings.max_batch,
            batch_timeout_ms=self.settings.max_wait_ms,
        )
        # Cold start (services/prelabeler/domain/prelabel.py): final labels take items out of the set a new
        # model pre-labels again.
        self.rt.bus.subscribe([LabelFinalized.TOPIC], self.on_finals, max_records=500, name=f"{SERVICE}.finals")
        self.rt.on_start.append(self.restore)

    async def restore(self) -> None:
        """Serve each project's newest stored model at once, before the broadcast replay reaches it."""
        async for event in self.store.newest():
            self._serve(event)

    def _serve(self, event: ModelUpdated) -> None:
        current = self.active.get(event.project)
        if current is not None and current.version >= event.model_version:
            return
        try:
            model = load_artifact(event, self.encoder.name)
        except ModelRejected as exc:
            log.warning("not serving %s model v%d: %s", event.project, event.model_version, exc)
            return
        self.active[event.project] = model
        self.model_version.labels(event.project).set(model.version)
        log.info("now serving %s model v%d", event.project, event.model_version)

    async def on_models(self, events: list[Envelope]) -> None:
        """Broadcast: in-process state only."""
        for event in events:
            assert isinstance(event, ModelUpdated)
            self._serve(event)

    async def record_models(self, events: list[Envelope]) -> None:
        """Shared group: the durable registry, and the flag for a model that must not be served."""
        for event in events:
            assert isinstance(event, ModelUpdated)
            try:
                model = load_artifact(event, self.encoder.name)
            except ModelRejected as exc:
                await self.rt.bus.publish([rejection(event, str(exc), SERVICE)])
                continue
            await self.store.record(event)
            await self.prelabel_waiting(event.project, model)

    async def prelabel_waiting(self, project: str, model: ActiveModel) -> None:
        """Cold start: the project's open items pre-labelled without a model get this one's pre-label (a span
        tagger's from the texts the cold set kept for spans items, a head's from the embeddings)."""
        spans = model.tagger is not None
        while docs := await self.prelabels.waiting(project, self.encoder.name, with_text=spans):
            if spans:
                out = span_reprelabels(docs, model, await self._tag_texts(model, [d["text"] for d in docs]), SERVICE)
            else:
                out = reprelabels(docs, model, self.settings.top_k, SERVICE)
            await self.rt.bus.publish(out)
            await self.prelabels.leave_cold(out)
            self.cold_started.labels(project).inc(len(out))
            log.info("cold start: %d open %s item(s) pre-labelled by model v%d", len(out), project, model.version)

    async def on_finals(self, events: list[Envelope]) -> None:
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        if finals:
            await self.prelabels.mark_final(finals)

    async def on_items(self, events: list[Envelope]) -> None:
        items: list[ItemIngested] = []
        texts: list[str] = []
        truncated: list[bool] = []
        for event in events:
            assert isinstance(event, ItemIngested)
            await self.catalog.require(event)
            check = check_text(event.payload.text, self.settings.max_text_chars)
            if check.problem:
                raise PoisonEvent(event, check.problem)
            items.append(event)
            texts.append(check.text)
            truncated.append(check.truncated)
        if not items:
            return
        self.batch_size.observe(len(items))
        # Captured once per consumed batch: a model swap takes effect from the next batch.
        models = {item.project: self.active.get(item.project) for item in items}
        # Worker threads embed the batch piece by piece, longest texts first, from one shared queue, while
        # this loop stores and publishes what is done every publish_chunk items: the forward passes (which
        # release the GIL) overlap the building of events, the database write and the broker's
        # acknowledgement. Events go out in the order their pieces finish, not the order items came in;
        # every item's own events stay in order, and nothing downstream orders items within a batch.
        pieces = longest_first(texts, piece_size(self.settings.encode_piece, getattr(self.encoder, "batch_size", None)),
                               self.workers)
        ready: list[tuple[list[int], EncodeResult]] = []
        async with contextlib.aclosing(
            embed_pieces(self._encode, texts, pieces, self.workers)
        ) as embedded:
            received = 0
            async for piece in embedded:
                ready.append(piece)
                received += 1
                # Also flush once every piece left is in a worker's hands, so that what waits for the last
                # (small) pieces to finish is only those pieces; the last piece is always flushed here.
                if (sum(len(rows) for rows, _ in ready) >= self.settings.publish_chunk
                        or received >= len(pieces) - self.workers):
                    await self._store_and_publish(items, truncated, ready, models)
                    ready = []

    async def _tag(self, items: list[ItemIngested], models: dict[str, ActiveModel | None]
                   ) -> dict[int, SpanPrediction]:
        """The span tagger's predictions for the items of projects served by one, by row (in a worker thread)."""
        rows = [i for i, item in enumerate(items) if (m := models[item.project]) is not None and m.tagger is not None]
        if not rows:
            return {}
        if self.word_features is None:
            self.word_features = word_features(self.encoder.name)
        texts = [check_text(items[i].payload.text, self.settings.max_text_chars).text for i in rows]

        def tag() -> dict[int, SpanPrediction]:
            feats = self.word_features(texts)
            out: dict[int, SpanPrediction] = {}
            for n, i in enumerate(rows):
                tagger = models[items[i].project].tagger  # type: ignore[union-attr]
                out[i] = tagger.predict([texts[n]], [feats[n]])[0]
            return out

        return await asyncio.to_thread(tag)

    async def _tag_texts(self, model: ActiveModel, texts: list[str]) -> list[SpanPrediction]:
        """One span tagger's predictions for texts (in a worker thread)."""
        if self.word_features is None:
            self.word_features = word_features(self.encoder.name)
        tagger = model.tagger
        assert tagger is not None
        return await asyncio.to_thread(lambda: tagger.predict(texts, self.word_features(texts)))

    def _encode(self, texts: list[str]) -> EncodeResult:
        with self.encode_seconds.time():  # prometheus_client's metrics are safe to update from worker threads
            return self.encoder.encode_with_info(texts)

    async def _store_and_publish(self, items: list[ItemIngested], truncated: list[bool],
                                 done: list[tuple[list[int], EncodeResult]],
                                 models: dict[str, ActiveModel | None]) -> None:
        rows = [row for piece, _ in done for row in piece]
        encoded = EncodeResult(
            embeddings=np.concatenate([result.embeddings for _, result in done]),
            n_tokens=np.concatenate([result.n_tokens for _, result in done]),
            truncated=np.concatenate([result.truncated for _, result in done]),
        )
        cut = [truncated[row] or bool(encoded.truncated[k]) for k, row in enumerate(rows)]
        batch = [items[i] for i in rows]
        out = prelabels(batch, cut, encoded.embeddings, models, self.settings.top_k, SERVICE, self.encoder.name,
                        await self._tag(batch, models))
        for event in out:
            self.items_total.labels(event.project).inc()
            if event.truncated:
                self.truncated_total.labels(event.project).inc()
        # A spans item keeps its text while it waits for a model: its first span tagger reads words.
        spans = {p for p in {e.project for e in batch} if (c := await self.catalog.get(p)) and c.task is TaskType.SPANS}
        await self.prelabels.record(out, encoded.embeddings, [
            check_text(item.payload.text, self.settings.max_text_chars).text if item.project in spans else None
            for item in batch])
        await self.rt.bus.publish(out)
