"""The floor: an empty grpc.aio service, to measure what gRPC itself costs on this machine.

    python bench/floor.py --listen 127.0.0.1:0

One unary RPC, one server-streaming RPC and one bidi RPC, all doing nothing, on raw bytes
(no protobuf work), on the same event loop as the daemon (asyncio's default).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

SERVICE = "floor.Floor"


async def unary(request: bytes, context: Any) -> bytes:
    return b""


async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(int(request or b"1")):
        yield b""


async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield b""


async def serve(listen: str) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(stream),
                    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
                },
            ),
        )
    )
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"serving floor on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(serve(parser.parse_args().listen))
