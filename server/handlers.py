"""Helpers for interceptors that replace a method's behaviour but keep its kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def behaviour(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    """The function that serves the method, whatever its kind."""
    served: Callable[..., Any] = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    return served


def streams_responses(handler: grpc.RpcMethodHandler) -> bool:
    return bool(handler.unary_stream or handler.stream_stream)


def handler_like(
    handler: grpc.RpcMethodHandler, new_behaviour: Callable[..., Any]
) -> grpc.RpcMethodHandler:
    """A handler of the same kind and (de)serializers as `handler`, served by `new_behaviour`."""
    if handler.unary_unary:
        make = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        make = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        make = grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.stream_stream_rpc_method_handler
    return make(new_behaviour, handler.request_deserializer, handler.response_serializer)
