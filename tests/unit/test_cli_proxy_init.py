"""``weft proxy-init``: flags, ``--simulate`` output, errors, and applying it in a namespace."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from weft.cli.main import cli
from weft.local import proxy_init as rules_mod
from weft.local.netns import NetnsError, Topology
from weft.local.proxy_init import ProxyInitConfig, render

TS = 1700000000
WEFT = Path(sys.executable).parent / "weft"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["proxy-init", *args])


def simulate(*args: str) -> str:
    result = run(*args, "--simulate", "--timestamp", str(TS))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (["--proxy-gid", "2102"], ProxyInitConfig(proxy_gid=2102)),
        (
            ["-p", "14143", "-o", "14140", "-u", "2102", "--proxy-gid", "2103"],
            ProxyInitConfig(
                incoming_proxy_port=14143, outgoing_proxy_port=14140, proxy_uid=2102, proxy_gid=2103
            ),
        ),
        (
            [
                *("-u", "2102", "-r", "80", "-r", "8080,9000-9010"),
                *("--inbound-ports-to-ignore", "25,587", "--inbound-ports-to-ignore", "6379"),
                *("--outbound-ports-to-ignore", "443,10000:10005"),
            ],
            ProxyInitConfig(
                proxy_uid=2102,
                ports_to_redirect=[80, 8080, "9000-9010"],
                inbound_ports_to_ignore=[25, 587, 6379],
                outbound_ports_to_ignore=[443, "10000-10005"],
            ),
        ),
    ],
)
def test_simulate_prints_the_rendered_rules(args: list[str], config: ProxyInitConfig) -> None:
    assert simulate(*args) == render(config, TS)


def test_simulate_matches_the_golden_rules() -> None:
    golden = Path(__file__).resolve().parents[1] / "golden" / "proxy_init_default.rules"
    assert simulate("--proxy-gid", "2102") == golden.read_text()


def test_simulate_does_not_touch_iptables(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise AssertionError("applied")

    monkeypatch.setattr(rules_mod, "apply", fail)
    assert simulate("-u", "1").startswith("*nat\n")


def test_apply_uses_the_named_or_current_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, str]] = []
    monkeypatch.setattr(rules_mod, "apply", lambda netns, rules: calls.append((netns, rules)))
    expected = render(ProxyInitConfig(proxy_uid=7), TS)
    assert run("-u", "7", "--timestamp", str(TS)).exit_code == 0
    assert run("-u", "7", "--timestamp", str(TS), "--netns", "wt-x").exit_code == 0
    assert calls == [(None, expected), ("wt-x", expected)]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["-u", "1", "-p", "0"], "invalid --incoming-proxy-port '0' (expected 1-65535)"),
        (["-u", "1", "-o", "http"], "invalid --outgoing-proxy-port 'http' (expected 1-65535)"),
        (["-u", "x"], "invalid --proxy-uid 'x' (expected 0-4294967294)"),
        ([], "--proxy-uid or --proxy-gid is required (the proxy's traffic loops)"),
        (
            ["-u", "1", "--inbound-ports-to-ignore", "25,99999"],
            "--inbound-ports-to-ignore: invalid port or port range '99999'",
        ),
        (["-u", "1", "-r", "10-5"], "--ports-to-redirect: invalid port or port range '10-5'"),
        (["-u", "1", "--netns", "../x"], "invalid network namespace name '../x'"),
    ],
)
def test_errors_are_one_line(args: list[str], problem: str) -> None:
    result = run(*args, "--simulate")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"weft proxy-init: {problem}\n"


def test_iptables_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(netns: str | None, rules: str) -> None:
        raise NetnsError("iptables-restore exited 2: line 3 failed\nTry `--help'")

    monkeypatch.setattr(rules_mod, "apply", fail)
    result = run("-u", "1")
    assert result.exit_code == 1
    assert result.stderr == (
        "weft proxy-init: cannot apply the rules: "
        "iptables-restore exited 2: line 3 failed; Try `--help'\n"
    )


def save_nat(topology: Topology, netns: str) -> str:
    return topology.exec(netns, ["iptables-save", "-t", "nat"]).stdout


@pytest.mark.netns
def test_applies_in_a_namespace() -> None:
    netns = f"wt-pi-{secrets.token_hex(3)}"
    topology = Topology()
    try:
        topology.add_netns(netns)
        argv = ["ip", "netns", "exec", netns, str(WEFT), "proxy-init", "--proxy-gid", "2102"]
        for _ in range(2):  # a re-run replaces the rules
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith("*nat\n")
        saved = save_nat(topology, netns)
        assert ":PROXY_INIT_REDIRECT - [0:0]" in saved
        assert ":PROXY_INIT_OUTPUT - [0:0]" in saved
        assert saved.count("-j PROXY_INIT_REDIRECT") == 2  # PREROUTING and the gid rule
        assert saved.count("-A OUTPUT ") == 1
        assert "--gid-owner 2102" in saved
        assert "REDIRECT --to-ports 4143" in saved and "REDIRECT --to-ports 4140" in saved
        # --netns from outside the namespace reaches the same rules.
        outside = subprocess.run(
            [str(WEFT), "proxy-init", "-u", "1", "--netns", netns],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert outside.returncode == 0, outside.stderr
        assert "--uid-owner 1" in save_nat(topology, netns)
        assert rules_mod.remove(netns)
        assert "PROXY_INIT" not in save_nat(topology, netns)
    finally:
        assert topology.cleanup() == []
