"""The test and benchmark harness: pods on a bridge, a ``weft cluster`` per test, a proxy on
loopback, an in-process proxy pair, an in-process identity service. Shared by ``tests/`` and
``bench/``; not part of weft (the wheel ships only ``weft``)."""
