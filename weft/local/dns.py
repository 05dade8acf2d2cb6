"""Cluster DNS: authoritative answers for service and pod names, over UDP and TCP.

:func:`resolve` is pure: it answers one query from :class:`ClusterRecords`. Names under the
cluster domain get A records (``<svc>.<ns>.svc.<domain>``, ``<a-b-c-d>.<ns>.pod.<domain>``), NODATA
or NXDOMAIN; every other name is REFUSED, because nothing is ever forwarded off the machine.
:class:`DNSServer` serves :func:`resolve` on a UDP socket and a TCP listener (2-byte length
prefix), dropping what it cannot parse.

``python -m weft.local.dns --listen IP:PORT --record NS/NAME=IP ...`` runs a server until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import re
import signal
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger("weft.local.dns")

DEFAULT_DOMAIN = "cluster.local"
TTL = 5
# Seconds a TCP connection may wait for its next query before it is closed.
TCP_IDLE_TIMEOUT = 10.0

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _label(value: str, what: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(f"invalid {what} {value!r} (a lower-case DNS label)")
    return value


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


class ClusterRecords:
    """The cluster's names: services by ``(namespace, name)`` and pods by ``(namespace, ip)``."""

    def __init__(
        self,
        services: Mapping[tuple[str, str], str] | None = None,
        pods: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.services = dict(services or {})
        self.pods = frozenset(pods)
        owners: dict[tuple[str, ...], str] = {}
        for (namespace, name), ip in self.services.items():
            key = (_label(name, "service name"), _label(namespace, "namespace"), "svc")
            owners[key] = _ipv4(ip)
        for namespace, ip in self.pods:
            address = _ipv4(ip)
            owners[(address.replace(".", "-"), _label(namespace, "namespace"), "pod")] = address
        self._addresses = {dns.name.Name(labels): ip for labels, ip in owners.items()}
        # Every owner's ancestors exist too (empty non-terminals answer NODATA, not NXDOMAIN).
        names = {(), ("svc",), ("pod",)}
        names.update(labels[i:] for labels in owners for i in range(len(labels)))
        self._names = {dns.name.Name(labels) for labels in names}

    def address(self, relative: dns.name.Name) -> str | None:
        """The IPv4 address of a name relative to the cluster domain (any case), if it has one."""
        return self._addresses.get(relative)

    def exists(self, relative: dns.name.Name) -> bool:
        """Whether a name relative to the cluster domain exists (has records or names below it)."""
        return relative in self._names


def _soa(zone: dns.name.Name) -> dns.rrset.RRset:
    text = f"ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 {TTL}"
    return dns.rrset.from_text(zone, TTL, dns.rdataclass.IN, dns.rdatatype.SOA, text)


def resolve(
    query: dns.message.Message, records: ClusterRecords, domain: str = DEFAULT_DOMAIN
) -> dns.message.Message:
    """The authoritative response to ``query`` (which must not be a response itself)."""
    response = dns.message.make_response(query)
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    zone = dns.name.from_text(domain)
    if question.rdclass != dns.rdataclass.IN or not question.name.is_subdomain(zone):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    relative = question.name.relativize(zone)
    address = records.address(relative)
    wants = question.rdtype
    if address is not None and wants in (dns.rdatatype.A, dns.rdatatype.ANY):
        response.answer.append(
            dns.rrset.from_text(question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, address)
        )
    elif relative == dns.name.empty and wants in (dns.rdatatype.SOA, dns.rdatatype.ANY):
        response.answer.append(_soa(zone))
    else:
        if not records.exists(relative):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(zone))
    return response


def answer_wire(wire: bytes, records: ClusterRecords, domain: str = DEFAULT_DOMAIN) -> bytes | None:
    """The wire response to a wire query, or ``None`` if it is malformed or not a query."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        log.debug("dropping malformed DNS message: %s", exc)
        return None
    if query.flags & dns.flags.QR:
        log.debug("dropping a DNS response sent as a query")
        return None
    return resolve(query, records, domain).to_wire()


def resolv_conf(nameserver: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """A pod's ``/etc/resolv.conf``: the cluster nameserver and Kubernetes' search path."""
    search = f"{namespace}.svc.{domain} svc.{domain} {domain}"
    return f"nameserver {nameserver}\nsearch {search}\noptions ndots:5\n"


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)


class DNSServer:
    """Serves :func:`resolve` over UDP and TCP; :meth:`update` swaps the records atomically."""

    def __init__(self, records: ClusterRecords | None = None, domain: str = DEFAULT_DOMAIN):
        self.records = records or ClusterRecords()
        self.domain = domain
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int = 53) -> None:
        """Listen on ``host:port`` over UDP and TCP."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            tcp = socket.create_server((host, port), family=family)
        except BaseException:
            udp.close()
            raise
        await self.serve(udp, tcp)

    async def serve(self, udp: socket.socket, tcp: socket.socket) -> None:
        """Answer on a bound UDP socket and a listening TCP socket (both taken over)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=udp)
        self._udp = transport
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            tcp.close()
            await self.close()
            raise

    def update(self, records: ClusterRecords) -> None:
        """Answer every later query from ``records``."""
        self.records = records

    def answer(self, wire: bytes) -> bytes | None:
        """The wire response to one wire query from the current records, or ``None`` to drop."""
        return answer_wire(wire, self.records, self.domain)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                reply = self.answer(wire)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            log.debug("DNS TCP connection ends: %r", exc)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def _record(text: str) -> tuple[tuple[str, str], str]:
    """Parse ``NAMESPACE/NAME=IP``."""
    names, sep, ip = text.partition("=")
    namespace, slash, name = names.partition("/")
    if not (sep and slash):
        raise ValueError(f"expected NAMESPACE/NAME=IP, got {text!r}")
    return (namespace, name), ip


def _listen(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve(address: tuple[str, int], records: ClusterRecords, domain: str) -> None:
    server = DNSServer(records, domain)
    await server.start(*address)
    log.info("serving %s on %s:%d", domain, *address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run a cluster DNS server with the records given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m weft.local.dns", description=main.__doc__)
    parser.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--record", type=_record, action="append", default=[], metavar="NAMESPACE/NAME=IP"
    )
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    records = ClusterRecords(services=dict(args.record))
    asyncio.run(_serve(args.listen, records, args.domain))


if __name__ == "__main__":
    main()
