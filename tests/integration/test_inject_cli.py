"""``weft inject`` run as a real process on files and stdin, and on bad input."""

from __future__ import annotations

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
    assert proc.stderr.splitlines() == [
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
    assert proc.stderr.strip() == 'pod "p" injected'


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
