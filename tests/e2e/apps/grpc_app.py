"""A test application: the ``weft.test.Echo`` gRPC service (server and client).

Stubs are generated at test time from ``tests/e2e/protos/echo.proto`` into the directory given
with ``--gen``. The client runs one case and prints its result as a JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

MAX_MESSAGE = 32 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


def load_stubs(gen: str) -> tuple[Any, Any]:
    """Import the generated ``echo_pb2`` and ``echo_pb2_grpc`` modules from ``gen``."""
    sys.path.insert(0, gen)
    import echo_pb2  # type: ignore[import-not-found]
    import echo_pb2_grpc  # type: ignore[import-not-found]

    return echo_pb2, echo_pb2_grpc


def serve(args: argparse.Namespace) -> None:
    pb2, pb2_grpc = load_stubs(args.gen)

    class Echo(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
            print(f"RPC Unary {len(request.payload)}", flush=True)
            if request.payload.startswith(b"fail:"):
                code = int(request.payload[5:])
                status = next(c for c in grpc.StatusCode if c.value[0] == code)
                context.abort(status, f"asked to fail with {code}")
            return pb2.Msg(payload=request.payload, seq=request.seq)

        def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            print(f"RPC ServerStream {request.count}x{request.size}", flush=True)
            for i in range(request.count):
                yield pb2.Msg(payload=bytes([i % 256]) * request.size, seq=i)

        def Bidi(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            print("RPC Bidi", flush=True)
            for msg in requests:
                yield pb2.Msg(payload=msg.payload[::-1], seq=msg.seq)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    server.add_insecure_port(f"0.0.0.0:{args.port}")
    server.start()
    print(f"LISTENING {args.port}", flush=True)
    server.wait_for_termination()


def client(args: argparse.Namespace) -> None:
    pb2, pb2_grpc = load_stubs(args.gen)
    result: dict[str, Any] = {"case": args.case}
    with grpc.insecure_channel(args.target, options=OPTIONS) as channel:
        stub = pb2_grpc.EchoStub(channel)
        started = time.monotonic()
        try:
            if args.case == "unary":
                replies = [
                    stub.Unary(pb2.Msg(payload=b"hello %d" % i, seq=i), timeout=10)
                    for i in range(args.count)
                ]
                result["payloads"] = [r.payload.decode() for r in replies]
            elif args.case == "big":
                payload = bytes(range(256)) * (args.size // 256)
                reply = stub.Unary(pb2.Msg(payload=payload, seq=1), timeout=60)
                result["sent_sha256"] = hashlib.sha256(payload).hexdigest()
                result["received_sha256"] = hashlib.sha256(reply.payload).hexdigest()
                result["received_len"] = len(reply.payload)
            elif args.case == "stream":
                req = pb2.StreamRequest(count=args.count, size=args.size)
                msgs = list(stub.ServerStream(req, timeout=30))
                result["seqs"] = [m.seq for m in msgs]
                result["sizes_ok"] = all(len(m.payload) == args.size for m in msgs)
            elif args.case == "bidi":
                sent = [pb2.Msg(payload=b"msg-%d" % i, seq=i) for i in range(args.count)]
                replies = list(stub.Bidi(iter(sent), timeout=30))
                result["payloads"] = [r.payload.decode() for r in replies]
            elif args.case == "error":
                stub.Unary(pb2.Msg(payload=b"fail:%d" % args.code), timeout=10)
            result["code"] = "OK"
        except grpc.RpcError as exc:
            result["code"] = exc.code().name
            result["details"] = exc.details()
        result["elapsed"] = time.monotonic() - started
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=50051)
    s.add_argument("--gen", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--gen", required=True)
    c.add_argument("--case", choices=["unary", "big", "stream", "bidi", "error"], required=True)
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--size", type=int, default=16)
    c.add_argument("--code", type=int, default=5)
    args = parser.parse_args()
    serve(args) if args.cmd == "serve" else client(args)


if __name__ == "__main__":
    main()
