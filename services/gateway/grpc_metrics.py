"""A server interceptor counting gRPC requests by method and status code, with a latency histogram per method."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram


def _code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> str:
    code = context.code()
    if code is None or code == grpc.StatusCode.OK:
        # abort() raises; a code it did not set means the handler itself failed.
        return "UNKNOWN" if failed is not None and code is None else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """labelmesh_grpc_server_handled_total{method,code} and labelmesh_grpc_server_handling_seconds{method}."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter("labelmesh_grpc_server_handled_total", "gRPC requests completed, by method and code",
                               ["method", "code"], registry=registry)
        self.seconds = Histogram("labelmesh_grpc_server_handling_seconds", "gRPC request latency, by method",
                                 ["method"], registry=registry)

    def _done(self, method: str, started: float, context: grpc.aio.ServicerContext, failed: BaseException | None) -> None:
        self.seconds.labels(method).observe(time.perf_counter() - started)
        self.handled.labels(method, _code(context, failed)).inc()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        common = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}

        def timed(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, failed = time.perf_counter(), None
                try:
                    return await call(request, context)
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    self._done(method, started, context, failed)
            return run

        def timed_stream(call: Callable[..., Any]) -> Callable[..., Any]:
            if not inspect.isasyncgenfunction(call):
                # A streaming handler may also be a coroutine that sends with context.write (grpc_health's
                # Watch is one): iterating it would fail every such call.
                return timed(call)

            async def run(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started, failed = time.perf_counter(), None
                try:
                    async for response in call(request, context):
                        yield response
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    self._done(method, started, context, failed)
            return run

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(timed(handler.unary_unary), **common)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(timed(handler.stream_unary), **common)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(timed_stream(handler.unary_stream), **common)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(timed_stream(handler.stream_stream), **common)
        return handler
