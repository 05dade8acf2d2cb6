"""The seam between the proxy's request handlers and tap.

Every connection's context holds the proxy's :class:`Taps`. A handler routing a request checks
``ctx.taps.active`` (one attribute check: the whole cost of tap while nobody taps) and only when
it is true builds :class:`RequestFacts` and calls :meth:`Taps.observe`. A request that a tap
matched carries a :class:`Tapped` in its exchange's ``tap`` slot (``None`` otherwise) and reports
its response head and end to it; the handlers check that slot, never ``Taps``, after routing.

Nothing here imports protobuf or h2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

Addr = tuple[str, int]
Fields = Sequence[tuple[bytes, bytes]]
LabelPairs = tuple[tuple[str, str], ...]


class TapSink(Protocol):
    """One tap (an Observe stream) as the data path sees it."""

    spent: bool  # its limit is reached: it matches no more requests

    def matches(self, facts: RequestFacts) -> bool:
        """Whether the tap's filter selects this request."""
        ...

    def claim(self) -> int:
        """Count a matched request against the limit; returns its number in the stream."""
        ...

    def request_init(self, tapped: Tapped, stream: int) -> None:
        """The request was routed."""
        ...

    def response_init(self, tapped: Tapped, stream: int) -> None:
        """The response head went to the client."""
        ...

    def response_end(self, tapped: Tapped, stream: int) -> None:
        """The response ended (completely, or by a reset or a lost connection)."""
        ...


def _strip(pairs: LabelPairs, prefix: str) -> dict[str, str]:
    n = len(prefix)
    return {k[n:] if k.startswith(prefix) else k: v for k, v in pairs}


class RequestFacts:
    """What the proxy knows of a request when it routes it (built only while a tap is active).

    ``fields`` loads the request's header fields on demand (HTTP/2: decoding the forwarded block,
    pseudo-headers included; HTTP/1: parsing the forwarded head); ``scheme`` None means "take it
    from the ``:scheme`` field". Labels are kept as the metrics' pairs and turned into tap's
    dictionaries (without the ``dst_``/``rt_`` prefixes) on first use.
    """

    __slots__ = (
        "_dst_labels",
        "_fields",
        "_route_labels",
        "_scheme",
        "_src_labels",
        "authority",
        "destination",
        "direction",
        "dst_pairs",
        "dst_tls",
        "load_fields",
        "method",
        "path",
        "route_pairs",
        "source",
        "src_tls",
    )

    def __init__(
        self,
        direction: str,
        source: Addr,
        destination: Addr | None,
        method: str,
        scheme: str | None,
        authority: str,
        path: str,
        load_fields: Callable[[], Fields],
        src_tls: LabelPairs = (),
        dst_pairs: LabelPairs = (),
        dst_tls: LabelPairs = (),
        route_pairs: LabelPairs = (),
    ) -> None:
        self.direction = direction
        self.source = source
        self.destination = destination
        self.method = method
        self._scheme = scheme
        self.authority = authority
        cut = path.find("?")
        self.path = path[:cut] if cut >= 0 else path
        self.load_fields = load_fields
        self._fields: Fields | None = None
        self.src_tls = src_tls
        self.dst_pairs = dst_pairs
        self.dst_tls = dst_tls
        self.route_pairs = route_pairs
        self._src_labels: dict[str, str] | None = None
        self._dst_labels: dict[str, str] | None = None
        self._route_labels: dict[str, str] | None = None

    def fields(self) -> Fields:
        """The request's header fields as forwarded (loaded once)."""
        if self._fields is None:
            self._fields = self.load_fields()
        return self._fields

    @property
    def scheme(self) -> str:
        """``http``, ``https``, ... ("" if the request says none)."""
        if self._scheme is None:
            found = [v for n, v in self.fields() if n == b":scheme"]
            self._scheme = found[0].decode("latin-1") if found else ""
        return self._scheme

    @property
    def key(self) -> tuple[object, ...]:
        """What the events' common part (addresses, direction, metadata) is made of."""
        return (
            self.direction,
            self.source,
            self.destination,
            self.src_tls,
            self.dst_pairs,
            self.dst_tls,
            self.route_pairs,
        )

    @property
    def src_labels(self) -> dict[str, str]:
        """The source's metadata: ``tls`` (and ``client_id`` for a verified inbound client)."""
        if self._src_labels is None:
            self._src_labels = dict(self.src_tls)
        return self._src_labels

    @property
    def dst_labels(self) -> dict[str, str]:
        """The destination's metadata: its discovery labels (``namespace``, ``pod``, ...; none
        inbound) and ``tls`` (with ``server_id`` for a verified outbound endpoint)."""
        if self._dst_labels is None:
            labels = _strip(self.dst_pairs, "dst_")
            labels.update(self.dst_tls)
            self._dst_labels = labels
        return self._dst_labels

    @property
    def route_labels(self) -> dict[str, str]:
        """The labels of the ServiceProfile route the request matched (``route``, ...)."""
        if self._route_labels is None:
            self._route_labels = _strip(self.route_pairs, "rt_")
        return self._route_labels


class Tapped:
    """A request that taps matched: when things happened to it and what its response was.

    Times are ``time.monotonic()`` seconds. Each event is reported once, to every tap that
    matched, whatever the handler calls twice (a response ended by a reset after it ended, ...).
    """

    __slots__ = (
        "encoded",
        "ended_at",
        "facts",
        "grpc_status",
        "request_at",
        "reset_code",
        "response_at",
        "response_bytes",
        "response_headers",
        "status",
        "taps",
        "trailers",
    )

    def __init__(self, facts: RequestFacts, now: float) -> None:
        self.facts = facts
        self.taps: list[tuple[TapSink, int]] = []
        self.request_at = now
        self.response_at = 0.0
        self.ended_at = 0.0
        self.status = 0
        self.response_headers: Callable[[], Fields] | None = None
        self.trailers: Callable[[], Fields] | None = None
        self.response_bytes = 0
        self.grpc_status: int | None = None
        self.reset_code: int | None = None
        self.encoded: bytes | None = None  # the events' common part, once encoded

    def response_init(
        self, now: float, status: int, headers: Callable[[], Fields] | None = None
    ) -> None:
        """The response head (``status``) went to the client."""
        if self.response_at or self.ended_at:
            return
        self.response_at = now
        self.status = status
        self.response_headers = headers
        for sink, stream in self.taps:
            sink.response_init(self, stream)

    def response_end(
        self, now: float, grpc_status: int | None = None, reset_code: int | None = None
    ) -> None:
        """The response ended: with a gRPC status, by an HTTP/2 reset, or neither."""
        if self.ended_at:
            return
        self.ended_at = now
        self.grpc_status = grpc_status
        self.reset_code = reset_code
        for sink, stream in self.taps:
            sink.response_end(self, stream)


class Taps:
    """The proxy's taps. ``active`` is true while some tap still matches requests."""

    __slots__ = ("active", "dropped", "matching", "max_streams", "streams")

    def __init__(self, max_streams: int = 100) -> None:
        self.active = False
        self.max_streams = max_streams
        self.matching: list[TapSink] = []
        self.streams: set[TapSink] = set()
        self.dropped = 0  # events taps lost because their clients read too slowly

    def add(self, sink: TapSink) -> bool:
        """Start tapping for ``sink``; False when the proxy already serves ``max_streams``."""
        if len(self.streams) >= self.max_streams:
            return False
        self.streams.add(sink)
        self.matching.append(sink)
        self.active = True
        return True

    def remove(self, sink: TapSink) -> None:
        """Forget ``sink`` (its stream ended or its client went away)."""
        self.streams.discard(sink)
        if sink in self.matching:
            self.matching = [s for s in self.matching if s is not sink]
            self.active = bool(self.matching)

    def observe(self, facts: RequestFacts, now: float) -> Tapped | None:
        """Offer a routed request to every matching tap: its :class:`Tapped` if one took it."""
        tapped: Tapped | None = None
        for sink in self.matching:
            if sink.matches(facts):
                if tapped is None:
                    tapped = Tapped(facts, now)
                tapped.taps.append((sink, sink.claim()))
        if tapped is None:
            return None
        if any(sink.spent for sink, _ in tapped.taps):
            self.matching = [s for s in self.matching if not s.spent]
            self.active = bool(self.matching)
        for sink, stream in tapped.taps:
            sink.request_init(tapped, stream)
        return tapped
