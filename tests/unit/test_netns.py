"""The pure parts of the netns layer and of the test fixture (no root needed)."""

from __future__ import annotations

import pytest

from harness.mesh import Sample, netns_skip_reason, select, total, wait_equal, wait_for
from weft.local import netns


def test_exec_argv_uses_ip_netns_exec() -> None:
    assert netns.exec_argv("wt-abc-pod", ["curl", "-s", "x"]) == [
        "ip",
        "netns",
        "exec",
        "wt-abc-pod",
        "curl",
        "-s",
        "x",
    ]


@pytest.mark.parametrize("name", ["", "a/b", "-x", "a b", "x" * 65, "../etc"])
def test_bad_netns_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        netns.check_netns_name(name)


@pytest.mark.parametrize("name", ["eth0", "wb1a2b3c", "wv1a2b3c00", "x" * 15])
def test_good_ifnames(name: str) -> None:
    assert netns.check_ifname(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "a b", "a/b", "-eth"])
def test_bad_ifnames_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        netns.check_ifname(name)


def test_bad_sysctl_key_is_rejected_before_running_anything() -> None:
    with pytest.raises(ValueError):
        netns.Topology().set_sysctl("wt-x", "net.ipv4.ip_forward; rm -rf /", 1)


def test_etc_file_name_is_checked() -> None:
    with pytest.raises(ValueError):
        netns.Topology().write_etc_file("wt-x", "../passwd", "")


def test_cleanup_of_nothing_is_a_no_op() -> None:
    assert netns.Topology().cleanup() == []


def test_netns_tests_skip_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    reason = netns_skip_reason()
    assert reason is not None and "root" in reason


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", 7])
    assert wait_for(lambda: next(values), 5, interval=0) == 7


def test_wait_for_times_out_with_the_last_error() -> None:
    def boom() -> bool:
        raise ValueError("not yet")

    with pytest.raises(TimeoutError, match="not yet"):
        wait_for(boom, 0.05, what="boom", interval=0.01)


def test_wait_equal_reports_the_last_value() -> None:
    with pytest.raises(AssertionError, match="expected 2, last saw 1"):
        wait_equal(lambda: 1, 2, 0.05, what="x")


def test_sample_selection() -> None:
    samples: list[Sample] = [
        ("request_total", {"direction": "inbound", "authority": "a"}, 2.0),
        ("request_total", {"direction": "inbound", "authority": "b"}, 3.0),
        ("request_total", {"direction": "outbound", "authority": "a"}, 5.0),
        ("response_total", {"direction": "inbound"}, 7.0),
    ]
    assert total(samples, "request_total", direction="inbound") == 5.0
    assert total(samples, "request_total", authority="a") == 7.0
    assert total(samples, "request_total", authority="zzz") == 0
    assert len(select(samples, "response_total")) == 1
