"""A test TLS client: connect to HOST:PORT with SNI NAME presenting CERT/KEY, send one HTTP
request, and print the outcome as one JSON line (``ok``, ``error``, ``response``)."""

from __future__ import annotations

import argparse
import json
import socket
import ssl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--name", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's side of the check is what is under test
    ctx.load_cert_chain(args.cert, args.key)
    out: dict[str, object] = {"ok": False, "error": "", "response": ""}
    try:
        raw = socket.create_connection((args.host, args.port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname=args.name) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        out["ok"] = bool(data)
        out["response"] = data.decode("latin-1")[:200]
    except (OSError, ssl.SSLError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
