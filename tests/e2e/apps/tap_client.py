"""Tap requests that must be refused, made the way an intruder would; prints one JSON line.

- ``--identity-dir DIR --as ID --to IP:PORT --server-name NAME``: signs a certificate for ``ID``
  with the cluster's issuer (``DIR`` is ``<state>/identity``) and calls the proxy's
  ``io.linkerd.proxy.tap.Tap/Observe`` at ``IP:PORT`` over mTLS, verifying it as ``NAME``.
  Prints ``{"code": <gRPC status name>, "details": ...}`` (run it in the node namespace).
- ``--api SOCK --pod POD --namespace NS``: takes a workload token of ``POD`` from the node agent
  and calls the tap controller's API with it through the agent's service proxy. Prints
  ``{"status": <HTTP status>, "error": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from weft.api import tap_pb2
from weft.identity import certs
from weft.identity.trust import TrustFiles, read_trust
from weft.local import control_plane
from weft.local.api_client import ApiClient, ApiError


def observe_as(identity_dir: Path, identity: str, target: str, server_name: str) -> dict[str, str]:
    """Call Observe presenting a certificate for ``identity``."""
    trust = read_trust(TrustFiles.in_dir(identity_dir))
    key = certs.new_key()
    csr = x509.load_der_x509_csr(certs.make_csr(key, identity))
    leaf = certs.issue_leaf(
        trust.issuer,
        csr,
        identity,
        lifetime=timedelta(hours=1),
        clock_skew=timedelta(seconds=20),
        now=datetime.now(UTC),
    )
    creds = grpc.ssl_channel_credentials(
        root_certificates=trust.anchors_pem(),
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain=certs.certs_to_pem([leaf, *trust.issuer.chain]),
    )
    options = [("grpc.ssl_target_name_override", server_name)]
    with grpc.secure_channel(target, creds, options=options) as channel:
        observe = channel.unary_stream(
            "/io.linkerd.proxy.tap.Tap/Observe",
            request_serializer=tap_pb2.ObserveRequest.SerializeToString,
            response_deserializer=tap_pb2.TapEvent.FromString,
        )
        try:
            for _ in observe(tap_pb2.ObserveRequest(limit=1), timeout=10):
                return {"code": "OK", "details": "an event arrived"}
        except grpc.RpcError as exc:
            return {"code": exc.code().name, "details": exc.details() or ""}
    return {"code": "OK", "details": "the stream ended"}


async def tap_with_pod_token(api: Path, pod: str, namespace: str) -> dict[str, object]:
    """Call the tap API with ``pod``'s workload token instead of an admin's."""
    async with ApiClient(api) as client:
        token = await client.post_json("/v1/tokens", {"namespace": namespace, "pod": pod})
        headers = {"Authorization": f"Bearer {token['token']}"}
        path = f"/apis/tap.linkerd.io/v1alpha1/watch/namespaces/{namespace}/tap"
        try:
            async for _ in client.proxy_lines(control_plane.TAP, path, {}, headers):
                return {"status": 200, "error": ""}
        except ApiError as exc:
            return {"status": exc.status, "error": str(exc)}
    return {"status": 200, "error": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--identity-dir", type=Path)
    parser.add_argument("--as", dest="identity")
    parser.add_argument("--to")
    parser.add_argument("--server-name")
    parser.add_argument("--api", type=Path)
    parser.add_argument("--pod")
    parser.add_argument("--namespace")
    args = parser.parse_args()
    if args.api:
        result: dict[str, object] = asyncio.run(
            tap_with_pod_token(args.api, args.pod, args.namespace)
        )
    else:
        result = dict(observe_as(args.identity_dir, args.identity, args.to, args.server_name))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
