"""``weft cluster port-forward``: local ports relayed to a Service's or a pod's port.

The host has no route into the cluster, so forwarding takes two steps. The caller (in the host
network namespace) resolves the target and binds the local ports with :func:`bind`; then it
starts the relay of this module inside the node namespace with :func:`relay_argv`, handing it
the listening sockets as inherited file descriptors. A socket keeps the namespace it was created
in: the relay accepts host connections on them while its own connections to cluster IPs and pod
IPs are made in the node namespace, where the service rules balance them to pods.

The relay (``python -m weft.local.port_forward --listen-fd N --to IP:PORT ...``) copies bytes
both ways, passing half-closes on, and exits with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from weft.local.controllers.endpoints import resolve_target_port
from weft.local.kinds import kind_of
from weft.local.netns import NETNS_RUN_DIR

if TYPE_CHECKING:
    from weft.local.cluster_config import ClusterConfig

BACKLOG = 128
CHUNK = 64 * 1024
_NUMBER = re.compile(r"[0-9]{1,5}")
# An IANA service name, as Kubernetes' port names are.
_PORT_NAME = re.compile(r"(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")

Obj = dict[str, Any]


class PortForwardError(Exception):
    """A target, a port or a local address that cannot be forwarded; ``str()`` is one line."""


class PortInUseError(PortForwardError):
    """The local port is taken by another socket."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(f"{host_port(address, port)} is in use")
        self.address = address
        self.port = port


# -- what to forward (pure) ---------------------------------------------------------------


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(target: str) -> tuple[str, str]:
    """``svc/NAME``, ``service/NAME``, ``pod/NAME`` or a bare pod ``NAME`` -> (kind, name)."""
    resource, slash, name = target.rpartition("/")
    if not slash:
        resource = "pod"
    if not name:
        raise PortForwardError(f'invalid target "{target}": give svc/NAME or pod/NAME')
    try:
        kind = kind_of(resource)
    except KeyError:
        raise PortForwardError(
            f'unknown resource type "{resource}" in "{target}": give svc/NAME or pod/NAME'
        ) from None
    if kind not in ("Service", "Pod"):
        raise PortForwardError(f'cannot forward to "{target}": give svc/NAME or pod/NAME')
    return kind, name


def parse_port_spec(spec: str) -> tuple[int | None, str]:
    """``[LOCAL_PORT:]REMOTE_PORT`` -> (local port, remote port number or name).

    The local port is ``None`` when omitted (the same as the remote port) and 0 when empty
    (``:80``: any free port).
    """
    local_text, colon, remote = spec.rpartition(":")
    if ":" in local_text or not remote:
        raise PortForwardError(f'invalid port "{spec}": want [LOCAL_PORT:]REMOTE_PORT')
    local: int | None = None
    if local_text:
        if not _NUMBER.fullmatch(local_text) or int(local_text) > 65535:
            raise PortForwardError(
                f'invalid port "{spec}": local port "{local_text}" is not a number from 0 to 65535'
            )
        local = int(local_text)
    elif colon:
        local = 0
    if _NUMBER.fullmatch(remote):
        valid = 0 < int(remote) <= 65535
    else:
        valid = bool(_PORT_NAME.fullmatch(remote))
    if not valid:
        raise PortForwardError(
            f'invalid port "{spec}": remote port "{remote}" is neither a number from 1 to 65535 '
            "nor a port name"
        )
    return local, remote


def resolve_target(obj: Obj, kind: str, port: str) -> tuple[str, int]:
    """The address (IP, port) that remote ``port`` (number or name) of a Service or Pod means.

    A Service resolves to its cluster IP and one of its (TCP) service ports; a pod to its IP and
    the port number as given or the number of its container port of that name.
    """
    meta = obj["metadata"]
    where = f'{kind.lower()} "{meta["name"]}" in namespace "{meta.get("namespace", "default")}"'
    if kind == "Service":
        spec = obj["spec"]
        ports = [p for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
        for entry in ports:
            if _matches(port, entry["port"], entry.get("name")):
                if not spec.get("clusterIP"):
                    raise PortForwardError(f"{where} has no cluster IP")
                return str(spec["clusterIP"]), int(entry["port"])
        have = ", ".join(_describe_port(p["port"], p.get("name")) for p in ports) or "none"
        raise PortForwardError(f"{where} has no port {port} (its ports: {have})")
    if kind == "Pod":
        status = obj.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            raise PortForwardError(
                f"{where} is not running (phase {status.get('phase') or 'Pending'})"
            )
        number = int(port) if _NUMBER.fullmatch(port) else resolve_target_port(obj, port)
        if number is None:
            spec = obj["spec"]
            containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            declared = [
                _describe_port(p["containerPort"], p.get("name"))
                for c in containers
                for p in c.get("ports") or []
            ]
            have = ", ".join(declared) or "none"
            raise PortForwardError(
                f'{where} has no container port named "{port}" (its ports: {have})'
            )
        return str(status["podIP"]), number
    raise PortForwardError(f"cannot forward to a {kind}: give svc/NAME or pod/NAME")


def _matches(port: str, number: int, name: str | None) -> bool:
    """Whether remote ``port`` (a number or a name) means the port ``number`` called ``name``."""
    return int(port) == number if _NUMBER.fullmatch(port) else port == name


def _describe_port(number: int, name: str | None) -> str:
    return f"{number} ({name})" if name else str(number)


# -- starting the relay ---------------------------------------------------------------------


def bind(address: str, port: int) -> socket.socket:
    """A TCP socket listening on ``address:port`` (port 0: any free port).

    Raises :class:`PortInUseError` when the port is taken and :class:`PortForwardError` for
    any other reason the address cannot be listened on.
    """
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortForwardError(f"cannot listen on {address}: {exc.strerror}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(address, port) from exc
        raise PortForwardError(
            f"cannot listen on {host_port(address, port)}: {exc.strerror or exc}"
        ) from exc
    return sock


def relay_argv(cfg: ClusterConfig, pairs: Sequence[tuple[int, str, int]]) -> list[str]:
    """The command that relays each listening fd to its (IP, port) from the node namespace.

    ``pairs`` holds (listening fd, target IP, target port); the fds must be passed on to the
    command (``os.set_inheritable`` before ``exec``, or ``Popen(pass_fds=...)``).
    """
    argv = [
        "nsenter",
        f"--net={NETNS_RUN_DIR / cfg.node_netns}",
        "--",
        sys.executable,
        "-m",
        "weft.local.port_forward",
    ]
    for fd, ip, port in pairs:
        argv += ["--listen-fd", str(fd), "--to", host_port(ip, port)]
    return argv


# -- the relay --------------------------------------------------------------------------------


async def _copy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
) -> None:
    """Copy ``reader`` to ``writer`` until EOF, then half-close ``writer``.

    On an error either connection may be broken, so both (``writer`` and ``other``) are aborted,
    which ends the copy in the other direction too (it stops at once, even with data read).
    """
    try:
        while (data := await reader.read(CHUNK)) and not writer.transport.is_closing():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()
    except OSError:
        writer.transport.abort()
        other.transport.abort()


async def _handle(
    target: tuple[str, int], client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
) -> None:
    """Relay one accepted connection to ``target``; a failed connect just closes it."""
    host, port = target
    try:
        upstream_reader, upstream = await asyncio.open_connection(host, port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        print(
            f"port-forward: cannot reach {host_port(host, port)}: {reason}",
            file=sys.stderr,
            flush=True,
        )
        client.close()
        return
    try:
        await asyncio.gather(
            _copy(client_reader, upstream, client), _copy(upstream_reader, client, upstream)
        )
    finally:
        client.close()
        upstream.close()


async def serve(listeners: Sequence[tuple[socket.socket, tuple[str, int]]]) -> None:
    """Relay each listening socket's connections to its (IP, port) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Our own tasks (not start_server's): they are cancelled at the end, which Python 3.11's
    # stream callback would report as an error of a handler it ran.
    relays: set[asyncio.Task[None]] = set()

    def accepted(
        target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = loop.create_task(_handle(target, reader, writer))
        relays.add(task)
        task.add_done_callback(relays.discard)

    servers = [
        await asyncio.start_server(functools.partial(accepted, target), sock=sock, backlog=BACKLOG)
        for sock, target in listeners
    ]
    await stop.wait()
    for server in servers:
        server.close()
    for task in list(relays):
        task.cancel()
    await asyncio.gather(*relays, return_exceptions=True)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want IP:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the relay (``--listen-fd N --to IP:PORT``, repeated); 0 after SIGTERM/SIGINT."""
    # Until :func:`serve` handles it, an interrupt just ends the process (no traceback).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    parser = argparse.ArgumentParser(prog="python -m weft.local.port_forward", description=__doc__)
    parser.add_argument("--listen-fd", type=int, action="append", required=True)
    parser.add_argument("--to", type=_address, action="append", required=True)
    args = parser.parse_args(argv)
    if len(args.listen_fd) != len(args.to):
        parser.error("give one --to per --listen-fd")
    try:
        listeners = [
            (socket.socket(fileno=fd), target)
            for fd, target in zip(args.listen_fd, args.to, strict=True)
        ]
    except OSError as exc:
        parser.error(f"--listen-fd: {exc}")
    import uvloop

    uvloop.run(serve(listeners))
    return 0


if __name__ == "__main__":
    sys.exit(main())
