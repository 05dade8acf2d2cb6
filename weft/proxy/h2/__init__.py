"""A lean HTTP/2 layer written for proxying: frames, HPACK, and flow-controlled stream forwarding.

``frames`` and ``hpack_codec`` are sans-I/O; ``heads`` turns decoded header blocks into what the
proxy reads and forwards; ``connection`` is the asyncio protocol shared by both sides of a hop;
``pool`` holds the long-lived upstream connections. ``weft.proxy.http2`` is the entry point.
"""
