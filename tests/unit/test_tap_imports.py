"""An idle proxy pays nothing for tap, and none for grpcio, cryptography or protobuf: h2 and
protobuf are loaded only by a control connection; identity and discovery use neither."""

from __future__ import annotations

import subprocess
import sys


def test_the_proxy_and_its_tap_server_do_not_load_h2() -> None:
    script = (
        "import sys\n"
        "import weft.proxy.app, weft.proxy.server, weft.proxy.tap.server\n"
        "print(sorted(m for m in sys.modules if m == 'h2' or m.startswith('h2.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_hot_path_seam_loads_no_protobuf() -> None:
    script = (
        "import sys\n"
        "import weft.proxy.server, weft.proxy.tap.registry\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.protobuf', 'weft.api'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_identity_and_discovery_load_no_grpc_cryptography_or_protobuf() -> None:
    script = (
        "import sys\n"
        "import weft.proxy.app, weft.identity.client, weft.proxy.destination\n"
        "import weft.proxy.tap.server\n"
        "heavy = ('grpc', 'cryptography', 'google', 'h2', 'weft.api')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
