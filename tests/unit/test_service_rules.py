"""The service rule renderer (pure; no namespaces needed)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from weft.local.service_rules import (
    JUMPS,
    ServiceEndpoint,
    ServicePortRule,
    chain_hash,
    probability,
    render,
    render_jumps,
    render_removal,
    weft_chains,
)

if TYPE_CHECKING:
    from tests.conftest import GoldenChecker


def eps(*addrs: str) -> tuple[ServiceEndpoint, ...]:
    """Endpoints from ``ip:port`` strings."""
    return tuple(ServiceEndpoint(a.split(":")[0], int(a.split(":")[1])) for a in addrs)


WEB = ServicePortRule(
    "default", "web", "http", "TCP", "10.96.0.20", 80,
    eps("10.244.1.3:8080", "10.244.1.2:8080", "10.244.1.4:8080"),
)  # fmt: skip
DNS_UDP = ServicePortRule(
    "kube-system", "kube-dns", "dns", "UDP", "10.96.0.10", 53, eps("10.244.0.1:53")
)
DNS_TCP = ServicePortRule(
    "kube-system", "kube-dns", "dns-tcp", "TCP", "10.96.0.10", 53, eps("10.244.0.1:53")
)
EMPTY = ServicePortRule("default", "empty", "", "TCP", "10.96.0.30", 8080)
RULES = [WEB, DNS_UDP, DNS_TCP, EMPTY]


def a_lines(rules: str, chain: str) -> list[str]:
    """The ``-A`` lines of ``chain`` (in every table)."""
    return [line for line in rules.splitlines() if line.startswith(f"-A {chain} ")]


def section(rules: str, table: str) -> list[str]:
    """The lines of one table's section, without the ``*table`` and ``COMMIT`` lines."""
    lines = rules.splitlines()
    start = lines.index(f"*{table}") + 1
    return lines[start : lines.index("COMMIT", start)]


def test_rules_match_golden(golden: GoldenChecker) -> None:
    golden.check("service_rules/services.rules", render(RULES))


def test_stale_chains_match_golden(golden: GoldenChecker) -> None:
    before = render(RULES)
    existing = re.findall(r"^:(\S+) ", before, re.MULTILINE)
    golden.check("service_rules/stale.rules", render([DNS_UDP], existing_chains=existing))


def test_output_does_not_depend_on_input_order() -> None:
    shuffled = [EMPTY, DNS_TCP, WEB, DNS_UDP]
    assert render(RULES) == render(shuffled)
    reordered = replace(WEB, endpoints=WEB.endpoints[::-1])
    assert render([reordered]) == render([WEB])


def test_structure_follows_kube_proxy() -> None:
    rules = render([WEB])
    svc = WEB.svc_chain()
    assert a_lines(rules, "WEFT-SERVICES") == [
        "-A WEFT-SERVICES -d 10.96.0.20/32 -p tcp -m tcp --dport 80"
        f' -m comment --comment "default/web:http cluster IP" -j {svc}'
    ]
    seps = [line.rsplit(" -j ", 1)[1] for line in a_lines(rules, svc)]
    in_order = eps("10.244.1.2:8080", "10.244.1.3:8080", "10.244.1.4:8080")
    assert seps == [WEB.sep_chain(e) for e in in_order]
    for sep, endpoint in zip(seps, in_order, strict=True):
        masq, dnat = a_lines(rules, sep)
        assert masq.startswith(f"-A {sep} -s {endpoint.ip}/32 ")
        assert masq.endswith(" -j WEFT-MARK-MASQ")
        assert dnat.startswith(f"-A {sep} -p tcp -m tcp ")
        assert dnat.endswith(f" -j DNAT --to-destination {endpoint.ip}:8080")
    assert a_lines(rules, "WEFT-MARK-MASQ") == [
        "-A WEFT-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"
    ]
    assert a_lines(rules, "WEFT-POSTROUTING") == [
        "-A WEFT-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A WEFT-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        "-A WEFT-POSTROUTING -j MASQUERADE",
    ]


def test_every_chain_is_declared_so_a_reapply_replaces_it() -> None:
    rules = render(RULES)
    for table in ("nat", "filter"):
        lines = section(rules, table)
        declared = {line[1:].split()[0] for line in lines if line.startswith(":")}
        used = {line.split()[1] for line in lines if line.startswith("-A ")}
        assert used <= declared
        assert all(chain.startswith("WEFT-") for chain in declared)
    assert "-I " not in rules and "-A PREROUTING" not in rules


def test_udp_rules_use_udp_matches() -> None:
    rules = render([DNS_UDP])
    assert "-p udp -m udp --dport 53" in a_lines(rules, "WEFT-SERVICES")[0]
    dnat = a_lines(rules, DNS_UDP.sep_chain(DNS_UDP.endpoints[0]))[1]
    assert " -p udp -m udp " in dnat and dnat.endswith(" -j DNAT --to-destination 10.244.0.1:53")


def test_service_without_endpoints_is_rejected_in_filter_only() -> None:
    rules = render([EMPTY, WEB])
    assert section(rules, "filter") == [
        ":WEFT-SERVICES - [0:0]",
        "-A WEFT-SERVICES -d 10.96.0.30/32 -p tcp -m tcp --dport 8080"
        ' -m comment --comment "default/empty has no endpoints"'
        " -j REJECT --reject-with icmp-port-unreachable",
    ]
    assert "10.96.0.30" not in "\n".join(section(rules, "nat"))
    assert EMPTY.svc_chain() not in rules


def test_no_services_still_replaces_everything() -> None:
    assert render([]) == (
        "*nat\n"
        ":WEFT-SERVICES - [0:0]\n"
        ":WEFT-POSTROUTING - [0:0]\n"
        ":WEFT-MARK-MASQ - [0:0]\n"
        "-A WEFT-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
        "-A WEFT-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n"
        "-A WEFT-POSTROUTING -j MASQUERADE\n"
        "-A WEFT-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
        "COMMIT\n"
        "*filter\n"
        ":WEFT-SERVICES - [0:0]\n"
        "COMMIT\n"
    )


def test_stale_chains_are_flushed_and_deleted_after_the_new_rules() -> None:
    old_svc, old_sep = WEB.svc_chain(), WEB.sep_chain(WEB.endpoints[0])
    existing = [old_svc, old_sep, DNS_UDP.svc_chain(), "WEFT-SERVICES", "WEFT-OTHER", "KUBE-SVC-X"]
    lines = section(render([DNS_UDP], existing_chains=existing), "nat")
    stale = sorted([old_svc, old_sep])
    assert [line for line in lines if line.startswith("-X ")] == [f"-X {c}" for c in stale]
    for chain in stale:
        assert f":{chain} - [0:0]" in lines  # declaring flushes it under --noflush
    last_append = max(i for i, line in enumerate(lines) if line.startswith("-A "))
    first_delete = min(i for i, line in enumerate(lines) if line.startswith("-X "))
    assert last_append < first_delete
    assert f":{DNS_UDP.svc_chain()} - [0:0]" in lines


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(1, "1.00000000000"), (2, "0.50000000000"), (3, "0.33333333349"), (4, "0.25000000000"),
     (5, "0.20000000019"), (7, "0.14285714272")],
)  # fmt: skip
def test_probability_is_printed_like_iptables_save(remaining: int, expected: str) -> None:
    assert probability(remaining) == expected


def test_probabilities_spread_evenly_and_the_last_endpoint_is_unconditional() -> None:
    four = ServicePortRule(
        "ns", "four", "p", "TCP", "10.96.1.1", 80,
        eps("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"),
    )  # fmt: skip
    jumps = a_lines(render([four]), four.svc_chain())
    found = [re.search(r"--probability (\S+)", line) for line in jumps]
    assert [m.group(1) if m else None for m in found] == [
        "0.25000000000",
        "0.33333333349",
        "0.50000000000",
        None,
    ]
    assert "statistic" not in jumps[-1]
    single = a_lines(render([DNS_TCP]), DNS_TCP.svc_chain())
    assert len(single) == 1 and "statistic" not in single[0]


def test_probability_needs_an_endpoint() -> None:
    with pytest.raises(ValueError):
        probability(0)


def test_chain_names_are_short_stable_and_distinct() -> None:
    assert chain_hash("default/web:http:TCP") == chain_hash("default/web:http:TCP")
    assert re.fullmatch(r"[A-Z2-7]{16}", chain_hash("x"))
    names = {DNS_UDP.svc_chain(), DNS_TCP.svc_chain(), WEB.svc_chain(), EMPTY.svc_chain()}
    names |= {WEB.sep_chain(e) for e in WEB.endpoints}
    assert len(names) == 7
    assert all(len(n) <= 28 for n in names)
    udp_twin = replace(DNS_TCP, protocol="UDP")
    assert udp_twin.svc_chain() != DNS_TCP.svc_chain()


@pytest.mark.parametrize(
    "changes",
    [
        {"protocol": "SCTP"},
        {"protocol": "tcp"},
        {"cluster_ip": "10.96.0.300"},
        {"cluster_ip": "fd00::1"},
        {"port": 0},
        {"namespace": "Default"},
        {"service": 'web" -j ACCEPT'},
        {"port_name": "http "},
    ],
)
def test_bad_rules_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(WEB, **changes)


def test_bad_endpoints_and_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError):
        ServiceEndpoint("10.0.0.1", 70000)
    with pytest.raises(ValueError):
        ServiceEndpoint("010.0.0.1", 80)
    with pytest.raises(ValueError, match="duplicate"):
        render([WEB, replace(WEB, cluster_ip="10.96.9.9")])


SAVED = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:WEFT-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals" -j WEFT-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "weft service portals" -j WEFT-SERVICES
-A FORWARD -j ACCEPT
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals" -j WEFT-SERVICES
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:OTHER - [0:0]
:WEFT-MARK-MASQ - [0:0]
:WEFT-POSTROUTING - [0:0]
:WEFT-SEP-AAAAAAAAAAAAAAAA - [0:0]
:WEFT-SERVICES - [0:0]
:WEFT-SVC-BBBBBBBBBBBBBBBB - [0:0]
-A PREROUTING -m comment --comment "weft service portals" -j WEFT-SERVICES
-A PREROUTING -j OTHER
-A OUTPUT -m comment --comment "weft service portals" -j WEFT-SERVICES
-A POSTROUTING -m comment --comment "weft postrouting rules" -j WEFT-POSTROUTING
-A OTHER -m comment --comment "not -j WEFT-X" -j RETURN
-A WEFT-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j WEFT-SVC-BBBBBBBBBBBBBBBB
-A WEFT-SVC-BBBBBBBBBBBBBBBB -j WEFT-SEP-AAAAAAAAAAAAAAAA
COMMIT
"""


def test_saved_chains_are_listed_per_table() -> None:
    assert weft_chains(SAVED) == {
        "nat": {
            "WEFT-MARK-MASQ",
            "WEFT-POSTROUTING",
            "WEFT-SEP-AAAAAAAAAAAAAAAA",
            "WEFT-SERVICES",
            "WEFT-SVC-BBBBBBBBBBBBBBBB",
        },
        "filter": {"WEFT-SERVICES"},
    }
    assert weft_chains("") == {"nat": set(), "filter": set()}


def test_jumps_are_inserted_only_where_missing() -> None:
    assert render_jumps(SAVED) == ""
    everything = render_jumps("")
    assert everything == (
        "*nat\n"
        '-I PREROUTING -m comment --comment "weft service portals" -j WEFT-SERVICES\n'
        '-I OUTPUT -m comment --comment "weft service portals" -j WEFT-SERVICES\n'
        '-I POSTROUTING -m comment --comment "weft postrouting rules" -j WEFT-POSTROUTING\n'
        "COMMIT\n"
        "*filter\n"
        '-I INPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        '-I FORWARD -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        '-I OUTPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        "COMMIT\n"
    )
    assert len(JUMPS) == everything.count("-I ")
    without_output = SAVED.replace("-A OUTPUT -m comment", "-A OUTPUT -p udp -m comment", 1)
    assert render_jumps(without_output) == ""  # any jump to our chain counts as present
    missing = "\n".join(line for line in SAVED.splitlines() if not line.startswith("-A OUTPUT"))
    assert render_jumps(missing) == (
        '*nat\n-I OUTPUT -m comment --comment "weft service portals" -j WEFT-SERVICES\nCOMMIT\n'
        "*filter\n"
        '-I OUTPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        "COMMIT\n"
    )


def test_removal_deletes_our_chains_and_every_jump_to_them() -> None:
    assert render_removal(SAVED) == (
        "*nat\n"
        '-D PREROUTING -m comment --comment "weft service portals" -j WEFT-SERVICES\n'
        '-D OUTPUT -m comment --comment "weft service portals" -j WEFT-SERVICES\n'
        '-D POSTROUTING -m comment --comment "weft postrouting rules" -j WEFT-POSTROUTING\n'
        "-F WEFT-MARK-MASQ\n"
        "-F WEFT-POSTROUTING\n"
        "-F WEFT-SEP-AAAAAAAAAAAAAAAA\n"
        "-F WEFT-SERVICES\n"
        "-F WEFT-SVC-BBBBBBBBBBBBBBBB\n"
        "-X WEFT-MARK-MASQ\n"
        "-X WEFT-POSTROUTING\n"
        "-X WEFT-SEP-AAAAAAAAAAAAAAAA\n"
        "-X WEFT-SERVICES\n"
        "-X WEFT-SVC-BBBBBBBBBBBBBBBB\n"
        "COMMIT\n"
        "*filter\n"
        '-D INPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        '-D FORWARD -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        '-D OUTPUT -m conntrack --ctstate NEW -m comment --comment "weft service portals"'
        " -j WEFT-SERVICES\n"
        "-F WEFT-SERVICES\n"
        "-X WEFT-SERVICES\n"
        "COMMIT\n"
    )


def test_removal_of_nothing_is_empty() -> None:
    assert render_removal("") == ""
    assert render_removal("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j RETURN\nCOMMIT\n") == ""
