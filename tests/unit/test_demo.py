"""The pure parts of ``weft demo``: the manifest, injection marks, host checks and waits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.mesh import REPO_ROOT, wait_for
from weft.demo import prereqs, runner
from weft.demo.traffic import Edge, edges_seen, identity
from weft.inject import InjectConfig, InjectError, inject_pod_template
from weft.inject.annotations import annotate_inject
from weft.local.apply import Source, parse

Obj = dict[str, Any]
EXAMPLE = REPO_ROOT / "examples" / "emojivoto.yml"


def _objects() -> list[Obj]:
    return [o for o in yaml.safe_load_all(EXAMPLE.read_text()) if o]


# -- the manifest -----------------------------------------------------------------------------


def test_the_packaged_manifest_is_the_example() -> None:
    packaged = Path(runner.__file__).parent / "emojivoto.yml"
    assert packaged.read_text() == EXAMPLE.read_text()


def test_the_manifest_has_emojivotos_shape() -> None:
    objects = _objects()
    by_kind: dict[str, list[str]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "emojivoto"
    assert by_kind["Namespace"] == ["emojivoto"]
    assert sorted(by_kind["ServiceAccount"]) == ["emoji", "voting", "web"]
    assert sorted(by_kind["Service"]) == ["emoji-svc", "voting-svc", "web-svc"]
    assert sorted(by_kind["Deployment"]) == ["emoji", "vote-bot", "voting", "web"]
    web_svc = next(o for o in objects if o["metadata"]["name"] == "web-svc")
    assert web_svc["spec"]["ports"][0]["port"] == 80
    assert web_svc["spec"]["ports"][0]["targetPort"] == 8080
    accounts = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"].get("serviceAccountName")
        for o in objects
        if o["kind"] == "Deployment"
    }
    assert accounts == {"emoji": "emoji", "voting": "voting", "web": "web", "vote-bot": None}


def test_the_manifest_has_nothing_local_only() -> None:
    """Every container names an image and a command that exists in it (the weft package)."""
    for obj in _objects():
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            assert container["image"].startswith("weft:")
            python, dash_m, module = container["command"]
            assert (python, dash_m) == ("python", "-m")
            assert module.startswith("weft.emojivoto.")
            path = REPO_ROOT / (module.replace(".", "/") + ".py")
            assert path.exists(), path
            for entry in container.get("env", []):
                assert isinstance(entry["value"], str)


def test_the_local_runtime_accepts_the_manifest() -> None:
    resources = parse([Source("emojivoto.yml", EXAMPLE.read_text())], None)
    assert len(resources) == len(_objects())


def test_the_injector_accepts_every_annotated_template() -> None:
    for obj in runner.manifest_objects(inject=True):
        if obj["kind"] != "Deployment":
            continue
        template = obj["spec"]["template"]
        assert template["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"
        injected = inject_pod_template(
            template,
            namespace_annotations={},
            owner_kind="Deployment",
            owner_name=obj["metadata"]["name"],
            config=InjectConfig(proxy_version="test", weft_version="test"),
            namespace="emojivoto",
        )
        names = [c["name"] for c in injected["spec"].get("initContainers", [])]
        names += [c["name"] for c in injected["spec"]["containers"]]
        assert "linkerd-proxy" in names


def test_no_inject_marks_templates_disabled() -> None:
    for obj in runner.manifest_objects(inject=False):
        if obj["kind"] == "Deployment":
            annotations = obj["spec"]["template"]["metadata"]["annotations"]
            assert annotations == {"linkerd.io/inject": "disabled"}


# -- annotate_inject --------------------------------------------------------------------------


def test_annotate_inject_keeps_other_annotations_and_the_input() -> None:
    deployment: Obj = {
        "kind": "Deployment",
        "spec": {"template": {"metadata": {"annotations": {"a": "b"}}, "spec": {}}},
    }
    out = annotate_inject(deployment, "enabled")
    assert out["spec"]["template"]["metadata"]["annotations"] == {
        "a": "b",
        "linkerd.io/inject": "enabled",
    }
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}


def test_annotate_inject_on_pods_and_other_kinds() -> None:
    pod = annotate_inject({"kind": "Pod", "metadata": {"name": "p"}}, "disabled")
    assert pod["metadata"]["annotations"] == {"linkerd.io/inject": "disabled"}
    service: Obj = {"kind": "Service", "metadata": {"name": "s"}}
    assert annotate_inject(service, "enabled") == service
    with pytest.raises(InjectError):
        annotate_inject(pod, "on")


# -- host checks ------------------------------------------------------------------------------


def test_capabilities_from_proc_status() -> None:
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000201000\n"
    assert prereqs.effective_capabilities(status) == 0x201000
    assert prereqs.effective_capabilities("Name:\tx\n") == 0


def test_privileges() -> None:
    both = (1 << prereqs.CAP_NET_ADMIN) | (1 << prereqs.CAP_SYS_ADMIN)
    assert prereqs.privileges(0, 0x1FFFFFFFFFF).description == "running with root"
    assert prereqs.privileges(1000, both).ok
    refused = prereqs.privileges(1000, 1 << prereqs.CAP_NET_ADMIN)
    assert not refused.ok
    assert refused.fix == (
        "weft demo creates network namespaces and iptables rules: run it with sudo "
        "(or grant CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    )
    restricted = prereqs.privileges(0, 1 << prereqs.CAP_SYS_ADMIN)  # root in a plain container
    assert not restricted.ok
    assert "lacks CAP_NET_ADMIN or CAP_SYS_ADMIN" in restricted.fix


def test_binaries() -> None:
    assert prereqs.binaries({"ip": True, "curl": True}).ok
    missing = prereqs.binaries({"ip": True, "curl": False, "nsenter": False})
    assert not missing.ok
    assert missing.fix.startswith("missing curl, nsenter:")


def test_a_busy_port_is_reported() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        finding = prereqs.check_port("127.0.0.1", port)
    assert not finding.ok
    assert finding.fix == f"127.0.0.1:{port} is in use: pick another with --port"
    assert prereqs.check_port("127.0.0.1", port).ok


# -- waiting ----------------------------------------------------------------------------------


def _pod(name: str, ready: bool, proxy: bool | None, deleting: bool = False) -> Obj:
    statuses = [] if proxy is None else [{"name": "linkerd-proxy", "ready": proxy}]
    meta: Obj = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    containers = [{"name": "app"}] + ([{"name": "linkerd-proxy"}] if proxy is not None else [])
    return {
        "metadata": meta,
        "spec": {"containers": containers},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": statuses,
        },
    }


def test_rollout_waits_for_every_proxy() -> None:
    pods = [_pod("a", True, True), _pod("b", False, False)]
    assert runner.rollout_state(pods, 2, inject=True) == (
        False,
        "1/2 pods ready, 1/2 proxies ready",
    )
    pods[1] = _pod("b", True, True)
    assert runner.rollout_state(pods, 2, inject=True)[0]


def test_rollout_waits_for_old_pods_to_go() -> None:
    """Switching --no-inject to meshed replaces pods: the old ones must be gone first."""
    pods = [_pod("a", True, True), _pod("old", True, None)]
    assert not runner.rollout_state(pods, 1, inject=True)[0]
    pods[1] = _pod("old", True, None, deleting=True)
    assert runner.rollout_state(pods, 1, inject=True)[0]


def test_rollout_without_the_mesh() -> None:
    assert runner.rollout_state([_pod("a", True, None)], 1, inject=False) == (
        True,
        "1/1 pods ready, 1/1 without a proxy",
    )
    assert not runner.rollout_state([_pod("a", True, True)], 1, inject=False)[0]


def test_proxy_not_started_yet_is_not_ready() -> None:
    pod = _pod("a", False, None)
    pod["spec"]["initContainers"] = [{"name": "linkerd-proxy"}]
    assert runner.proxy_ready(pod) is False


METRICS = """# TYPE request_total counter
request_total{direction="outbound",tls="true",server_id="emoji.emojivoto.serviceaccount.identity.weft.cluster.local"} 3
request_total{direction="outbound",tls="no_identity",server_id="voting.emojivoto.serviceaccount.identity.weft.cluster.local"} 2
request_total{direction="inbound",tls="true",client_id="voting.emojivoto.serviceaccount.identity.weft.cluster.local"} 2
"""  # noqa: E501


def test_edges_need_outbound_mtls_requests() -> None:
    emoji = Edge("web → emoji", identity("emoji", "emojivoto", "weft", "cluster.local"))
    voting = Edge("web → voting", identity("voting", "emojivoto", "weft", "cluster.local"))
    assert emoji.server_id == "emoji.emojivoto.serviceaccount.identity.weft.cluster.local"
    assert edges_seen(METRICS, [emoji, voting]) == [emoji]
    assert edges_seen("", [emoji]) == []


# -- the marker and the final screen ----------------------------------------------------------


def test_the_marker_names_a_running_demo(tmp_path: Path) -> None:
    assert runner.read_marker(tmp_path) is None
    (tmp_path / runner.MARKER).write_text("not json")
    assert runner.read_marker(tmp_path) is None
    (tmp_path / runner.MARKER).write_text(json.dumps({"pid": os.getpid()}))
    marker = runner.read_marker(tmp_path)
    assert marker == {"pid": os.getpid()}
    assert runner.running_demo(marker) is None  # this process is not another demo
    assert runner.running_demo({"pid": 2**22 + 7}) is None
    assert runner.running_demo({"pid": None}) is None


def test_next_steps_carry_the_cluster_flags(tmp_path: Path) -> None:
    default = runner.DemoOptions(name="weft", state_dir=Path("/var/lib/weft/weft"))
    lines = runner.next_steps(default, "weft", "web-1")
    assert "emojivoto is running: open http://127.0.0.1:8080/" in lines
    for step in ("check --proxy", "stat deploy -n emojivoto", "top deploy/web -n emojivoto",
                 "tap deploy/web -n emojivoto"):  # fmt: skip
        assert f"  sudo weft {step}" in lines, lines
    other = runner.DemoOptions(name="d1", state_dir=tmp_path, port=9000)
    text = "\n".join(runner.next_steps(other, ".venv/bin/weft", "web-1"))
    assert f"sudo .venv/bin/weft demo down --name d1 --state-dir {tmp_path}" in text
    assert "http://127.0.0.1:9000/" in text
    assert "dashboard" not in text
    with_dashboard = runner.next_steps(default, "weft", "web-1", "http://127.0.0.1:50750/")
    assert with_dashboard[1:3] == [
        "emojivoto is running: open http://127.0.0.1:8080/",
        "the weft dashboard: open http://127.0.0.1:50750/",
    ]


def test_a_stale_port_forward_is_found_by_its_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys; sys.stdin.read()"  # lives until its stdin closes
    relay = subprocess.Popen(
        [sys.executable, "-c", code, "weft.local.port_forward"], stdin=subprocess.PIPE
    )
    other = subprocess.Popen([sys.executable, "-c", code, "something-else"], stdin=subprocess.PIPE)
    try:
        assert runner.stale_forward({"relay": relay.pid}) == relay.pid
        assert runner.stale_forward({"relay": other.pid}) is None
        assert runner.stale_forward({"relay": None}) is None
        assert runner.stale_forward(None) is None
    finally:
        for proc in (relay, other):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)


def test_an_exited_child_is_not_running_before_it_is_reaped() -> None:
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    assert runner.process_running(child.pid)
    assert child.stdin is not None
    child.stdin.close()
    wait_for(lambda: not runner.process_running(child.pid), 10, what="the child's exit")
    assert Path(f"/proc/{child.pid}").exists()  # a zombie until reaped
    child.wait(10)
    assert not runner.process_running(child.pid)
