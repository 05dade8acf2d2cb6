"""The proxy-init rule renderer (pure; no namespaces needed)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from weft.local import proxy_init
from weft.local.proxy_init import ProxyInitConfig, render, render_removal
from weft.ports import normalise_ports

if TYPE_CHECKING:
    from tests.conftest import GoldenChecker

TS = 1700000000


def test_default_gid_rules_match_golden(golden: GoldenChecker) -> None:
    golden.check("proxy_init_default.rules", render(ProxyInitConfig(proxy_gid=2102), TS))


def test_full_config_matches_golden(golden: GoldenChecker) -> None:
    config = ProxyInitConfig(
        incoming_proxy_port=14143,
        outgoing_proxy_port=14140,
        proxy_uid=2102,
        proxy_gid=2103,
        ports_to_redirect=[80, "8080", "9000-9010"],
        inbound_ports_to_ignore=["25,587", "4191", 6379],
        outbound_ports_to_ignore=[443, "10000:10005"],
    )
    golden.check("proxy_init_full.rules", render(config, TS))


def test_every_rule_has_a_timestamped_comment() -> None:
    rules = render(ProxyInitConfig(proxy_uid=5, outbound_ports_to_ignore=[443]), 1234)
    lines = [line for line in rules.splitlines() if line.startswith("-A ")]
    assert lines
    for line in lines:
        assert re.search(r" -m comment --comment proxy-init/[a-z0-9,:-]+/1234 ", line), line


def test_structure_follows_proxy_init() -> None:
    lines = render(ProxyInitConfig(proxy_uid=2102, proxy_gid=2102), TS).splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    redirect = [line for line in lines if line.startswith("-A PROXY_INIT_REDIRECT")]
    output = [line for line in lines if line.startswith("-A PROXY_INIT_OUTPUT")]
    # Inbound: ignore admin/control first, then redirect everything to 4143.
    assert "--dports 4190,4191" in redirect[0] and redirect[0].endswith("-j RETURN")
    assert redirect[-1].endswith("-j REDIRECT --to-ports 4143")
    # Outbound order: proxy's own lo traffic to non-loopback, owner exemptions, lo, redirect.
    assert output[0].startswith("-A PROXY_INIT_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner")
    assert output[1].startswith("-A PROXY_INIT_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner")
    assert output[0].endswith("-j PROXY_INIT_REDIRECT")
    assert "--uid-owner 2102" in output[2] and output[2].endswith("-j RETURN")
    assert "--gid-owner 2102" in output[3] and output[3].endswith("-j RETURN")
    assert output[4].startswith("-A PROXY_INIT_OUTPUT -o lo ") and output[4].endswith("RETURN")
    assert output[-1].endswith("-j REDIRECT --to-ports 4140")
    jumps = [line for line in lines if line.startswith(("-A PREROUTING", "-A OUTPUT"))]
    assert [j.split()[1] for j in jumps] == ["PREROUTING", "OUTPUT"]
    assert jumps[0].endswith("-j PROXY_INIT_REDIRECT")
    assert jumps[1].endswith("-j PROXY_INIT_OUTPUT")


def test_listed_ports_replace_redirect_all() -> None:
    rules = render(ProxyInitConfig(proxy_gid=1, ports_to_redirect=["8080", "9000-9001"]), TS)
    assert "redirect-all-incoming" not in rules
    assert "-p tcp -m multiport --dports 8080,9000:9001 " in rules
    assert "-j REDIRECT --to-ports 4143" in rules
    # Outbound always redirects every port.
    assert "redirect-all-outgoing-to-proxy-port" in rules


def test_single_port_uses_plain_dport() -> None:
    rules = render(ProxyInitConfig(proxy_gid=1, outbound_ports_to_ignore=[443]), TS)
    assert "-A PROXY_INIT_OUTPUT -p tcp --dport 443 -m comment" in rules


def test_many_ports_are_split_into_multiport_groups() -> None:
    ports = [str(p) for p in range(20000, 20020)] + ["30000-30010"]
    rules = render(ProxyInitConfig(proxy_gid=1, outbound_ports_to_ignore=ports), TS)
    groups = re.findall(r"-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports (\S+)", rules)
    slots = [sum(2 if ":" in p else 1 for p in g.split(",")) for g in groups]
    assert all(s <= 15 for s in slots)
    flattened = [p for g in groups for p in g.split(",")]
    assert flattened == [*ports[:-1], "30000:30010"]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([80, "80", "8080"], ("80", "8080")),
        (["25,587, 3306"], ("25", "587", "3306")),
        (["1000-1002", "1000:1002"], ("1000:1002",)),
        (["7-7"], ("7",)),
        ([], ()),
    ],
)
def test_normalise_ports(specs: list[int | str], expected: tuple[str, ...]) -> None:
    assert normalise_ports(specs) == expected


@pytest.mark.parametrize("bad", ["0", "65536", "10-5", "http", "1-2-3", "-1"])
def test_bad_ports_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        ProxyInitConfig(proxy_gid=1, inbound_ports_to_ignore=[bad])


def test_proxy_identity_is_required() -> None:
    with pytest.raises(ValueError, match="proxy_uid or proxy_gid"):
        ProxyInitConfig()


def test_bad_proxy_port_is_rejected() -> None:
    with pytest.raises(ValueError):
        ProxyInitConfig(proxy_gid=1, incoming_proxy_port=0)


def test_admin_ports_always_ignored_once() -> None:
    config = ProxyInitConfig(proxy_gid=1, inbound_ports_to_ignore=["4191", "4190"])
    assert config.ignored_inbound() == ("4190", "4191")


SAVED = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PROXY_INIT_OUTPUT - [0:0]
:PROXY_INIT_REDIRECT - [0:0]
:OTHER - [0:0]
-A PREROUTING -m comment --comment "proxy-init/install-prerouting/1" -j PROXY_INIT_REDIRECT
-A PREROUTING -j OTHER
-A OUTPUT -m comment --comment "proxy-init/install-proxy-init-output/1" -j PROXY_INIT_OUTPUT
-A PROXY_INIT_OUTPUT -o lo -j RETURN
-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports 4143
-A OTHER -p tcp --dport 9 -j PROXY_INIT_REDIRECT
COMMIT
"""


def test_removal_deletes_only_our_chains_and_jumps() -> None:
    assert render_removal(SAVED) == (
        "*nat\n"
        '-D PREROUTING -m comment --comment "proxy-init/install-prerouting/1"'
        " -j PROXY_INIT_REDIRECT\n"
        '-D OUTPUT -m comment --comment "proxy-init/install-proxy-init-output/1"'
        " -j PROXY_INIT_OUTPUT\n"
        "-D OTHER -p tcp --dport 9 -j PROXY_INIT_REDIRECT\n"
        "-F PROXY_INIT_REDIRECT\n"
        "-F PROXY_INIT_OUTPUT\n"
        "-X PROXY_INIT_REDIRECT\n"
        "-X PROXY_INIT_OUTPUT\n"
        "COMMIT\n"
    )


def test_removal_of_nothing_is_empty() -> None:
    assert render_removal("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ""


def test_constants_match_linkerd() -> None:
    assert proxy_init.CHAINS == ("PROXY_INIT_REDIRECT", "PROXY_INIT_OUTPUT")
    assert proxy_init.ALWAYS_IGNORED_INBOUND == ("4190", "4191")
