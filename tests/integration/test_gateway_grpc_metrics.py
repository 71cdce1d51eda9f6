"""The gateway's server-side gRPC metrics on a real gateway: requests by method and status code (unary and
server-streaming, answered or refused), and a latency histogram per method."""

from __future__ import annotations

import grpc
import pytest

from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.gateway_helpers import PROJECT, status_of

SERVICE = "/labelmesh.v1.ProjectService/"


async def test_requests_are_counted_by_method_and_code_with_their_latency(  # type: ignore[no-untyped-def]
        gateway) -> None:
    runtime, admin = gateway
    stub = pb_grpc.ProjectServiceStub(admin.channel)
    registry = runtime.registry

    def handled(method: str, code: str) -> float:
        return registry.get_sample_value("labelmesh_grpc_server_handled_total",
                                         {"method": SERVICE + method, "code": code}) or 0.0

    for _ in range(2):
        await stub.GetProject(pb.GetProjectRequest(project=PROJECT), metadata=admin.metadata)
    assert await status_of(stub.GetProject(pb.GetProjectRequest(project="nope"), metadata=admin.metadata)) \
        == grpc.StatusCode.NOT_FOUND
    # abort_with_status (a google.rpc BadRequest detail) sets the code like abort does
    assert await status_of(stub.GetItem(pb.GetItemRequest(project="", item_id=""), metadata=admin.metadata)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert await status_of(stub.ListProjects(pb.ListProjectsRequest(), metadata=(("authorization", "Bearer x"),))) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert [r async for r in stub.ExportFinalLabels(pb.ExportFinalLabelsRequest(project=PROJECT),
                                                    metadata=admin.metadata)] == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        [r async for r in stub.ExportFinalLabels(pb.ExportFinalLabelsRequest(project=PROJECT, cursor="x"),
                                                 metadata=admin.metadata)]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert (handled("GetProject", "OK"), handled("GetProject", "NOT_FOUND")) == (2, 1)
    assert handled("GetItem", "INVALID_ARGUMENT") == 1
    assert handled("ListProjects", "UNAUTHENTICATED") == 1
    assert (handled("ExportFinalLabels", "OK"), handled("ExportFinalLabels", "INVALID_ARGUMENT")) == (1, 1)
    count = registry.get_sample_value("labelmesh_grpc_server_handling_seconds_count",
                                      {"method": SERVICE + "GetProject"})
    seconds = registry.get_sample_value("labelmesh_grpc_server_handling_seconds_sum",
                                        {"method": SERVICE + "GetProject"})
    assert count == 3 and 0 < seconds < 60
