"""nginx and haproxy configurations for the backend and the reference proxies.

The gRPC backend needs a binary body (the 5-byte frame header holds NUL bytes, which ``return``
cannot express) on a POST, which nginx's static handler refuses with 405, and rewriting that 405
with ``error_page`` proved flaky over HTTP/2 and dropped the trailers. So the backend answers the
POST with ``echo_location`` (the echo module Debian ships as libnginx-mod-http-echo), a GET
subrequest to the body file; ``add_trailer`` then sends ``grpc-status: 0`` as an HTTP/2 trailer.
"""

from __future__ import annotations

from pathlib import Path

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
H1_BODY = "hello from the weft benchmark"
KEEPALIVE_CONNECTIONS = 128


def _nginx_main(prefix: Path, http: str, modules: str = "") -> str:
    """An nginx configuration with one worker, everything kept under ``prefix``."""
    return f"""{modules}daemon off;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
{http}}}
"""


def backend_nginx(prefix: Path, h1_port: int, h2_port: int, grpc_body: Path) -> str:
    """The server: HTTP/1.1 ``return 200`` on ``h1_port``, a gRPC-like h2c reply on ``h2_port``."""
    http = f"""    server {{
        listen {h1_port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{H1_BODY}";
        }}
    }}
    server {{
        listen {h2_port} http2 backlog=4096;
        location = /grpc-body {{
            internal;
            alias {grpc_body};
        }}
        location / {{
            types {{ }}
            default_type application/grpc;
            add_trailer grpc-status 0 always;
            echo_location /grpc-body;
        }}
    }}
"""
    return _nginx_main(prefix, http, modules=f"load_module {ECHO_MODULE};\n")


def nginx_proxy(prefix: Path, listen: str, upstream: str) -> str:
    """An HTTP/1.1 reverse proxy from ``listen`` to ``upstream`` with keep-alive upstreams."""
    http = f"""    upstream peer {{
        server {upstream};
        keepalive {KEEPALIVE_CONNECTIONS};
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""
    return _nginx_main(prefix, http)


def haproxy_h2(listen: str, upstream: str) -> str:
    """An HTTP/2 (h2c on both sides) haproxy from ``listen`` to ``upstream``, one thread."""
    return f"""global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s

frontend in
    bind {listen} proto h2
    default_backend out

backend out
    server upstream {upstream} proto h2
"""
