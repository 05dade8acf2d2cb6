"""TLS for control-plane gRPC servers, with certificates that rotate under a running server."""

from __future__ import annotations

import grpc


class RotatingServerCredentials:
    """gRPC server credentials whose certificate can be replaced while the server runs.

    New connections pick up the latest certificate; established ones keep theirs.
    """

    def __init__(self, chain_pem: bytes, key_pem: bytes) -> None:
        self._config = grpc.ssl_server_certificate_configuration(((key_pem, chain_pem),))
        self._fresh = False

    def update(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Serve ``chain_pem`` (leaf first) with ``key_pem`` from the next handshake on."""
        self._config = grpc.ssl_server_certificate_configuration(((key_pem, chain_pem),))
        self._fresh = True

    def _fetch(self) -> object | None:
        # Called by gRPC before each handshake: None keeps the configuration it has.
        if not self._fresh:
            return None
        self._fresh = False
        config: object = self._config
        return config

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``server.add_secure_port`` (client certificates optional)."""
        return grpc.dynamic_ssl_server_credentials(
            self._config, self._fetch, require_client_authentication=False
        )
