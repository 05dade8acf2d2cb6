"""The cluster DNS server on real sockets: loopback UDP/TCP, and glibc in a namespace."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from harness.mesh import REPO_ROOT, base_env, wait_for
from weft.local.dns import ClusterRecords, DNSServer, resolv_conf
from weft.local.netns import Topology

WEB = "web-svc.default.svc.cluster.local."
RECORDS = ClusterRecords(services={("default", "web-svc"): "10.96.0.20"})
TIMEOUT = 5.0


def bound_pair() -> tuple[socket.socket, socket.socket, int]:
    """A bound UDP socket and a listening TCP socket on one 127.0.0.1 port (both bound here,
    then handed to the server)."""
    while True:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        try:
            return udp, socket.create_server(("127.0.0.1", port)), port
        except OSError:  # that TCP port is taken: bind another UDP port
            udp.close()


async def started(records: ClusterRecords) -> tuple[DNSServer, int]:
    """A server with ``records`` on 127.0.0.1, and its port."""
    udp, tcp, port = bound_pair()
    dns_server = DNSServer(records)
    await dns_server.serve(udp, tcp)
    return dns_server, port


@pytest.fixture
async def server() -> AsyncIterator[tuple[DNSServer, int]]:
    """A server with :data:`RECORDS` on 127.0.0.1 and its port."""
    dns_server, port = await started(RECORDS)
    try:
        yield dns_server, port
    finally:
        await dns_server.close()


def addresses(response: dns.message.Message) -> list[str]:
    """The A addresses in the answer section."""
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


async def tcp_exchange(port: int, payload: bytes, replies: int) -> list[bytes]:
    """Send ``payload`` on one TCP connection and read ``replies`` length-prefixed messages."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        out = []
        for _ in range(replies):
            size = int.from_bytes(await reader.readexactly(2), "big")
            out.append(await reader.readexactly(size))
        return out
    finally:
        writer.close()


def framed(message: dns.message.Message) -> bytes:
    """A message with its 2-byte TCP length prefix."""
    wire = message.to_wire()
    return len(wire).to_bytes(2, "big") + wire


@pytest.mark.anyio
async def test_udp_query(server: tuple[DNSServer, int]) -> None:
    _, port = server
    query = dns.message.make_query(WEB, "A")
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert addresses(response) == ["10.96.0.20"]


@pytest.mark.anyio
async def test_tcp_query(server: tuple[DNSServer, int]) -> None:
    _, port = server
    query = dns.message.make_query(WEB, "A")
    response = await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert addresses(response) == ["10.96.0.20"]
    outside = dns.message.make_query("example.com.", "A")
    response = await dns.asyncquery.tcp(outside, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert response.rcode() == dns.rcode.REFUSED


@pytest.mark.anyio
async def test_tcp_connection_carries_several_queries(server: tuple[DNSServer, int]) -> None:
    _, port = server
    first = dns.message.make_query(WEB, "A")
    second = dns.message.make_query("nope.default.svc.cluster.local.", "A")
    replies = await asyncio.wait_for(tcp_exchange(port, framed(first) + framed(second), 2), TIMEOUT)
    responses = [dns.message.from_wire(r) for r in replies]
    assert [r.id for r in responses] == [first.id, second.id]
    assert addresses(responses[0]) == ["10.96.0.20"]
    assert responses[1].rcode() == dns.rcode.NXDOMAIN


@pytest.mark.anyio
async def test_update_swaps_records(server: tuple[DNSServer, int]) -> None:
    dns_server, port = server
    name = "api.shop.svc.cluster.local."
    query = dns.message.make_query(name, "A")
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert response.rcode() == dns.rcode.NXDOMAIN
    dns_server.update(ClusterRecords(services={("shop", "api"): "10.96.3.3"}))
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert addresses(response) == ["10.96.3.3"]
    response = await dns.asyncquery.udp(
        dns.message.make_query(WEB, "A"), "127.0.0.1", port=port, timeout=TIMEOUT
    )
    assert response.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.anyio
async def test_malformed_datagram_gets_no_reply(server: tuple[DNSServer, int]) -> None:
    _, port = server
    query = dns.message.make_query(WEB, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"\x12\x34garbage")
        await loop.sock_sendall(sock, query.to_wire())
        # Datagrams are answered in order: the first reply is the valid query's.
        reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
    assert dns.message.from_wire(reply).id == query.id


@pytest.mark.anyio
async def test_malformed_tcp_message_closes_the_connection(
    server: tuple[DNSServer, int],
) -> None:
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x00\x03bad")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()
    response = await dns.asyncquery.tcp(
        dns.message.make_query(WEB, "A"), "127.0.0.1", port=port, timeout=TIMEOUT
    )
    assert addresses(response) == ["10.96.0.20"]


@pytest.mark.anyio
async def test_close_ends_open_connections_and_listeners() -> None:
    dns_server, port = await started(RECORDS)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await dns_server.close()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await dns_server.close()  # idempotent


@pytest.mark.anyio
async def test_port_in_use_fails_to_start(server: tuple[DNSServer, int]) -> None:
    _, port = server
    with pytest.raises(OSError):
        await DNSServer(RECORDS).start("127.0.0.1", port)


# -- glibc in a namespace -----------------------------------------------------------------


@pytest.fixture
def dns_pair() -> Iterator[tuple[Topology, str, str]]:
    """A node namespace running ``python -m weft.local.dns`` on 10.53.0.1:53, and a client."""
    suffix = secrets.token_hex(3)
    topology = Topology()
    proc: subprocess.Popen[bytes] | None = None
    try:
        node = topology.add_netns(f"wdn-{suffix}-node")
        client = topology.add_netns(f"wdn-{suffix}-client")
        topology.add_bridge(node, f"wdb{suffix}", "10.53.0.1/24")
        topology.add_veth(
            pod_netns=client,
            node_netns=node,
            bridge=f"wdb{suffix}",
            node_ifname=f"wdv{suffix}",
            address="10.53.0.2/24",
            gateway="10.53.0.1",
        )
        topology.write_etc_file(client, "resolv.conf", resolv_conf("10.53.0.1", "default"))
        topology.write_etc_file(client, "hosts", "127.0.0.1 localhost\n")
        argv = [sys.executable, "-m", "weft.local.dns", "--listen", "10.53.0.1:53"]
        argv += ["--record", "default/web-svc=10.96.0.20", "--record", "shop/api=10.96.3.3"]
        proc = topology.popen(node, argv, env=base_env(), cwd=REPO_ROOT)

        def serving() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"dns server exited {proc.returncode}")
            out = topology.exec(node, ["ss", "-Hltun", "sport = :53"]).stdout
            return len(out.splitlines()) == 2  # udp and tcp

        wait_for(serving, 15, what="the DNS server on :53")
        yield topology, node, client
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        errors = topology.cleanup()
        assert not errors, errors


@pytest.mark.netns
def test_glibc_resolves_short_names_through_search_domains(
    dns_pair: tuple[Topology, str, str],
) -> None:
    topology, _, client = dns_pair
    out = topology.exec(client, ["getent", "hosts", "web-svc"], check=False)
    assert out.returncode == 0, out
    assert out.stdout.split() == ["10.96.0.20", "web-svc.default.svc.cluster.local"]
    other = topology.exec(client, ["getent", "hosts", "api.shop"], check=False)
    assert other.stdout.split() == ["10.96.3.3", "api.shop.svc.cluster.local"]
    missing = topology.exec(client, ["getent", "hosts", "nope"], check=False, timeout=10)
    assert missing.returncode == 2, missing  # key not found, and no hang on REFUSED
