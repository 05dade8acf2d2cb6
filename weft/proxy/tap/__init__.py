"""Tap: live events about the requests a proxy forwards, served on its control port.

``registry`` is the seam the request handlers consult (no protobuf, no h2); ``match`` and
``events`` are pure; ``stream`` is one Observe call's limit and bounded queue; ``wire`` is gRPC's
message framing; ``server`` is the mTLS control server, which loads ``h2`` on its first connection.
"""
