"""The prelabeler service: embeds ingested items, pre-labels them with the active model, hot-swaps models."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from labelmesh.ml.encoder import (
    FP16_MIN_COSINE,
    EncodeResult,
    Encoder,
    available_cpus,
    keep_half_precision,
    load_encoder,
)
from labelmesh.runtime.bus import PoisonEvent
from labelmesh.runtime.mongo import upsert_many
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    FlagKind,
    FlagSubject,
    ItemIngested,
    ItemPrelabeled,
    LabelFinalized,
    LabelScore,
    ModelUpdated,
    QcFlagged,
    derived_id,
)
from services.prelabeler import cold_start
from services.prelabeler.concurrency import embed_pieces, encode_plan, longest_first, piece_size
from services.prelabeler.models import ActiveModel, ModelRejected, load_artifact
from services.prelabeler.settings import PrelabelerSettings
from services.prelabeler.store import ModelStore
from services.prelabeler.validation import check_text

SERVICE = "prelabeler"
log = logging.getLogger(__name__)


class Prelabeler:
    def __init__(self, rt: ServiceRuntime, settings: PrelabelerSettings, encoder: Encoder, workers: int = 1) -> None:
        self.rt = rt
        self.settings = settings
        self.encoder = encoder
        self.workers = max(1, workers)
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.store = ModelStore(rt.db)
        self.active: dict[str, ActiveModel] = {}
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
        # Cold start (services/prelabeler/cold_start.py): final labels take items out of the set a new model
        # pre-labels again.
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
                await self.rt.bus.publish([self._rejection(event, str(exc))])
                continue
            await self.store.record(event)
            await self.prelabel_waiting(event.project, model)

    async def prelabel_waiting(self, project: str, model: ActiveModel) -> None:
        """Cold start: the project's open items pre-labelled without a model get this one's pre-label."""
        prelabels = self.rt.db["prelabels"]
        while docs := await cold_start.waiting(prelabels, project, self.encoder.name):
            out = cold_start.reprelabel(docs, model, self.settings.top_k, SERVICE)
            await self.rt.bus.publish(out)
            await cold_start.leave_cold(prelabels, out)
            self.cold_started.labels(project).inc(len(out))
            log.info("cold start: %d open %s item(s) pre-labelled by model v%d", len(out), project, model.version)

    async def on_finals(self, events: list[Envelope]) -> None:
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        if finals:
            await cold_start.mark_final(self.rt.db["prelabels"], finals)

    def _rejection(self, event: ModelUpdated, reason: str) -> QcFlagged:
        return QcFlagged(
            producer=SERVICE,
            project=event.project,
            subject=FlagSubject.MODEL,
            subject_id=str(event.model_version),
            kind=FlagKind.MODEL_REJECTED,
            message=f"model v{event.model_version} was not loaded: {reason}",
            evidence={"sha256": event.artifact.sha256, "encoder": event.encoder},
            event_id=derived_id(event.event_id, "rejected"),
            correlation_id=event.event_id,
        )

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
        out = self._prelabel([items[i] for i in rows], [truncated[i] for i in rows], encoded, models)
        # merge: a `final` mark stored before the pre-label stays (cold start). Model-less pre-labels keep their
        # embedding, so the project's first model can pre-label them without the text.
        await upsert_many(
            self.rt.db["prelabels"],
            [{"_id": f"{e.project}/{e.item_id}", "model_version": e.model_version,
              "top_k": [s.model_dump() for s in e.top_k], "truncated": e.truncated, "event_id": e.event_id,
              **(cold_start.cold_fields(e, encoded.embeddings[i]) if cold_start.needs_model(e) else {})}
             for i, e in enumerate(out)],
            merge=True,
        )
        await self.rt.bus.publish(out)

    def _prelabel(self, items: list[ItemIngested], truncated: list[bool], encoded: EncodeResult,
                  models: dict[str, ActiveModel | None]) -> list[ItemPrelabeled]:
        vectors = encoded.embeddings
        by_project: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_project.setdefault(item.project, []).append(i)
        top_k: dict[int, tuple[LabelScore, ...]] = {}
        versions: dict[int, int | None] = {}
        for project, rows in by_project.items():
            model = models[project]
            ranked = model.head.top_k(vectors[rows], self.settings.top_k) if model else [[] for _ in rows]
            for row, labels in zip(rows, ranked, strict=True):
                top_k[row] = tuple(LabelScore(label=l, probability=min(1.0, max(0.0, float(p)))) for l, p in labels)
                versions[row] = model.version if model else None
        # Six decimals keep the events small; rounded in one numpy call (per-float round() was 54 ms per 256).
        rounded = np.round(vectors.astype(np.float64), 6).tolist()
        out: list[ItemPrelabeled] = []
        for i, item in enumerate(items):
            cut = truncated[i] or bool(encoded.truncated[i])
            if cut:
                self.truncated_total.labels(item.project).inc()
            out.append(
                ItemPrelabeled(
                    producer=SERVICE,
                    project=item.project,
                    item_id=item.item_id,
                    event_id=derived_id(item.event_id, "prelabeled"),
                    correlation_id=item.correlation_id or item.event_id,
                    model_version=versions[i],
                    encoder=self.encoder.name,
                    top_k=top_k[i],
                    embedding=tuple(rounded[i]),
                    truncated=cut,
                    trusted=item.trusted_label is not None,
                    golden=item.golden_label is not None,
                )
            )
            self.items_total.labels(item.project).inc()
        return out


def create_app(settings: PrelabelerSettings | None = None, encoder: Encoder | None = None) -> ServiceRuntime:
    settings = settings or PrelabelerSettings()
    rt = ServiceRuntime(SERVICE, settings)
    plan = encode_plan(settings.device, available_cpus(), settings.encode_workers)
    if encoder is None:
        encoder = load_encoder(settings.encoder, settings.device, threads=plan.threads)
        if str(getattr(encoder, "device", "cpu")).startswith("cuda"):  # "auto" found a GPU
            plan = encode_plan("cuda", available_cpus(), settings.encode_workers)
            if settings.fp16:
                half = load_encoder(settings.encoder, settings.device, fp16=True, threads=plan.threads)
                encoder, cosine = keep_half_precision(encoder, half)
                log.info("fp16 %s: smallest cosine to fp32 over the probe texts %.5f (needs %.3f)",
                         "kept" if encoder is half else "refused", cosine, FP16_MIN_COSINE)
    log.info("embedding %d chunk(s) at a time, %d torch thread(s) each", plan.workers, plan.threads)
    service = Prelabeler(rt, settings, encoder, plan.workers)
    service.wire()
    rt.component = service
    return rt
