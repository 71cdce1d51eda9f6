"""The Label Studio ML backend: GET /health, POST /setup, POST /predict, POST /webhook (starlette, run by uvicorn).

/predict answers with labelmesh's calibrated pre-label (the one the gateway leased the task with, kept in the
task's data by the sync), its probability as the score and the model version. /webhook is where Label Studio
sends annotation events (it registers `<backend>/webhook` itself when the backend is connected):
- ANNOTATION_CREATED / ANNOTATION_UPDATED: the annotation is read back from Label Studio's API (the payload is
  only a hint) and goes to labelmesh as labelmesh.label_studio.submit says (SubmitLabel, SkipTask or FlagItem).
  `labelmesh label-studio sync` submits whatever the webhook missed (the backend was down, say) the same way.
- ANNOTATIONS_DELETED (ids only; ANNOTATION_DELETED too): an annotation labelmesh had received stays submitted
  there; once Label Studio confirms it is gone, the item is flagged (FlagItem) saying so, once per annotation.
Every answer is JSON with `status`; refusals carry the reason and a 4xx/5xx code.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from labelmesh.label_studio import mapping
from labelmesh.label_studio.api import LabelStudio
from labelmesh.label_studio.config import BridgeConfig
from labelmesh.label_studio.ledger import Ledger
from labelmesh.label_studio.submit import GRPC_TO_HTTP, Outcome, Submitter, refused

log = logging.getLogger(__name__)
MAX_BODY = 8 * 1024 * 1024
MAX_PREDICT_TASKS = 1000
BACKEND_VERSION = "labelmesh"


def _answer(status: str, code: int = 200, **detail: Any) -> JSONResponse:
    return JSONResponse({"status": status, **detail}, status_code=code)


class Bridge:
    def __init__(self, config: BridgeConfig, ls_token: str) -> None:
        self.config = config
        self.ls = LabelStudio(config.label_studio_url, ls_token)
        ca = config.ca_bytes()
        self.channel = (grpc.aio.secure_channel(config.gateway, grpc.ssl_channel_credentials(ca)) if ca
                        else grpc.aio.insecure_channel(config.gateway))
        self.ledger = Ledger(config.ledger)
        self.submitter = Submitter(config, self.channel, self.ledger)
        self.counts = {"predictions": 0, "submitted": 0, "duplicate": 0, "skipped": 0, "flagged": 0, "refused": 0}

    async def close(self) -> None:
        await self.channel.close()
        await self.ls.close()
        self.ledger.close()

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "UP", "model_class": "labelmesh", "counts": self.counts})

    async def setup(self, request: Request) -> JSONResponse:
        body = await _json(request)
        schema = str(body.get("schema") or "")
        if f'name="{mapping.FROM_NAME}"' not in schema or "<Choices" not in schema:
            return _answer("error", 422, message=f"the project's labelling config needs a <Choices name="
                                                 f"\"{mapping.FROM_NAME}\"> (labelmesh label-studio init writes one)")
        return JSONResponse({"model_version": BACKEND_VERSION})

    async def predict(self, request: Request) -> JSONResponse:
        body = await _json(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or len(tasks) > MAX_PREDICT_TASKS:
            return _answer("error", 422, message=f"tasks must be a list of at most {MAX_PREDICT_TASKS}")
        results = []
        for task in tasks:
            data = task.get("data") if isinstance(task, dict) else None
            pred = mapping.prediction(data) if isinstance(data, dict) else None
            results.append(pred or {"result": [], "score": 0.0, "model_version": mapping.model_version_name(0)})
        self.counts["predictions"] += len(results)
        return JSONResponse({"results": results})

    async def webhook(self, request: Request) -> JSONResponse:
        body = await _json(request)
        action = body.get("action")
        try:
            if action in (mapping.CREATED, mapping.UPDATED):
                return await self._annotated(body)
            if action in mapping.DELETED:
                return await self._deleted(body)
        except mapping.BadAnnotation as exc:
            return self._refuse(422, str(exc))
        except grpc.aio.AioRpcError as exc:
            return self._refuse(GRPC_TO_HTTP.get(exc.code(), 502), f"labelmesh: {exc.code().name}: {exc.details()}")
        return _answer("ignored", action=action)

    def _refuse(self, code: int, message: str) -> JSONResponse:
        return self._tell(refused(code, message))

    def _tell(self, outcome: Outcome) -> JSONResponse:
        self.counts[outcome.status] += 1
        return _answer(outcome.status, outcome.code, **outcome.detail)

    async def _annotated(self, body: dict[str, Any]) -> JSONResponse:
        hint = body.get("annotation") or {}
        if not isinstance(hint.get("id"), int):
            raise mapping.BadAnnotation("the webhook names no annotation id")
        stored = await self.ls.annotation(hint["id"])
        if stored is None:
            return self._refuse(404, f"annotation {hint['id']} does not exist in Label Studio")
        return self._tell(await self.submitter.annotation(stored, await self.ls.task(stored["task"])))

    async def _deleted(self, body: dict[str, Any]) -> JSONResponse:
        flagged, unknown = [], []
        for annotation_id in mapping.deleted_ids(body):
            earlier = self.ledger.get(annotation_id)
            if (earlier is None or earlier.deleted or not earlier.label
                    or await self.ls.annotation(annotation_id) is not None):
                unknown.append(annotation_id)  # never submitted, a skip, already handled, or not actually deleted
                continue
            if not self.ledger.mark_deleted(annotation_id):
                continue
            comment = (f"annotation {annotation_id} ({earlier.label!r}) was deleted in Label Studio; labelmesh keeps "
                       "the submitted label, review it")
            client = self.submitter.clients[earlier.annotator]
            flagged.append(await client.flag(earlier.project, comment, item_id=earlier.item_id))
            self.counts["flagged"] += 1
        return _answer("flagged" if flagged else "ignored", flags=flagged, ignored=unknown)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise mapping.BadAnnotation(f"request body over {MAX_BODY} bytes")
    try:
        body = await request.json() if raw else {}
    except ValueError as exc:
        raise mapping.BadAnnotation(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise mapping.BadAnnotation("request body must be a JSON object")
    return body


def create_app(config: BridgeConfig, ls_token: str | None = None) -> Starlette:
    """The backend's ASGI app; its gRPC channel and HTTP client are made on the serving event loop (lifespan)."""
    token = ls_token if ls_token is not None else os.environ.get("LABEL_STUDIO_TOKEN", "")
    bridge: list[Bridge] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bridge.append(Bridge(config, token))
        try:
            yield
        finally:
            await bridge[0].close()

    def route(name: str):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> JSONResponse:
            return await getattr(bridge[0], name)(request)
        return endpoint

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return _answer("error", 422, message=str(exc))

    return Starlette(routes=[
        Route("/health", route("health"), methods=["GET"]),
        Route("/setup", route("setup"), methods=["POST"]),
        Route("/predict", route("predict"), methods=["POST"]),
        Route("/webhook", route("webhook"), methods=["POST"]),
    ], lifespan=lifespan, exception_handlers={mapping.BadAnnotation: bad_request})
