"""TLS labels of proxy connections and the errors a failed handshake answers with."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from weft.proxy.discovery import Endpoint
from weft.proxy.errors import connect_error, errno_label
from weft.proxy.tls import TLS_DISABLED, Dialer, accepted_labels, no_identity

NAME = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
MESHED = Endpoint(("10.0.0.5", 8080), (), NAME)
PLAIN = Endpoint(("10.0.0.6", 8080))


class _Identity:
    """Stands in for LocalIdentity: only whether there is one matters to the labels."""

    current = None


def test_labels_follow_linkerds_tls_values() -> None:
    outbound = Dialer(_Identity(), outbound=True)  # type: ignore[arg-type]
    assert outbound.tls_labels(MESHED) == (("tls", "true"), ("server_id", NAME))
    assert outbound.tls_labels(PLAIN) == no_identity("not_provided_by_service_discovery")
    inbound = Dialer(_Identity(), outbound=False)  # type: ignore[arg-type]
    assert inbound.tls_labels(PLAIN) == (("tls", "no_identity"), ("no_tls_reason", "loopback"))
    assert Dialer(None, outbound=True).tls_labels(MESHED) == TLS_DISABLED
    assert accepted_labels(NAME) == (("tls", "true"), ("client_id", NAME))
    assert accepted_labels(None) == (("tls", "true"),)


def test_no_tls_context_until_there_is_a_certificate() -> None:
    assert Dialer(_Identity(), outbound=True).context_for(MESHED) is None  # type: ignore[arg-type]
    assert Dialer(None, outbound=True).context_for(MESHED) is None


def test_a_failed_handshake_is_a_502_naming_the_reason() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "certificate has expired"
    err = connect_error(exc, ("10.0.0.5", 8080))
    assert err.status == 502
    assert err.reason == "TLS handshake with 10.0.0.5:8080 failed: certificate has expired"
    assert errno_label(exc) == "EPROTO"


class _Recorder(asyncio.Protocol):
    """Remembers its transport."""

    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


@pytest.mark.anyio
async def test_a_connection_made_while_the_loop_was_busy_is_kept() -> None:
    proto = _Recorder()
    with socket.create_server(("127.0.0.1", 0)) as server:
        host, port = server.getsockname()[:2]
        dialer = Dialer(None, outbound=False)
        dial = asyncio.create_task(dialer.connect(lambda: proto, Endpoint((host, port)), 0.05))
        await asyncio.sleep(0)  # the dial has started its connect
        # The loop is busy past the 50 ms deadline (this is the condition under test, not a
        # wait); meanwhile the kernel completes the connect.
        time.sleep(0.2)
        await dial
        assert proto.transport is not None
        proto.transport.close()


@pytest.mark.anyio
async def test_a_connection_not_up_at_the_deadline_times_out() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        addr = server.getsockname()[:2]
        # The first connection fills the backlog: later SYNs go unanswered.
        with socket.create_connection(addr), pytest.raises(TimeoutError):
            await Dialer(None, outbound=False).connect(_Recorder, Endpoint(addr), 0.1)
