"""``python -m weft.identity.keygen NAME``: a new ECDSA P-256 key and a CSR naming ``NAME``.

A proxy runs this once, at start, instead of importing ``cryptography``: that library would stay
in the proxy's memory (about 8 MB resident) for work done once, in a few milliseconds. This is
what Linkerd 2.6 did too, with a separate program (``linkerd2-proxy-identity``) run before the
proxy. The key travels through a pipe to the parent, never through a file.

Output on stdout: the length of the key's PEM (4 bytes, big-endian), the key (PKCS#8 PEM), then
the CSR (DER), as :func:`split_output` reads it.
"""

from __future__ import annotations

import struct
import sys

_LENGTH = struct.Struct(">I")


def split_output(out: bytes) -> tuple[bytes, bytes]:
    """``(key_pem, csr_der)`` from the program's output; ValueError when it is not that."""
    if len(out) < _LENGTH.size:
        raise ValueError("no output")
    (size,) = _LENGTH.unpack_from(out)
    key_pem = out[_LENGTH.size : _LENGTH.size + size]
    csr_der = out[_LENGTH.size + size :]
    if len(key_pem) != size or b"PRIVATE KEY-----" not in key_pem or not csr_der:
        raise ValueError("output is not a key and a CSR")
    return key_pem, csr_der


def main(argv: list[str]) -> int:
    """Write a new key and a CSR for ``argv[1]`` to stdout."""
    if len(argv) != 2 or not argv[1]:
        print("usage: python -m weft.identity.keygen IDENTITY-NAME", file=sys.stderr)
        return 2
    from weft.identity import certs  # here: the parent imports this module for split_output

    key = certs.new_key()
    key_pem = certs.key_to_pem(key)
    sys.stdout.buffer.write(_LENGTH.pack(len(key_pem)) + key_pem + certs.make_csr(key, argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
