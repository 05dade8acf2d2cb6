"""Cluster DNS answers (pure; no sockets)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.local.dns import ClusterRecords, answer_wire, resolv_conf, resolve

RECORDS = ClusterRecords(
    services={("default", "web-svc"): "10.96.0.20", ("kube-system", "kube-dns"): "10.96.0.10"},
    pods=[("default", "10.244.1.2")],
)


def ask(name: str, rdtype: str = "A", domain: str = "cluster.local") -> dns.message.Message:
    """Resolve one question against :data:`RECORDS`."""
    return resolve(dns.message.make_query(name, rdtype), RECORDS, domain)


def addresses(response: dns.message.Message) -> list[str]:
    """The A addresses in the answer section."""
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


def is_nodata(response: dns.message.Message) -> bool:
    """NOERROR, no answer, and the zone's SOA in the authority section."""
    return (
        response.rcode() == dns.rcode.NOERROR
        and not response.answer
        and [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]
    )


def test_service_name_has_an_a_record() -> None:
    response = ask("web-svc.default.svc.cluster.local.")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and response.flags & dns.flags.QR
    assert not response.flags & dns.flags.RA  # we never recurse
    assert addresses(response) == ["10.96.0.20"]
    (rrset,) = response.answer
    assert rrset.ttl == 5 and rrset.rdtype == dns.rdatatype.A
    assert addresses(ask("kube-dns.kube-system.svc.cluster.local.")) == ["10.96.0.10"]


def test_names_are_case_insensitive_and_echoed_as_asked() -> None:
    response = ask("Web-SVC.DEFAULT.svc.Cluster.Local.")
    assert addresses(response) == ["10.96.0.20"]
    assert response.answer[0].name.to_text() == "Web-SVC.DEFAULT.svc.Cluster.Local."


def test_pod_name_has_an_a_record() -> None:
    assert addresses(ask("10-244-1-2.default.pod.cluster.local.")) == ["10.244.1.2"]
    assert ask("10-244-1-3.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert ask("10-244-1-2.other.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("rdtype", ["AAAA", "MX", "TXT", "SRV", "CNAME"])
def test_other_types_of_a_known_name_are_nodata(rdtype: str) -> None:
    response = ask("web-svc.default.svc.cluster.local.", rdtype)
    assert is_nodata(response)
    assert response.flags & dns.flags.AA
    assert response.authority[0].name.to_text() == "cluster.local."


def test_any_returns_the_address() -> None:
    assert addresses(ask("web-svc.default.svc.cluster.local.", "ANY")) == ["10.96.0.20"]


@pytest.mark.parametrize(
    "name",
    ["default.svc.cluster.local.", "svc.cluster.local.", "pod.cluster.local.", "cluster.local."],
)
def test_names_above_records_exist_without_addresses(name: str) -> None:
    assert is_nodata(ask(name))


def test_zone_apex_has_an_soa() -> None:
    response = ask("cluster.local.", "SOA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0].rdtype == dns.rdatatype.SOA
    assert response.answer[0][0].to_text().startswith("ns.dns.cluster.local. hostmaster.")


@pytest.mark.parametrize(
    "name",
    [
        "nope.default.svc.cluster.local.",
        "web-svc.other.svc.cluster.local.",
        "web-svc.default.cluster.local.",
        "x.web-svc.default.svc.cluster.local.",
        "web-svc.cluster.local.",
        "other.cluster.local.",
    ],
)
def test_unknown_names_in_the_domain_are_nxdomain(name: str) -> None:
    response = ask(name)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize(
    "name", ["example.com.", "web-svc.", "local.", ".", "cluster.local.example.com."]
)
def test_names_outside_the_domain_are_refused(name: str) -> None:
    response = ask(name)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert not response.answer and not response.authority


def test_other_classes_are_refused() -> None:
    query = dns.message.make_query("web-svc.default.svc.cluster.local.", "A", rdclass="CH")
    assert resolve(query, RECORDS).rcode() == dns.rcode.REFUSED


def test_other_opcodes_are_not_implemented() -> None:
    query = dns.message.make_query("web-svc.default.svc.cluster.local.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    assert resolve(query, RECORDS).rcode() == dns.rcode.NOTIMP


def test_a_query_without_a_question_is_a_format_error() -> None:
    wire = answer_wire(dns.message.Message(id=7).to_wire(), RECORDS)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == 7 and response.rcode() == dns.rcode.FORMERR


def test_custom_domain() -> None:
    name = "web-svc.default.svc.weft.test."
    assert addresses(ask(name, domain="weft.test")) == ["10.96.0.20"]
    assert ask("web-svc.default.svc.cluster.local.", domain="weft.test").rcode() == (
        dns.rcode.REFUSED
    )


def test_wire_round_trip_keeps_id_and_question() -> None:
    query = dns.message.make_query("web-svc.default.svc.cluster.local.", "A", use_edns=0)
    wire = answer_wire(query.to_wire(), RECORDS)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id and response.question == query.question
    assert response.edns == 0
    assert addresses(response) == ["10.96.0.20"]


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01",  # short header
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07web",  # name runs off the end
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # loop
    ],
)
def test_malformed_messages_are_dropped(wire: bytes) -> None:
    assert answer_wire(wire, RECORDS) is None


def test_responses_are_never_answered() -> None:
    query = dns.message.make_query("web-svc.default.svc.cluster.local.", "A")
    response = resolve(query, RECORDS)
    assert answer_wire(response.to_wire(), RECORDS) is None


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(wire: bytes) -> None:
    reply = answer_wire(wire, RECORDS)
    if reply is not None:
        assert dns.message.from_wire(reply).id == int.from_bytes(wire[:2], "big")


@given(st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=40))
def test_corrupted_queries_never_raise(junk: bytes, at: int) -> None:
    wire = dns.message.make_query("web-svc.default.svc.cluster.local.", "A").to_wire()
    answer_wire(wire[:at] + junk + wire[at + len(junk) :], RECORDS)


@pytest.mark.parametrize(
    ("services", "pods"),
    [
        ({("default", "Web"): "10.96.0.1"}, []),
        ({("default", "a.b"): "10.96.0.1"}, []),
        ({("Default", "web"): "10.96.0.1"}, []),
        ({("default", "web"): "None"}, []),
        ({("default", "web"): "fd00::1"}, []),
        ({}, [("default", "10.244.1.300")]),
        ({}, [("bad ns", "10.244.1.3")]),
    ],
)
def test_bad_records_are_rejected(
    services: dict[tuple[str, str], str], pods: list[tuple[str, str]]
) -> None:
    with pytest.raises(ValueError):
        ClusterRecords(services=services, pods=pods)


def test_empty_records_answer_nxdomain() -> None:
    query = dns.message.make_query("web-svc.default.svc.cluster.local.", "A")
    assert resolve(query, ClusterRecords()).rcode() == dns.rcode.NXDOMAIN
    assert resolve(dns.message.make_query("svc.cluster.local.", "A"), ClusterRecords()).rcode() == (
        dns.rcode.NOERROR
    )


def test_resolv_conf_uses_kubernetes_search_path() -> None:
    assert resolv_conf("10.96.0.10", "shop") == (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert "search x.svc.weft.test svc.weft.test weft.test\n" in resolv_conf(
        "1.2.3.4", "x", "weft.test"
    )
