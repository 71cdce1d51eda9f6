"""A small async client for the gateway's gRPC API, used by the CLI, the demo, benchmarks and tests."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from schemas.keys import ALL_PROJECTS
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc


class GatewayClient:
    """One channel, one token; every call sends `authorization: Bearer <token>`."""

    def __init__(self, target: str, token: str, channel: grpc.aio.Channel | None = None) -> None:
        self.channel = channel or grpc.aio.insecure_channel(target)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.ingest = pb_grpc.IngestServiceStub(self.channel)
        self.annotation = pb_grpc.AnnotationServiceStub(self.channel)
        self.admin = pb_grpc.AdminServiceStub(self.channel)

    @classmethod
    def balanced(cls, ports: list[int], token: str, host: str = "127.0.0.1") -> GatewayClient:
        """One channel over several gateway replicas: gRPC's round_robin policy spreads calls over those that
        answer and skips those that do not (a replica being restarted), as a headless Service lets it do."""
        target = "ipv4:" + ",".join(f"{host}:{port}" for port in ports)
        channel = grpc.aio.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")])
        return cls(target, token, channel)

    def as_user(self, token: str) -> GatewayClient:
        """The same channel with another caller's token."""
        return GatewayClient("", token, self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def configure_project(self, project: str, labels: list[str], guidelines: str = "", **kw: object) -> pb.Project:
        return await self.admin.ConfigureProject(
            pb.ConfigureProjectRequest(project=project, labels=labels, guidelines=guidelines, **kw),
            metadata=self.metadata,
        )

    async def create_annotator(self, annotator_id: str, role: str = "annotator",
                               projects: Sequence[str] = (ALL_PROJECTS,), expires_unix_ms: int = 0) -> str:
        """A new annotator's token; by default a member of every project (pass `projects` to narrow it) that
        never expires."""
        creds = await self.admin.CreateAnnotator(
            pb.CreateAnnotatorRequest(annotator_id=annotator_id, role=role, projects=list(projects),
                                      expires_unix_ms=expires_unix_ms),
            metadata=self.metadata,
        )
        return creds.token

    async def ingest_items(self, items: list[pb.IngestItem]) -> pb.IngestItemsResponse:
        return await self.ingest.IngestItems(pb.IngestItemsRequest(items=items), metadata=self.metadata)

    async def lease(self, project: str) -> pb.Task | None:
        """The next task, or None when the queue has nothing for this caller."""
        try:
            return await self.annotation.LeaseTask(pb.LeaseTaskRequest(project=project), metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def submit(self, task_id: str, label: str, key: str, time_spent_ms: int = 0,
                     spans: Sequence[pb.Span] = ()) -> pb.SubmitLabelResponse:
        """A label (classification projects), or with label "" the entities of a spans project's item."""
        return await self.annotation.SubmitLabel(
            pb.SubmitLabelRequest(task_id=task_id, label=label, idempotency_key=key, time_spent_ms=time_spent_ms,
                                  spans=list(spans)),
            metadata=self.metadata,
        )

    async def history(self, project: str, item_id: str) -> pb.ItemHistory:
        return await self.admin.GetItemHistory(
            pb.GetItemHistoryRequest(project=project, item_id=item_id), metadata=self.metadata
        )

    async def skip(self, task_id: str, reason: str = "") -> None:
        await self.annotation.SkipTask(pb.SkipTaskRequest(task_id=task_id, reason=reason), metadata=self.metadata)

    async def flag(self, project: str, comment: str, item_id: str = "") -> str:
        """Flag an item (or, without item_id, the guidelines) with a comment; returns the flag's id."""
        response = await self.annotation.FlagItem(
            pb.FlagItemRequest(project=project, item_id=item_id, comment=comment), metadata=self.metadata
        )
        return response.flag_id

    async def guidelines(self, project: str, version: int = 0) -> pb.Guidelines:
        """The project's current guidelines, or an earlier version."""
        return await self.annotation.GetGuidelines(
            pb.GetGuidelinesRequest(project=project, version=version), metadata=self.metadata
        )

    async def publish_guidelines(self, project: str, text: str) -> pb.Guidelines:
        return await self.admin.PublishGuidelines(
            pb.PublishGuidelinesRequest(project=project, text=text), metadata=self.metadata
        )

    async def create_calibration_session(
        self, project: str, item_ids: list[str] | None = None, n: int = 0, annotators: list[str] | None = None,
        session_id: str = "",
    ) -> pb.CalibrationSession:
        return await self.admin.CreateCalibrationSession(
            pb.CreateCalibrationSessionRequest(project=project, item_ids=item_ids or [], n=n,
                                               annotators=annotators or [], session_id=session_id),
            metadata=self.metadata,
        )
