"""``weft proxy``: run the sidecar proxy."""

from __future__ import annotations

import os
import sys

import click


@click.command()
def proxy() -> None:
    """Run the data-plane proxy (configured by LINKERD2_PROXY_* variables).

    \b
    Common variables (Linkerd's names and defaults):
      LINKERD2_PROXY_IDENTITY_DISABLED=1        plaintext, no identity
      LINKERD2_PROXY_INBOUND_LISTEN_ADDR        0.0.0.0:4143
      LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR       127.0.0.1:4140
      LINKERD2_PROXY_ADMIN_LISTEN_ADDR          0.0.0.0:4191
      LINKERD2_PROXY_CONTROL_LISTEN_ADDR        0.0.0.0:4190 (tap, with identity)
      LINKERD2_PROXY_TAP_SVC_NAME               the only identity allowed to tap
      LINKERD2_PROXY_TAP_DISABLED=1             no tap server
      LINKERD2_PROXY_{INBOUND,OUTBOUND}_PORTS_DISABLE_PROTOCOL_DETECTION
      LINKERD2_PROXY_LOG                        warn,linkerd=info
    """
    import uvloop

    from weft.proxy.app import run
    from weft.proxy.config import ConfigError

    try:
        status = uvloop.run(run(dict(os.environ)))
    except ConfigError as exc:
        click.echo(f"weft proxy: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"weft proxy: cannot start: {exc}", err=True)
        sys.exit(1)
    sys.exit(status)
