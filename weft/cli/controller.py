"""``weft controller``: run a control-plane component (identity, destination, metrics-api,
prometheus-targets, tap)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from weft.platform import Platform

if TYPE_CHECKING:
    from weft.identity.config import IdentityConfig

SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_common = [
    click.option(
        "--platform",
        "platform_spec",
        default="local:/var/lib/weft/weft/api.sock",
        show_default=True,
        help="Where the cluster lives: local:<node agent API socket>, kubernetes (in-cluster "
        "service account) or kubernetes:<kubeconfig path>.",
    ),
    click.option("--control-namespace", default="weft", show_default=True),
    click.option("--trust-domain", default="cluster.local", show_default=True),
    click.option("--admin-addr", default="0.0.0.0:9990", show_default=True),
    click.option("--log-level", default="info", show_default=True),
]


def common_options(f: Callable[..., None]) -> Callable[..., None]:
    """Options every component takes."""
    for option in reversed(_common):
        f = option(f)
    return f


def open_platform(spec: str) -> Platform:
    """The platform named by ``--platform``; exits with one line if it is unknown.

    The Kubernetes platform connects on first use, inside the component's event loop.
    """
    kind, _, arg = spec.partition(":")
    if kind == "local" and arg:
        from weft.local.platform import LocalPlatform

        return LocalPlatform(Path(arg))
    if kind == "kubernetes":
        from weft.k8s.platform import KubernetesPlatform

        return KubernetesPlatform(arg or None)
    raise click.BadParameter(
        f"{spec!r}: expected local:<path to the node agent's api.sock>, kubernetes or "
        "kubernetes:<kubeconfig path>",
        param_hint="--platform",
    )


def _duration(name: str, text: str) -> timedelta:
    from weft.proxy.config import ConfigError, parse_duration

    try:
        return timedelta(seconds=parse_duration(name, text))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


def _addr(name: str, text: str) -> tuple[str, int]:
    from weft.proxy.config import ConfigError, parse_addr

    try:
        return parse_addr(name, text)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


def _listen(name: str, text: str) -> socket.socket:
    """A listening socket on ``text`` (host:port), bound now; one line if it cannot be."""
    host, port = _addr(name, text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise click.ClickException(f"{name} {text}: {reason}") from None


def own_identity_options(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--identity-addr``, ``--trust-anchors-file`` and ``--token-file``: where a component
    that serves TLS gets its own certificate (``help_text`` says what for)."""

    def decorate(f: Callable[..., None]) -> Callable[..., None]:
        f = click.option("--token-file", default=SA_TOKEN, show_default=True)(f)
        f = click.option("--trust-anchors-file", type=click.Path(exists=True, dir_okay=False))(f)
        return click.option(
            "--identity-addr",
            default="weft-identity.weft.svc.cluster.local:8080",
            show_default=True,
            help=help_text,
        )(f)

    return decorate


def own_identity(
    service_account: str,
    control_namespace: str,
    trust_domain: str,
    identity_addr: str,
    trust_anchors_file: str,
    token_file: str,
) -> IdentityConfig:
    """A component's own identity: its service account's name, certified by the identity
    service at ``identity_addr``."""
    from weft.identity.config import IdentityConfig
    from weft.identity.names import identity_name

    def name(account: str) -> str:
        return identity_name(account, control_namespace, control_namespace, trust_domain)

    return IdentityConfig(
        local_name=name(service_account),
        trust_anchors_pem=Path(trust_anchors_file).read_bytes(),
        token_file=token_file,
        svc_addr=_addr("--identity-addr", identity_addr),
        svc_name=name("weft-identity"),
    )


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]], what: str) -> None:
    """Run ``main(stop)`` on uvloop until SIGTERM/SIGINT sets ``stop``; one line on failure."""
    import uvloop

    from weft.identity.certs import CertError
    from weft.identity.client import TrustAnchorsError
    from weft.platform import PlatformError

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        uvloop.run(wrapper())
    except (CertError, TrustAnchorsError, PlatformError, OSError, RuntimeError) as exc:
        click.echo(f"weft controller {what}: {exc}", err=True)
        sys.exit(1)


@click.group()
def controller() -> None:
    """Run a control-plane component (normally as a pod that `weft cluster` or `weft install`
    deploys)."""


@controller.command()
@common_options
@click.option("--addr", default="0.0.0.0:8080", show_default=True, help="gRPC listen address.")
@click.option(
    "--identity-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep generated trust material here (created if empty); the issuer renews itself.",
)
@click.option("--identity-trust-anchors-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--identity-issuer-certificate-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--identity-issuer-key-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--issuance-lifetime", default="24h", show_default=True)
@click.option("--clock-skew-allowance", default="20s", show_default=True)
@click.option("--issuer-lifetime", default="8760h", show_default=True, help="Generated issuers.")
@click.option("--service-account", default="weft-identity", show_default=True)
def identity(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    addr: str,
    identity_dir: Path | None,
    identity_trust_anchors_file: str | None,
    identity_issuer_certificate_file: str | None,
    identity_issuer_key_file: str | None,
    issuance_lifetime: str,
    clock_skew_allowance: str,
    issuer_lifetime: str,
    service_account: str,
) -> None:
    """The identity service: signs proxy certificates (Identity/Certify)."""
    from weft.controller.identity.authority import Authority, AuthorityConfig
    from weft.identity.trust import TrustFiles

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = AuthorityConfig(
        control_namespace=control_namespace,
        trust_domain=trust_domain,
        leaf_lifetime=_duration("--issuance-lifetime", issuance_lifetime),
        clock_skew=_duration("--clock-skew-allowance", clock_skew_allowance),
        issuer_lifetime=_duration("--issuer-lifetime", issuer_lifetime),
    )
    files = (
        identity_trust_anchors_file,
        identity_issuer_certificate_file,
        identity_issuer_key_file,
    )
    if any(files) and not all(files):
        raise click.UsageError(
            "give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file "
            "and --identity-issuer-key-file, or none"
        )
    if all(files) == (identity_dir is not None):
        raise click.UsageError("give either --identity-dir or the three --identity-*-file options")
    listen = _addr("--addr", addr)
    admin = _addr("--admin-addr", admin_addr)
    platform = open_platform(platform_spec)

    def authority() -> Authority:
        if identity_dir is not None:
            return Authority.in_directory(identity_dir, config, datetime.now(UTC))
        anchors, cert, key = (Path(f) for f in files if f)
        return Authority.from_files(TrustFiles(anchors, cert, key, None), config)

    async def main(stop: asyncio.Event) -> None:
        from weft.controller.identity.server import serve_identity

        await serve_identity(authority(), platform, listen, admin, service_account, stop)

    run_until_signalled(main, "identity")


@controller.command()
@common_options
@click.option("--addr", default="0.0.0.0:8086", show_default=True, help="gRPC listen address.")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--service-account", default="weft-destination", show_default=True)
@own_identity_options("Where to get this component's own certificate.")
@click.option("--disable-identity", is_flag=True, help="Serve plaintext gRPC (for tests).")
def destination(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    addr: str,
    cluster_domain: str,
    service_account: str,
    identity_addr: str,
    trust_anchors_file: str | None,
    token_file: str,
    disable_identity: bool,
) -> None:
    """The destination service: endpoints and identities for proxies (Destination/Get)."""
    from weft.controller.destination.addresses import MeshSettings

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings(control_namespace, trust_domain, cluster_domain)
    listen = _addr("--addr", addr)
    admin = _addr("--admin-addr", admin_addr)
    own: IdentityConfig | None = None
    if not disable_identity:
        if trust_anchors_file is None:
            raise click.UsageError("--trust-anchors-file is required unless --disable-identity")
        own = own_identity(
            service_account, control_namespace, trust_domain, identity_addr,
            trust_anchors_file, token_file,
        )  # fmt: skip
    platform = open_platform(platform_spec)

    async def main(stop: asyncio.Event) -> None:
        from weft.controller.destination.server import serve_destination

        await serve_destination(platform, settings, listen, admin, own, stop)

    run_until_signalled(main, "destination")


@controller.command("prometheus-targets")
@common_options
@click.option(
    "--addr",
    default="127.0.0.1:9088",
    show_default=True,
    help="Where Prometheus fetches its targets (GET /targets?job=<job>).",
)
def prometheus_targets(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    addr: str,
) -> None:
    """Prometheus's scrape targets (HTTP service discovery): meshed pods' proxies and the
    control plane's admin ports, followed through the platform."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    listen = _listen("--addr", addr)
    admin = _listen("--admin-addr", admin_addr)
    platform = open_platform(platform_spec)

    async def main(stop: asyncio.Event) -> None:
        from weft.controller.prometheus.server import serve_targets

        await serve_targets(platform, control_namespace, listen, admin, stop)

    run_until_signalled(main, "prometheus-targets")


@controller.command("metrics-api")
@common_options
@click.option("--addr", default="0.0.0.0:8085", show_default=True, help="HTTP listen address.")
@click.option(
    "--prometheus-url",
    default="http://weft-prometheus.weft.svc.cluster.local:9090",
    show_default=True,
)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
def metrics_api(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    addr: str,
    prometheus_url: str,
    cluster_domain: str,
) -> None:
    """The metrics API: golden metrics, routes and edges from Prometheus (StatSummary,
    TopRoutes, Edges, ListPods, ListServices, SelfCheck)."""
    from weft.controller.destination.addresses import MeshSettings

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if not prometheus_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{prometheus_url!r}: expected http://host:port", param_hint="--prometheus-url"
        )
    settings = MeshSettings(control_namespace, trust_domain, cluster_domain)
    listen = _listen("--addr", addr)
    admin = _listen("--admin-addr", admin_addr)
    platform = open_platform(platform_spec)

    async def main(stop: asyncio.Event) -> None:
        from weft.controller.metrics_api.api import MetricsApi
        from weft.controller.metrics_api.prometheus import PrometheusClient
        from weft.controller.metrics_api.server import serve_metrics_api

        api = MetricsApi(platform, PrometheusClient(prometheus_url), settings)
        await serve_metrics_api(api, listen, admin, stop)

    run_until_signalled(main, "metrics-api")


@controller.command()
@common_options
@click.option("--addr", default="0.0.0.0:8088", show_default=True, help="Tap API listen address.")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--service-account", default="weft-tap", show_default=True)
@own_identity_options(
    "Where to get this component's own certificate (proxies answer only its identity)."
)
@click.option(
    "--authorized-users",
    default="weft:admin,system:serviceaccount:weft:weft-web",
    show_default=True,
    help="Comma-separated users (as the platform's token review names them) allowed to tap.",
)
def tap(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    addr: str,
    cluster_domain: str,
    service_account: str,
    identity_addr: str,
    trust_anchors_file: str | None,
    token_file: str,
    authorized_users: str,
) -> None:
    """The tap controller: streams live requests from the proxies of a resource (tap API)."""
    from weft.controller.destination.addresses import MeshSettings
    from weft.controller.tap.authz import parse_users

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if trust_anchors_file is None:
        raise click.UsageError("--trust-anchors-file is required: proxies answer tap over mTLS")
    settings = MeshSettings(control_namespace, trust_domain, cluster_domain)
    listen = _listen("--addr", addr)
    admin = _listen("--admin-addr", admin_addr)
    own = own_identity(
        service_account, control_namespace, trust_domain, identity_addr,
        trust_anchors_file, token_file,
    )  # fmt: skip
    users = parse_users(authorized_users)
    platform = open_platform(platform_spec)

    async def main(stop: asyncio.Event) -> None:
        from weft.controller.tap.server import serve_tap

        await serve_tap(platform, settings, listen, admin, own, users, stop)

    run_until_signalled(main, "tap")


def kubernetes_only(spec: str, what: str) -> str | None:
    """The kubeconfig of a ``kubernetes[:<kubeconfig>]`` platform (None: in-cluster); any other
    platform is a usage error, since ``what`` runs on Kubernetes only."""
    kind, _, arg = spec.partition(":")
    if kind != "kubernetes":
        raise click.BadParameter(
            f"{spec!r}: {what} runs on Kubernetes only (kubernetes or kubernetes:<kubeconfig>)",
            param_hint="--platform",
        )
    return arg or None


_tls_options = [
    click.option(
        "--tls-cert-file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The webhook's serving certificate (PEM).",
    ),
    click.option(
        "--tls-key-file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Its private key (PEM).",
    ),
]


def tls_options(f: Callable[..., None]) -> Callable[..., None]:
    """The webhooks' serving certificate options."""
    for option in reversed(_tls_options):
        f = option(f)
    return f


@controller.command("proxy-injector")
@common_options
@tls_options
@click.option("--addr", default="0.0.0.0:8443", show_default=True, help="HTTPS listen address.")
@click.option(
    "--config-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The install values (the weft-config ConfigMap's `values`).",
)
@click.option(
    "--trust-anchors-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def proxy_injector(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    tls_cert_file: Path,
    tls_key_file: Path,
    addr: str,
    config_file: Path,
    trust_anchors_file: Path,
) -> None:
    """The proxy injector: a mutating admission webhook adding the proxy to new pods."""
    from weft.k8s.install.inject_config import inject_config
    from weft.k8s.install.values import InstallValues, ValuesError

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    kubeconfig = kubernetes_only(platform_spec, "the proxy injector")
    try:
        values = InstallValues.from_json(config_file.read_text()).check()
    except ValuesError as exc:
        raise click.BadParameter(str(exc), param_hint="--config-file") from None
    config = inject_config(values, trust_anchors_file.read_text())
    listen = _addr("--addr", addr)
    admin = _addr("--admin-addr", admin_addr)

    async def main(stop: asyncio.Event) -> None:
        from weft.k8s.client import KubeClient, KubeError
        from weft.k8s.kinds import api_kind
        from weft.k8s.webhooks.admission import Review, Verdict
        from weft.k8s.webhooks.injector import mutate
        from weft.k8s.webhooks.server import Webhook, serve_webhook, tls_context

        client = await KubeClient.connect(kubeconfig)

        async def decide(review: Review) -> Verdict:
            annotations: dict[str, str] = {}
            if review.namespace:
                try:
                    found = await client.get(api_kind("Namespace").path(name=review.namespace))
                    annotations = (found.get("metadata") or {}).get("annotations") or {}
                except KubeError as exc:
                    logging.getLogger("weft.k8s.webhooks").warning(
                        "namespace %s: %s", review.namespace, exc
                    )
            return mutate(review, annotations, config)

        try:
            tls = tls_context(tls_cert_file, tls_key_file)
            await serve_webhook(Webhook("proxy-injector", decide), listen, admin, tls, stop)
        finally:
            await client.close()

    run_until_signalled(main, "proxy-injector")


@controller.command("sp-validator")
@common_options
@tls_options
@click.option("--addr", default="0.0.0.0:8443", show_default=True, help="HTTPS listen address.")
def sp_validator(
    platform_spec: str,
    control_namespace: str,
    trust_domain: str,
    admin_addr: str,
    log_level: str,
    tls_cert_file: Path,
    tls_key_file: Path,
    addr: str,
) -> None:
    """The ServiceProfile validator: a validating admission webhook (Linkerd's rules)."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    listen = _addr("--addr", addr)
    admin = _addr("--admin-addr", admin_addr)

    async def main(stop: asyncio.Event) -> None:
        from weft.k8s.webhooks.admission import Review, Verdict
        from weft.k8s.webhooks.server import Webhook, serve_webhook, tls_context
        from weft.k8s.webhooks.validator import validate

        async def decide(review: Review) -> Verdict:
            return validate(review)

        tls = tls_context(tls_cert_file, tls_key_file)
        await serve_webhook(Webhook("sp-validator", decide), listen, admin, tls, stop)

    run_until_signalled(main, "sp-validator")


@controller.command()
@click.option("--addr", default="0.0.0.0:8084", show_default=True, help="Dashboard listen address.")
@click.option("--admin-addr", default="0.0.0.0:9994", show_default=True)
@click.option(
    "--metrics-api-url",
    default="http://weft-metrics-api.weft.svc.cluster.local:8085",
    show_default=True,
)
@click.option(
    "--prometheus-url",
    default="http://weft-prometheus.weft.svc.cluster.local:9090",
    show_default=True,
    help="For the charts' time series (query_range).",
)
@click.option("--tap-url", default="http://weft-tap.weft.svc.cluster.local:8088", show_default=True)
@click.option(
    "--token-file",
    default=SA_TOKEN,
    show_default=True,
    help="This pod's service-account token, which the tap controller authorizes.",
)
@click.option("--control-namespace", default="weft", show_default=True)
@click.option("--log-level", default="info", show_default=True)
def web(
    addr: str,
    admin_addr: str,
    metrics_api_url: str,
    prometheus_url: str,
    tap_url: str,
    token_file: str,
    control_namespace: str,
    log_level: str,
) -> None:
    """The dashboard: web pages and their JSON/WebSocket API (backed by the metrics API,
    Prometheus and the tap controller)."""
    from weft.web.backends import BackendUrls
    from weft.web.server import WebConfig

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = WebConfig(
        BackendUrls(metrics_api_url, prometheus_url, tap_url, Path(token_file)),
        control_namespace,
    )
    listen = _addr("--addr", addr)
    admin = _addr("--admin-addr", admin_addr)

    async def main(stop: asyncio.Event) -> None:
        from weft.web.server import serve_web

        await serve_web(config, listen, admin, stop)

    run_until_signalled(main, "web")
