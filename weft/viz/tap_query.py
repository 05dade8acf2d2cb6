"""A tap request to the tap controller (pure): which resource's proxies to tap, the filters of
Linkerd's ``tap`` (reference §8.2), and the path and JSON body the controller takes.

``POST /apis/tap.linkerd.io/v1alpha1/watch/namespaces/<ns>/tap`` taps a namespace,
``.../namespaces/<ns>/<plural>/<name>/tap`` one deployment, job or pod.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from weft.viz.resources import (
    DEPLOYMENT,
    JOB,
    NAMESPACE,
    POD,
    SERVICE,
    Resource,
    ResourceError,
    plural,
)

API_PREFIX = "apis/tap.linkerd.io/v1alpha1/watch/namespaces"
DEFAULT_MAX_RPS = 100.0
# What has proxies to tap, and what a request can be going to.
TAPPABLE = (NAMESPACE, DEPLOYMENT, JOB, POD)
DESTINATIONS = (*TAPPABLE, SERVICE)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP method (RFC 9110 token)


def _names(kinds: tuple[str, ...]) -> str:
    return ", ".join(plural(k) for k in kinds)


@dataclass(frozen=True)
class TapQuery:
    """What to tap and which requests to show; checked on construction (raises
    :class:`~weft.viz.resources.ResourceError`)."""

    target: Resource
    to: Resource | None = None
    method: str = ""
    path: str = ""
    authority: str = ""
    scheme: str = ""
    max_rps: float = DEFAULT_MAX_RPS
    extract: bool = False

    def __post_init__(self) -> None:
        if self.target.type not in TAPPABLE:
            raise ResourceError(f"cannot tap {plural(self.target.type)}: tap {_names(TAPPABLE)}")
        if not self.target.namespace:
            raise ResourceError(f"tap {self.target}: which namespace? (-n)")
        if self.target.type != NAMESPACE and not self.target.name:
            raise ResourceError(
                f"tap {self.target}: name one ({self.target.type}/NAME), or tap ns/NAMESPACE"
            )
        if self.to is not None:
            if self.to.type not in DESTINATIONS:
                raise ResourceError(f"--to takes one of {_names(DESTINATIONS)}")
            if not self.to.name:
                raise ResourceError(f"--to {self.to}: name one ({self.to.type}/NAME)")
        if self.method and not _TOKEN.match(self.method):
            raise ResourceError(f'--method "{self.method}" is not an HTTP method')
        if not (math.isfinite(self.max_rps) and self.max_rps > 0):
            raise ResourceError(f"--max-rps must be above zero, not {self.max_rps}")

    def url_path(self) -> str:
        """The controller's path for the target (no leading slash)."""
        namespace = quote(self.target.namespace, safe="")
        if self.target.type == NAMESPACE:
            return f"{API_PREFIX}/{namespace}/tap"
        name = quote(self.target.name, safe="")
        return f"{API_PREFIX}/{namespace}/{plural(self.target.type)}/{name}/tap"

    def body(self) -> dict[str, Any]:
        """The request body: the filters that are set, the rate limit and ``extract``."""
        body: dict[str, Any] = {"maxRps": self.max_rps, "extract": self.extract}
        if self.to is not None:
            body["toResource"] = self.to.to_json()
        for key in ("method", "path", "authority", "scheme"):
            if value := getattr(self, key):
                body[key] = value
        return body
