"""Two weft proxy pairs in one process, for ``bench/callgrind.py --pair``.

Each pair is a client's outbound listener and a server's inbound listener with mTLS between
them (``harness/proxy_pair.py`` of the checkout given; ``tests/`` in older ones), the inbound one
forwarding to a backend on 127.0.0.1: one pair in front of the HTTP/1.1 backend, one in front of
the h2c gRPC-shaped one.
The outbound endpoint carries discovery's ``h2`` hint, so HTTP/1.1 crosses as HTTP/2
(``l5d-orig-proto``) where the checkout has it; an older checkout's pair sends it as HTTP/1.1.

With ``--routed`` the outbound listeners follow the ServiceProfile of ``bench/mtls.py``'s
``routed`` namespace, as the destination service sends it (a GET route and the gRPC route, with
Linkerd's default 10 s timeout): every request is matched to a route, counted in ``route_*``
series and timed.

    <checkout>/.venv/bin/python bench/pair_proxy.py <checkout> <h1 port> <h2 port> [--routed]

Prints ``h1 pair on 127.0.0.1:<port>`` and ``grpc pair on 127.0.0.1:<port>`` (the outbound
listeners), then serves until killed.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

ROUTE_TIMEOUT = 10.0  # the destination service's default for a route without one


def main() -> None:
    """Start both pairs from the checkout named on the command line."""
    checkout, h1_port, h2_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, str(checkout))
    import uvloop

    # A checkout from before harness/ existed keeps the pair in tests/.
    module = "harness.proxy_pair" if (checkout / "harness").is_dir() else "tests.proxy_pair"
    ProxyPair = importlib.import_module(module).ProxyPair

    hinted = "h2" in inspect.signature(ProxyPair).parameters
    options: dict[str, Any] = {"mtls": True}
    if hinted:
        options["h2"] = True
    if "--routed" in sys.argv[4:]:
        options["profile"] = routed_profile()

    async def run() -> None:
        pairs = []
        for name, port in (("h1", h1_port), ("grpc", h2_port)):
            app = ("127.0.0.1", port)
            pair = ProxyPair(app, **options)
            pairs.append(await pair.start())
            print(f"{name} pair on 127.0.0.1:{pair.outbound[1]}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


def routed_profile() -> Any:
    """The proxy's profile for ``bench/mtls.py``'s ServiceProfile (imported from the checkout
    on ``sys.path``)."""
    from bench.callgrind import GRPC_PATH
    from weft.proxy.profiles import profile_from_message
    from weft.proxy_api import destination as api

    def route(name: str, method: str, regex: str) -> api.Route:
        parts = (api.RequestMatch("method", method=method), api.RequestMatch("path", regex=regex))
        condition = api.RequestMatch("all", parts)
        return api.Route(condition, (), {"route": name}, False, ROUTE_TIMEOUT)

    routes = (route("root", "GET", "/"), route("grpc", "POST", GRPC_PATH))
    fqn = "backend.routed.svc.cluster.local"
    return profile_from_message(api.DestinationProfile(routes, fully_qualified_name=fqn), 8080)


if __name__ == "__main__":
    main()
