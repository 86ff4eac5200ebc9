#!/usr/bin/env python
"""The floor under the gateway's CPU per fused megapixel: a FuseTiles server in the same stack
(grpcio's asyncio server, upb protobuf, one Python process) that only parses each request and
answers shot_a's pixels as the fused tile: no Brenner, no backend, no decode, no copy beyond
protobuf's. benchmarks/serving_path.py --paths grpc-floor loads it like the gateway.

    python benchmarks/grpc_floor_server.py PORT      # prints "ready PID" once it listens
"""
from __future__ import annotations

import asyncio
import os
import sys

import grpc
from tsva.v1 import tsva_pb2 as pb

LIMIT = 64 << 20


async def fuse_tiles(request_iterator, context):
    async for raw in request_iterator:
        request = pb.FuseRequest.FromString(raw)
        yield pb.FuseResponse(tile_id=request.tile_id, slide_id=request.slide_id,
                              fused=request.shot_a).SerializeToString()


async def get_info(raw, context):
    return pb.GetInfoResponse().SerializeToString()


async def main(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", LIMIT),
                                      ("grpc.max_send_message_length", LIMIT)])
    handlers = {"FuseTiles": grpc.stream_stream_rpc_method_handler(fuse_tiles),
                "GetInfo": grpc.unary_unary_rpc_method_handler(get_info)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("tsva.v1.VirtualAutofocus", handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", os.getpid(), flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
