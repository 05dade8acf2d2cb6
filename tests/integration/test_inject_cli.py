"""``weft inject`` run as a real process on files and stdin, and on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def weft_inject(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``weft inject <args>``."""
    return subprocess.run(
        [sys.executable, "-m", "weft", "inject", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def _template_annotations(obj: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = obj["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations


def test_every_emojivoto_workload_is_marked_and_nothing_else_changes() -> None:
    source = ROOT / "examples" / "emojivoto.yml"
    proc = weft_inject(str(source))
    assert proc.returncode == 0, proc.stderr
    before = [d for d in yaml.safe_load_all(source.read_text()) if d]
    after = list(yaml.safe_load_all(proc.stdout))
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if old["kind"] == "Deployment":
            assert _template_annotations(new) == {"linkerd.io/inject": "enabled"}
            del new["spec"]["template"]["metadata"]["annotations"]
        assert new == old
    injected = [line for line in proc.stderr.splitlines() if "skipped" not in line]
    assert 'namespace "emojivoto" skipped (not a workload)' in proc.stderr
    assert injected == [
        'deployment "emoji" injected',
        'deployment "voting" injected',
        'deployment "web" injected',
        'deployment "vote-bot" injected',
    ]


def test_stdin_lists_pods_and_existing_annotations() -> None:
    manifest = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p, annotations: {keep: "yes", linkerd.io/inject: disabled}}
  spec: {containers: [{name: c, command: [sleep, "1"]}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
"""
    proc = weft_inject("-", stdin=manifest)
    assert proc.returncode == 0, proc.stderr
    (out,) = yaml.safe_load_all(proc.stdout)
    pod, config_map = out["items"]
    assert pod["metadata"]["annotations"] == {"keep": "yes", "linkerd.io/inject": "enabled"}
    assert config_map == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert proc.stderr.splitlines() == [
        'pod "p" injected',
        'configmap "c" skipped (not a workload)',
    ]


def test_bad_input_gives_one_line_and_no_output(tmp_path: Path) -> None:
    missing = weft_inject(str(tmp_path / "nope.yml"))
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert (
        missing.stderr.strip() == f"weft inject: {tmp_path / 'nope.yml'}: No such file or directory"
    )
    broken = weft_inject("-", stdin="a: [\n")
    assert broken.returncode == 1
    assert broken.stdout == ""
    assert len(broken.stderr.strip().splitlines()) == 1
    assert broken.stderr.startswith("weft inject: <stdin>: document 1: invalid YAML")


def _anchors(tmp_path: Path) -> Path:
    from datetime import UTC, datetime

    from weft.identity.trust import generate_trust

    path = tmp_path / "ca.crt"
    path.write_bytes(generate_trust("weft", "cluster.local", now=datetime.now(UTC)).anchors_pem())
    return path


def test_manual_inject_then_uninject_gives_back_the_input(tmp_path: Path) -> None:
    source = ROOT / "examples" / "emojivoto.yml"
    flags = [
        "--manual",
        "--ignore-cluster",
        "--identity-trust-anchors-file",
        str(_anchors(tmp_path)),
    ]
    manual = weft_inject(*flags, str(source))
    assert manual.returncode == 0, manual.stderr
    web = [d for d in yaml.safe_load_all(manual.stdout) if d["metadata"]["name"] == "web"][1]
    init = [c["name"] for c in web["spec"]["template"]["spec"]["initContainers"]]
    assert init == ["linkerd-init", "linkerd-proxy"]
    again = weft_inject(*flags, "-", stdin=manual.stdout)
    assert list(yaml.safe_load_all(again.stdout)) == list(yaml.safe_load_all(manual.stdout))
    back = subprocess.run(
        [sys.executable, "-m", "weft", "uninject", "-"],
        input=manual.stdout, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert list(yaml.safe_load_all(back.stdout)) == [
        d for d in yaml.safe_load_all(source.read_text()) if d
    ]
    assert 'deployment "web" uninjected' in back.stderr
    assert 'namespace "emojivoto" skipped (not a workload)' in back.stderr


def test_json_files_directories_and_flags_become_annotations(tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "c"}]},
    }
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({**pod, "metadata": {"name": "q"}}))
    proc = weft_inject(str(tmp_path), "-o", "json", "--proxy-cpu-request", "100m", "--disable-tap")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["q", "p"]
    assert listed["items"][1]["metadata"]["annotations"] == {
        "config.linkerd.io/proxy-cpu-request": "100m",
        "config.linkerd.io/disable-tap": "true",
        "linkerd.io/inject": "enabled",
    }
    once = weft_inject("-", stdin=proc.stdout)
    twice = weft_inject("-", stdin=once.stdout)
    assert once.stdout == twice.stdout
    bad = weft_inject(str(tmp_path / "pod.json"), "--proxy-cpu-limit", "lots")
    assert bad.returncode == 0
    assert 'pod "p" skipped (pod annotation config.linkerd.io/proxy-cpu-limit' in bad.stderr
