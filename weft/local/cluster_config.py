"""A local cluster's settings and the names of everything it creates on the host.

Every network namespace a cluster creates is named ``<cluster>-…`` and every other object
(links, rules, processes) lives inside one of those namespaces, so a cluster can be removed
completely by name even when its state directory or its node agent is gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from weft.proxy.config import ConfigError, parse_duration

DEFAULT_NAME = "weft"
DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_DOMAIN = "cluster.local"
STATE_ROOT = Path(os.environ.get("WEFT_STATE_ROOT", "/var/lib/weft"))
BRIDGE = "weft0"
CONFIG_FILE = "cluster.json"

_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# A Prometheus duration, as its flags and prometheus.yml take them.
_PROM_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class ClusterConfigError(ValueError):
    """Settings that cannot describe a cluster."""


@dataclass(frozen=True)
class ClusterConfig:
    """What ``weft cluster up`` was given; stored in ``<state>/cluster.json``."""

    name: str = DEFAULT_NAME
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    cluster_domain: str = DEFAULT_DOMAIN
    state_dir: str = ""
    identity_issuance_lifetime: str = "24h"
    identity_issuer_lifetime: str = "8760h"
    prometheus_scrape_interval: str = "10s"
    prometheus_retention: str = "6h"
    prometheus_retention_size: str = "512MB"
    prometheus_memory_limit: str = "256MiB"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ClusterConfigError(
                f"invalid cluster name {self.name!r}: 1-12 lowercase letters and digits"
            )
        try:
            pods = ipaddress.IPv4Network(self.pod_cidr)
            services = ipaddress.IPv4Network(self.service_cidr)
        except ValueError as exc:
            raise ClusterConfigError(f"invalid CIDR: {exc}") from exc
        if pods.prefixlen > 28 or services.prefixlen > 28:
            raise ClusterConfigError("pod and service CIDRs need at least 16 addresses")
        if pods.overlaps(services):
            raise ClusterConfigError(f"pod CIDR {pods} overlaps service CIDR {services}")
        for flag, value in (
            ("--identity-issuance-lifetime", self.identity_issuance_lifetime),
            ("--identity-issuer-lifetime", self.identity_issuer_lifetime),
        ):
            try:
                parse_duration(flag, value)
            except ConfigError as exc:
                raise ClusterConfigError(str(exc)) from exc
        for flag, value in (
            ("--prometheus-scrape-interval", self.prometheus_scrape_interval),
            ("--prometheus-retention", self.prometheus_retention),
        ):
            if not _PROM_DURATION.match(value):
                raise ClusterConfigError(
                    f"{flag}: invalid duration {value!r} (expected e.g. 1s, 10s, 6h)"
                )
        if not self.state_dir:
            object.__setattr__(self, "state_dir", str(STATE_ROOT / self.name))

    # -- derived names ----------------------------------------------------------------------

    @property
    def state(self) -> Path:
        """The state directory."""
        return Path(self.state_dir)

    @property
    def node_netns(self) -> str:
        """The namespace holding the bridge, the service rules, DNS and the node agent."""
        return f"{self.name}-node"

    def pod_netns(self, pod_uid: str) -> str:
        """The namespace of the pod with ``pod_uid``."""
        return f"{self.name}-p-{pod_uid.replace('-', '')[:12]}"

    @staticmethod
    def node_ifname(pod_uid: str) -> str:
        """The node-side veth of the pod with ``pod_uid`` (unique within the node namespace)."""
        return "v" + pod_uid.replace("-", "")[:12]

    def owns_netns(self, netns: str) -> bool:
        """Whether ``netns`` is one of this cluster's namespaces."""
        return netns == self.node_netns or netns.startswith(f"{self.name}-p-")

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        """The bridge address: the pods' gateway and DNS server (first address of the CIDR)."""
        net = ipaddress.IPv4Network(self.pod_cidr)
        return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")

    @property
    def api_socket(self) -> Path:
        """The node agent's API (HTTP over a unix socket)."""
        return self.state / "api.sock"

    @property
    def agent_pid_file(self) -> Path:
        """The node agent's pid."""
        return self.state / "agent.pid"

    @property
    def agent_log(self) -> Path:
        """The node agent's own log."""
        return self.state / "agent.log"

    # -- persistence --------------------------------------------------------------------------

    def save(self) -> None:
        """Write ``cluster.json`` into the state directory."""
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ClusterConfig:
        """Read ``cluster.json`` from ``state_dir``."""
        try:
            data = json.loads((state_dir / CONFIG_FILE).read_text())
        except FileNotFoundError as exc:
            raise ClusterConfigError(f"no cluster at {state_dir} (run `weft cluster up`)") from exc
        except (OSError, ValueError) as exc:
            raise ClusterConfigError(f"unreadable {state_dir / CONFIG_FILE}: {exc}") from exc
        return cls(**{**data, "state_dir": str(state_dir)})


def state_dir_for(name: str, state_dir: str | None = None) -> Path:
    """The state directory of cluster ``name`` (``--state-dir`` wins)."""
    return Path(state_dir) if state_dir else STATE_ROOT / name
