"""A server interceptor that keeps grpc's UNKNOWN for real bugs: undecodable request bytes are INVALID_ARGUMENT,
and the broker or the database being down is UNAVAILABLE (the status clients retry on)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiokafka.errors import MessageSizeTooLargeError

from labelmesh.runtime.bus import TRANSIENT_ERRORS


class _Malformed:
    """Stands in for a request whose bytes did not parse, so the handler can reject it with a reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bad input
            return _Malformed(str(exc) or type(exc).__name__)

    return parse


async def _unavailable(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, MessageSizeTooLargeError):  # a KafkaError, but no retry can help: the request is too big
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "the request's event is larger than its topic accepts; shorten its text or fields")
    await context.abort(grpc.StatusCode.UNAVAILABLE,
                        f"the gateway's broker or database is unavailable ({type(exc).__name__}); retry shortly")


async def _reject(context: grpc.aio.ServicerContext, request: _Malformed) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid message: {request.reason}")


class RejectMalformedRequests(grpc.aio.ServerInterceptor):
    """grpc turns a deserializer's exception into UNKNOWN; a malformed request is the client's error."""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = _lenient(handler.request_deserializer)
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Malformed):
                    await _reject(context, request)
                try:
                    return await unary(request, context)
                except TRANSIENT_ERRORS as exc:
                    await _unavailable(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=parse, response_serializer=handler.response_serializer
            )
        if handler.stream_unary is not None:
            streamed = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                async def checked() -> AsyncIterator[Any]:
                    async for request in requests:
                        if isinstance(request, _Malformed):
                            await _reject(context, request)
                        yield request

                try:
                    return await streamed(checked(), context)
                except TRANSIENT_ERRORS as exc:
                    await _unavailable(context, exc)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, request_deserializer=parse, response_serializer=handler.response_serializer
            )
        return handler
