"""ProjectService: the admins' read side (projects, items, annotators, progress, export) and token revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.api import Gateway, field_status
from services.gateway.auth import Role, hash_token, new_token
from services.gateway.domain.projects import task_of
from services.gateway.domain.reads import EXPORT_PAGE, PAGE_MAX, export_problems, id_problem, page_problems
from services.gateway.domain.refusals import Problems
from services.gateway.spans import spans_to_proto
from services.gateway.store.items import golden_doc
from services.gateway.store.progress import Progress


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if value else 0


async def invalid(context: grpc.aio.ServicerContext, problems: Problems) -> None:
    """INVALID_ARGUMENT naming every problem, with a google.rpc BadRequest detail listing each field."""
    if problems:
        message = "; ".join(f"{field}: {why}" for field, why in problems)
        await context.abort_with_status(field_status(grpc.StatusCode.INVALID_ARGUMENT, message, problems))


def final_message(doc: dict[str, Any], item: dict[str, Any] | None, cursor: str = "") -> pb.FinalLabel:
    final = doc["final"]
    item = item or {}
    return pb.FinalLabel(
        project=doc["project"], item_id=doc["item_id"], text=item.get("text", ""), label=final["label"],
        version=final["version"], confidence=final["confidence"], provenance=final["provenance"],
        model_version=final.get("model_version") or 0, guideline_version=final.get("guideline_version") or 0,
        annotator_labels=[pb.AnnotatorLabel(annotator_id=a, label=label)
                          for a, label in sorted((doc.get("labels") or {}).items())],
        metadata=item.get("metadata") or {}, golden=bool(final.get("golden")), cursor=cursor,
        spans=spans_to_proto(final.get("spans") or (), pb.Span))


def _annotator(doc: dict[str, Any]) -> pb.AnnotatorInfo:
    return pb.AnnotatorInfo(annotator_id=doc["_id"], role=doc["role"], suspended=bool(doc.get("suspended")),
                            revoked=bool(doc.get("revoked")), created_unix_ms=_ms(doc.get("created_at")),
                            expires_unix_ms=doc.get("expires_unix_ms") or 0)


class ProjectServicer(pb_grpc.ProjectServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.progress = Progress(gw.db)

    async def _project(self, context: grpc.aio.ServicerContext, project: str) -> dict[str, Any]:
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, id_problem("project", project))
        return await self.gw.project(context, project)

    @staticmethod
    def _detail(doc: dict[str, Any]) -> pb.ProjectDetail:
        return pb.ProjectDetail(project=doc["_id"], labels=doc["labels"], guideline_version=doc["guideline_version"],
                                guidelines=doc.get("guidelines", ""), multi_annotators=doc.get("multi_annotators", 0),
                                target_auto_error=doc.get("target_auto_error", 0.0),
                                task_type=task_of(doc).value)

    async def ListProjects(self, request: pb.ListProjectsRequest, context: grpc.aio.ServicerContext) -> pb.ListProjectsResponse:
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, page_problems(request.page_size, request.page_token))
        size = request.page_size or PAGE_MAX
        docs = await self.gw.projects.page(request.page_token, size + 1)
        more = len(docs) > size
        docs = docs[:size]
        return pb.ListProjectsResponse(projects=[self._detail(d) for d in docs],
                                       next_page_token=docs[-1]["_id"] if more else "")

    async def GetProject(self, request: pb.GetProjectRequest, context: grpc.aio.ServicerContext) -> pb.ProjectDetail:
        return self._detail(await self._project(context, request.project))

    async def GetProjectStats(self, request: pb.GetProjectRequest, context: grpc.aio.ServicerContext) -> pb.ProjectStats:
        await self._project(context, request.project)
        c = await self.progress.counters_of(request.project)
        return pb.ProjectStats(
            project=request.project, ingested=c.get("ingested", 0), golden_items=c.get("golden_items", 0),
            routed={k: int(v) for k, v in (c.get("routed") or {}).items()}, open_items=c.get("open_items", 0),
            final=c.get("final", 0),
            final_by_provenance={k: int(v) for k, v in (c.get("final_by_provenance") or {}).items()},
            human_labels=c.get("human_labels", 0), golden_answered=c.get("golden_answered", 0),
            golden_correct=c.get("golden_correct", 0), multi_labelled=c.get("multi_labelled", 0),
            unanimous=c.get("unanimous", 0), first_final_unix_ms=_ms(c.get("first_final")),
            last_final_unix_ms=_ms(c.get("last_final")), prelabelled=c.get("prelabelled", 0))

    async def GetItem(self, request: pb.GetItemRequest, context: grpc.aio.ServicerContext) -> pb.ItemDetail:
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, id_problem("project", request.project) + id_problem("item_id", request.item_id))
        await self.gw.project(context, request.project)
        item = await self.gw.items.get(request.project, request.item_id)
        if item is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown item {request.item_id!r} in {request.project!r}")
        detail = pb.ItemDetail(project=request.project, item_id=request.item_id, text=item["text"],
                               source=item.get("source", ""), dataset=item.get("dataset", ""),
                               metadata=item.get("metadata") or {}, golden=golden_doc(item))
        progress = await self.progress.item(request.project, request.item_id)
        if progress and progress.get("final"):
            detail.final.CopyFrom(final_message(progress, item))
        return detail

    async def ListAnnotators(self, request: pb.ListAnnotatorsRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListAnnotatorsResponse:
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, page_problems(request.page_size, request.page_token))
        size = request.page_size or PAGE_MAX
        docs = await self.gw.annotators.page(request.page_token, size + 1)
        more = len(docs) > size
        docs = docs[:size]
        return pb.ListAnnotatorsResponse(annotators=[_annotator(d) for d in docs],
                                         next_page_token=docs[-1]["_id"] if more else "")

    async def _annotator_doc(self, request: pb.RevokeAnnotatorRequest,
                             context: grpc.aio.ServicerContext) -> dict[str, Any]:
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, id_problem("annotator_id", request.annotator_id))
        doc = await self.gw.annotators.get(request.annotator_id)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown annotator {request.annotator_id!r}")
        return doc

    async def RevokeAnnotator(self, request: pb.RevokeAnnotatorRequest,
                              context: grpc.aio.ServicerContext) -> pb.AnnotatorInfo:
        doc = await self._annotator_doc(request, context)
        update = await self.gw.annotators.revoke(doc["_id"])
        self.gw.forget_annotator(doc["_id"])  # on this replica at once
        return _annotator({**doc, **update})

    async def RotateAnnotatorToken(self, request: pb.RevokeAnnotatorRequest,
                                   context: grpc.aio.ServicerContext) -> pb.AnnotatorCredentials:
        doc = await self._annotator_doc(request, context)
        token = new_token()
        await self.gw.annotators.rotate(doc["_id"], hash_token(token))
        self.gw.forget_annotator(doc["_id"])  # the old token ends here at once
        return pb.AnnotatorCredentials(annotator_id=doc["_id"], role=doc["role"], token=token)

    async def ExportFinalLabels(self, request: pb.ExportFinalLabelsRequest,
                                context: grpc.aio.ServicerContext) -> AsyncIterator[pb.FinalLabel]:
        problems = export_problems(request.project, request.cursor, request.limit)
        await self.gw.caller(context, Role.ADMIN)
        await invalid(context, problems)
        await self.gw.project(context, request.project)
        after, sent = int(request.cursor or 0), 0
        while not request.limit or sent < request.limit:
            rows, last = await self.progress.finals_after(request.project, after, EXPORT_PAGE)
            if last == after:
                return
            keys = [doc["_id"] for _, doc in rows]
            items = await self.gw.items.by_keys(keys, {"text": 1, "metadata": 1})
            for seq, doc in rows:
                yield final_message(doc, items.get(doc["_id"]), cursor=str(seq))
                sent += 1
                if request.limit and sent >= request.limit:
                    return
            after = last
