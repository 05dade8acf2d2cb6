"""Two weft proxy pairs in one process, for ``bench/callgrind.py --pair``.

Each pair is a client's outbound listener and a server's inbound listener with mTLS between
them (``harness/proxy_pair.py`` of the checkout given; ``tests/`` in older ones), the inbound one
forwarding to a backend on 127.0.0.1: one pair in front of the HTTP/1.1 backend, one in front of
the h2c gRPC-shaped one.
The outbound endpoint carries discovery's ``h2`` hint, so HTTP/1.1 crosses as HTTP/2
(``l5d-orig-proto``) where the checkout has it; an older checkout's pair sends it as HTTP/1.1.

    <checkout>/.venv/bin/python bench/pair_proxy.py <checkout> <h1 port> <h2 port>

Prints ``h1 pair on 127.0.0.1:<port>`` and ``grpc pair on 127.0.0.1:<port>`` (the outbound
listeners), then serves until killed.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from pathlib import Path


def main() -> None:
    """Start both pairs from the checkout named on the command line."""
    checkout, h1_port, h2_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, str(checkout))
    import uvloop

    # A checkout from before harness/ existed keeps the pair in tests/.
    module = "harness.proxy_pair" if (checkout / "harness").is_dir() else "tests.proxy_pair"
    ProxyPair = importlib.import_module(module).ProxyPair

    hinted = "h2" in inspect.signature(ProxyPair).parameters

    async def run() -> None:
        pairs = []
        for name, port in (("h1", h1_port), ("grpc", h2_port)):
            app = ("127.0.0.1", port)
            pair = ProxyPair(app, mtls=True, h2=True) if hinted else ProxyPair(app, mtls=True)
            pairs.append(await pair.start())
            print(f"{name} pair on 127.0.0.1:{pair.outbound[1]}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


if __name__ == "__main__":
    main()
