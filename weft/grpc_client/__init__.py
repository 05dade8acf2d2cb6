"""A small gRPC client for the proxy's control-plane calls (Certify, Get, GetProfile).

It speaks HTTP/2 with the proxy's own frame layer (``weft.proxy.h2.frames``, ``hpack_codec``),
so a proxy never loads grpcio: ``h2`` is the client side of one connection (pure), ``calls``
gRPC's rules for one call (pure), ``channel`` the asyncio part (TLS, connections, deadlines).
"""
