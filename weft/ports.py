"""Port lists as proxy-init takes them: ports, ranges and comma-separated lists (pure).

Shared by proxy-init's rules (``weft.local.proxy_init``, ``weft proxy-init``) and the injector's
port annotations (``weft.inject``), which must not depend on the local runtime.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PORT_SPEC = re.compile(r"^(\d{1,5})(?:[-:](\d{1,5}))?$")

PortSpec = int | str


def parse_port_spec(spec: PortSpec) -> str:
    """Normalise a port (``8080``) or range (``"8000-8010"``, ``"8000:8010"``) to iptables form."""
    match = _PORT_SPEC.match(str(spec).strip())
    if not match:
        raise ValueError(f"invalid port or port range {spec!r}")
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"invalid port or port range {spec!r}")
    return str(lo) if lo == hi else f"{lo}:{hi}"


def normalise_ports(specs: Iterable[PortSpec]) -> tuple[str, ...]:
    """Parse every spec (a string may hold a comma-separated list), dropping duplicates."""
    out: list[str] = []
    for spec in specs:
        parts = spec.split(",") if isinstance(spec, str) else [spec]
        for part in parts:
            if isinstance(part, str) and not part.strip():
                continue
            port = parse_port_spec(part)
            if port not in out:
                out.append(port)
    return tuple(out)
