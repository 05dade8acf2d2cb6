"""``weft dashboard``'s pure parts and the dashboard's manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest

from harness.mesh import wait_for
from weft.cli.dashboard import browser_command, open_browser, parse_wait, ready_addresses
from weft.resources.checks import check_apply
from weft.resources.load import parse_manifest_text
from weft.web import manifest

URL = "http://localhost:50750"


def test_the_browser_comes_from_browser_or_a_display() -> None:
    assert browser_command(URL, {"BROWSER": "firefox"}) == ["firefox", URL]
    assert browser_command(URL, {"BROWSER": "chromium --new-window %s:lynx"}) == [
        "chromium",
        "--new-window",
        URL,
    ]
    assert browser_command(URL, {}) is None
    assert browser_command(URL, {"BROWSER": " "}) is None


def test_the_browser_is_started_detached_with_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = tmp_path / "opened"
    script = (
        f"{sys.executable} -c 'import sys; open(sys.argv[1], \"w\").write(sys.argv[2])' {opened}"
    )
    monkeypatch.setenv("BROWSER", script)
    assert open_browser(URL) == "Opening the dashboard in the default browser"
    assert wait_for(lambda: opened.exists() and opened.read_text(), 10, what="the browser") == URL
    monkeypatch.setenv("BROWSER", str(tmp_path / "no-such-browser"))
    assert open_browser(URL).startswith("could not start")
    monkeypatch.delenv("BROWSER")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert open_browser(URL).startswith("no browser available here")


def test_ready_addresses_count_ready_endpoints_only() -> None:
    ready = {"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "notReadyAddresses": [{}]}]}
    assert ready_addresses([ready]) == 1
    assert ready_addresses([{"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.2"}]}]}]) == 0
    assert ready_addresses([{}]) == 0
    assert ready_addresses([]) == 0


def test_wait_takes_durations() -> None:
    assert parse_wait("5m") == 300
    assert parse_wait("0") == 0
    assert parse_wait("90s") == 90
    with pytest.raises(click.BadParameter, match="invalid duration 'soon'"):
        parse_wait("soon")


def test_the_manifest_is_a_valid_weft_web_deployment() -> None:
    objects = manifest.manifests("weft", "example.org")
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Deployment", "Service"]
    assert {o["metadata"]["name"] for o in objects} == {"weft-web"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "weft"}}
    text = "\n---\n".join(json.dumps(o) for o in [namespace, *objects])
    check_apply(parse_manifest_text(text, "web.yml"))
    deployment = objects[1]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "weft-web"
    command = pod["containers"][0]["command"]
    assert command[:3] == ["weft", "controller", "web"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags["--metrics-api-url"] == "http://weft-metrics-api.weft.svc.example.org:8085"
    assert flags["--prometheus-url"] == "http://weft-prometheus.weft.svc.example.org:9090"
    assert flags["--tap-url"] == "http://weft-tap.weft.svc.example.org:8088"
    assert flags["--token-file"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert objects[2]["spec"]["ports"] == [{"name": "http", "port": 8084, "targetPort": 8084}]
