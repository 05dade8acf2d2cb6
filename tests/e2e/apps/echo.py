"""A test application: an HTTP/1.1 and HTTP/2 (prior knowledge) echo server on one port.

Routes (any method):

- ``/echo``: the request body back, with the request's ``content-type``.
- ``/bytes/N``: ``N`` bytes of a repeating pattern.
- ``/chunked/N``, ``/close/N``: the same, over HTTP/1 sent chunked, or without a length and
  ending with the connection.
- ``/status/N``: status ``N`` (without a body for 204 and 304).
- anything else: a JSON description of the request (method, path, version, headers, body size
  and SHA-256).

Every response carries ``x-echo-conn`` (a per-connection serial number) and ``x-echo-proto``. Each
request is logged to stdout as ``REQ <proto> <method> <path>``; ``LISTENING <port>`` is printed
once the socket is bound (``--port 0``: the port the system chose).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PATTERN = b"0123456789abcdef" * 4096
MAX_HEAD = 1 << 20
_serial = itertools.count(1)

Headers = list[tuple[str, str]]


def pattern(n: int) -> bytes:
    """``n`` bytes of the repeating test pattern."""
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


def handle(
    proto: str, method: str, path: str, headers: Headers, body: bytes
) -> tuple[int, Headers, bytes]:
    """Build the response to one request."""
    print(f"REQ {proto} {method} {path}", flush=True)
    if path == "/echo":
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
        return 200, [("content-type", ctype or "application/octet-stream")], body
    for prefix in ("/bytes/", "/chunked/", "/close/"):
        if path.startswith(prefix):
            size = int(path[len(prefix) :])
            return 200, [("content-type", "application/octet-stream")], pattern(size)
    if path.startswith("/status/"):
        code = int(path[8:])
        if code in (204, 304):
            return code, [], b""
        return code, [("content-type", "text/plain")], f"status {code}\n".encode()
    info = {
        "method": method,
        "path": path,
        "proto": proto,
        "headers": headers,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return 200, [("content-type", "application/json")], json.dumps(info).encode()


class BadRequest(Exception):
    """The HTTP/1 request could not be parsed."""


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked body (and discard trailers)."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise BadRequest(f"bad chunk size {size_text!r}") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")


async def serve_h1(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
) -> None:
    """Serve HTTP/1.x requests until the client closes or asks to close."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, path, version = lines[0].split(" ")
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            return
        headers: Headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        lower = {k.lower(): v for k, v in headers}
        if lower.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in lower.get("transfer-encoding", "").lower():
            body = await read_chunked(reader)
        elif "content-length" in lower:
            body = await reader.readexactly(int(lower["content-length"]))
        else:
            body = b""
        status, rsp_headers, rsp_body = handle(version, method, path, headers, body)
        close = version == "HTTP/1.0" or lower.get("connection", "").lower() == "close"
        framing = path.split("/")[1] if path.startswith(("/chunked/", "/close/")) else "length"
        close = close or framing == "close"
        out = [f"HTTP/1.1 {status} X"]
        out += [f"{k}: {v}" for k, v in rsp_headers]
        if framing == "chunked":
            out.append("transfer-encoding: chunked")
        elif framing == "length" and status not in (204, 304):
            out.append(f"content-length: {len(rsp_body)}")
        out += [f"x-echo-conn: {conn_id}", f"x-echo-proto: {version}"]
        if close:
            out.append("connection: close")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD" and framing == "chunked":
            for at in range(0, len(rsp_body), 1000):
                piece = rsp_body[at : at + 1000]
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        elif method != "HEAD":
            writer.write(rsp_body)
        await writer.drain()
        if close:
            return


class H2Server:
    """One HTTP/2 connection, driven by the ``h2`` state machine."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn_id = conn_id
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.requests: dict[int, tuple[Headers, bytearray]] = {}
        self.pending: dict[int, bytearray] = {}

    async def run(self, initial: bytes) -> None:
        """Serve until the peer goes away."""
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        data = initial
        while True:
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.flush()
                return
            for event in events:
                self.on_event(event)
            self.send_pending()
            self.flush()
            await self.writer.drain()
            try:
                data = await self.reader.read(65536)
            except ConnectionError:
                return
            if not data:
                return

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = [(str(k), str(v)) for k, v in event.headers or []]
            self.requests[event.stream_id] = (headers, bytearray())
            if event.stream_ended is not None:
                self.respond(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            if event.stream_id in self.requests and event.data:
                self.requests[event.stream_id][1].extend(event.data)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_ended is not None:
                self.respond(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.respond(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.requests.pop(event.stream_id, None)
            self.pending.pop(event.stream_id, None)

    def respond(self, stream_id: int) -> None:
        request = self.requests.pop(stream_id, None)
        if request is None:
            return
        headers, body = request
        pseudo = dict(h for h in headers if h[0].startswith(":"))
        regular = [h for h in headers if not h[0].startswith(":")]
        status, rsp_headers, rsp_body = handle(
            "HTTP/2", pseudo.get(":method", ""), pseudo.get(":path", ""), regular, bytes(body)
        )
        out = [(":status", str(status)), *rsp_headers]
        out += [
            ("content-length", str(len(rsp_body))),
            ("x-echo-conn", str(self.conn_id)),
            ("x-echo-proto", "HTTP/2"),
        ]
        self.conn.send_headers(stream_id, out, end_stream=not rsp_body)
        if rsp_body:
            self.pending[stream_id] = bytearray(rsp_body)

    def send_pending(self) -> None:
        for stream_id in list(self.pending):
            buf = self.pending[stream_id]
            while buf:
                window = min(
                    self.conn.local_flow_control_window(stream_id),
                    self.conn.max_outbound_frame_size,
                )
                if window <= 0:
                    break
                chunk = bytes(buf[:window])
                del buf[:window]
                self.conn.send_data(stream_id, chunk, end_stream=not buf)
            if not buf:
                del self.pending[stream_id]

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)


async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn_id = next(_serial)
    try:
        initial = b""
        while len(initial) < len(H2_PREFACE) and H2_PREFACE.startswith(initial):
            more = await reader.read(65536)
            if not more:
                return
            initial += more
        if initial.startswith(H2_PREFACE):
            await H2Server(reader, writer, conn_id).run(initial)
        else:
            # Hand the bytes already read back to the reader for the HTTP/1 parser.
            feed = asyncio.StreamReader(limit=MAX_HEAD)
            feed.feed_data(initial)

            async def pump() -> None:
                while data := await reader.read(65536):
                    feed.feed_data(data)
                feed.feed_eof()

            task = asyncio.create_task(pump())
            try:
                await serve_h1(feed, writer, conn_id)
            finally:
                task.cancel()
    except (BadRequest, ConnectionError, asyncio.IncompleteReadError) as exc:
        print(f"ERR conn {conn_id}: {exc!r}", flush=True)
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = await asyncio.start_server(on_connection, args.host, args.port, limit=MAX_HEAD)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
