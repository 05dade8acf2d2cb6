"""How ``weft stat/routes/edges/tap/top`` reach the metrics API and the tap controller.

The host has no route into a cluster: requests go through the node agent's service proxy
(``/api/v1/namespaces/weft/services/<name>:<port>/proxy/...`` on ``<state>/api.sock``, the same
path kube-apiserver serves). Every failure becomes one line that says what to do: no cluster,
a component that is not ready (the agent's 503), or the component's own ``{"error": ...}``
(Prometheus down, not found, bad window), which is passed through as it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import aiohttp
import click

from weft.cli.viz_format import AnswerError, InputError
from weft.local.api_client import ApiClient, ApiError, ServiceRef
from weft.local.cluster_config import ClusterConfig, ClusterConfigError, state_dir_for
from weft.local.control_plane import NAMESPACE as CONTROL_NAMESPACE
from weft.platform import PlatformError
from weft.viz.resources import ResourceError

T = TypeVar("T")
JSON = dict[str, Any]

CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0  # a metrics query; Prometheus answers in well under a second normally


@dataclass(frozen=True)
class Component:
    """A control-plane component the CLI talks to, and how messages name it."""

    title: str
    service: ServiceRef


METRICS_API = Component("the metrics API", ServiceRef(CONTROL_NAMESPACE, "weft-metrics-api", 8085))
TAP = Component("the tap controller", ServiceRef(CONTROL_NAMESPACE, "weft-tap", 8088))


class VizError(Exception):
    """A failure to report; ``str()`` is one line."""


def explain(component: Component, error: ApiError) -> str:
    """One actionable line for an error answer that came through the agent's service proxy:
    the agent's own (no service, no ready endpoint, unreachable pod) or the component's."""
    service = component.service
    where = f"{service.namespace}/{service.name}"
    message = str(error)
    if error.status == 503 and message == f"service {where} has no ready endpoints":
        return f"{component.title} is not ready yet: see `weft check`"
    if error.status == 404 and message == (
        f'service "{service.name}" not found in namespace "{service.namespace}"'
    ):
        return (
            f"{component.title} is missing from this cluster (no service {where}): see `weft check`"
        )
    if error.status == 502 and message.startswith("cannot reach "):
        return f"{component.title} does not answer ({message}): see `weft check`"
    return message


def unwrap(method: str, answer: JSON) -> JSON:
    """The ``ok`` part of a metrics API answer; an ``error`` part becomes :class:`VizError`."""
    ok = answer.get("ok")
    if isinstance(ok, dict):
        return ok
    error = answer.get("error")
    if isinstance(error, dict):  # a ResourceError: {"resource": ..., "error": "..."}
        error = error.get("error")
    if error:
        raise VizError(str(error))
    raise VizError(f"{METRICS_API.title} answered {method} without a result")


class VizClient:
    """The metrics API and the tap controller, through one cluster's node agent."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def metrics(self, method: str, body: JSON) -> JSON:
        """POST ``body`` to the metrics API's ``/api/v1/<method>``; its answer's ``ok`` part."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                answer = await self.api.proxy_json(METRICS_API.service, f"api/v1/{method}", body)
        except ApiError as exc:
            raise VizError(explain(METRICS_API, exc)) from None
        except TimeoutError:
            raise VizError(
                f"{METRICS_API.title} did not answer {method} within {REQUEST_TIMEOUT:.0f}s"
            ) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise VizError(
                f"{METRICS_API.title} sent no usable answer to {method}: {exc}"
            ) from None
        if not isinstance(answer, dict):
            raise VizError(f"{METRICS_API.title} answered {method} with something not an object")
        return unwrap(method, answer)

    async def tap(self, path: str, body: JSON) -> AsyncIterator[JSON]:
        """POST a tap request to the tap controller's ``path`` as the cluster admin and yield
        its TapEvents (JSON objects) as they stream in."""
        token = await self.api.admin_token()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async for line in self.api.proxy_lines(TAP.service, path, body, headers):
                try:
                    event = json.loads(line)
                except ValueError:
                    raise VizError(
                        f"{TAP.title} sent a line that is not JSON: {line[:80]!r}"
                    ) from None
                if not isinstance(event, dict):
                    raise VizError(f"{TAP.title} sent a line that is not an object: {line[:80]!r}")
                if set(event) == {"error"}:
                    raise VizError(str(event["error"]))
                if set(event) == {"warning"}:  # one proxy could not be tapped; the rest go on
                    click.echo(f"{TAP.title}: {event['warning']}", err=True)
                    continue
                yield event
        except ApiError as exc:
            raise VizError(explain(TAP, exc)) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise VizError(f"the tap stream broke off: {exc or type(exc).__name__}") from None


def fail(command: str, message: str) -> NoReturn:
    """``weft <command>: <message>`` on stderr, exit status 1."""
    click.echo(f"weft {command}: {message}", err=True)
    sys.exit(1)


def _quiet_stdout() -> None:
    # The reader went away (``| head``): stop Python from reporting the pipe again at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run(
    command: str,
    cluster_name: str,
    state_dir: str | None,
    body: Callable[[VizClient], Awaitable[T]],
    interrupted_status: int = 130,
) -> T:
    """Run ``body`` with a client of the cluster; every failure ends the process with one line
    on stderr and status 1, Ctrl-C with ``interrupted_status``, a closed stdout with 0."""

    async def main(cfg: ClusterConfig) -> T:
        async with ApiClient(cfg.api_socket, timeout=CONNECT_TIMEOUT) as api:
            return await body(VizClient(api))

    try:
        return asyncio.run(main(ClusterConfig.load(state_dir_for(cluster_name, state_dir))))
    except (VizError, PlatformError, ClusterConfigError) as exc:
        fail(command, str(exc))
    except AnswerError as exc:
        fail(command, f"an answer weft does not understand: {exc}")
    except KeyboardInterrupt:
        sys.exit(interrupted_status)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)


def checked(command: str, build: Callable[[], T]) -> T:
    """``build()``, with bad input (:class:`InputError`, :class:`ResourceError`) reported as
    one line and exit status 1."""
    try:
        return build()
    except (InputError, ResourceError) as exc:
        fail(command, str(exc))


# ``-o table|wide|json``, as stat, routes and edges take it.
output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "json"]),
    default="table",
    show_default=True,
)
