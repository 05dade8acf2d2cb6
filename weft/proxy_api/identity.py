"""``io.linkerd.proxy.identity`` (field numbers: ``weft/api/identity.proto``): the ``Certify``
request and the certificates of its response."""

from __future__ import annotations

from dataclasses import dataclass

from weft.proxy_api.wire import Fields, encode_bytes, encode_string, raw, repeated


def certify_request(identity: str, token: bytes, csr: bytes) -> bytes:
    """An encoded ``CertifyRequest``."""
    return encode_string(1, identity) + encode_bytes(2, token) + encode_bytes(3, csr)


@dataclass(frozen=True, slots=True)
class CertifyResponse:
    """A ``CertifyResponse``'s certificates (DER); ``valid_until`` is read from the leaf."""

    leaf: bytes
    intermediates: list[bytes]


def decode_certify_response(data: bytes) -> CertifyResponse:
    """An encoded ``CertifyResponse``; :class:`~weft.proxy_api.wire.WireError` when it is not
    one."""
    fields = Fields(data)
    return CertifyResponse(raw(fields.get(1)), repeated(fields.get(2)))
