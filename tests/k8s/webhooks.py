"""The installed webhooks as local processes the API server calls.

A Service-based webhook makes the API server dial the Service's cluster IP; the test cluster's
Service range is in 127.0.0.0/8, so ``weft controller proxy-injector`` / ``sp-validator`` bind
that loopback address on the Service's port, with the serving certificate ``weft install`` put
in their Secret, exactly as their pods would serve it.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.mesh import wait_for
from tests.k8s.cluster import REPO, KubeCluster


@dataclass
class Webhooks:
    """The two webhook processes of an installed control plane."""

    kube: KubeCluster
    directory: Path
    namespace: str = "weft"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _secret_files(self, name: str, keys: dict[str, str]) -> dict[str, Path]:
        secret = self.kube.kubectl_json("get", "secret", name, "-n", self.namespace)
        out = {}
        for key, filename in keys.items():
            path = self.directory / filename
            path.write_bytes(base64.b64decode(secret["data"][key]))
            path.chmod(0o600)
            out[key] = path
        return out

    def cluster_ip(self, component: str) -> str:
        """The cluster IP of ``weft-<component>``."""
        service = self.kube.kubectl_json(
            "get", "service", f"weft-{component}", "-n", self.namespace
        )
        return str(service["spec"]["clusterIP"])

    def start(self, component: str) -> None:
        """Run ``weft controller <component>`` on its Service's cluster IP, port 443."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tls = self._secret_files(
            f"weft-{component}-k8s-tls",
            {"tls.crt": f"{component}.crt", "tls.key": f"{component}.key"},
        )
        ip = self.cluster_ip(component)
        argv = [
            str(REPO / ".venv" / "bin" / "weft"), "controller", component,
            "--platform", f"kubernetes:{self.kube.kubeconfig}",
            "--addr", f"{ip}:443",
            "--admin-addr", f"{ip}:9990",
            "--tls-cert-file", str(tls["tls.crt"]),
            "--tls-key-file", str(tls["tls.key"]),
        ]  # fmt: skip
        if component == "proxy-injector":
            config = self.kube.kubectl_json("get", "configmap", "weft-config", "-n", self.namespace)
            roots = self.kube.kubectl_json(
                "get", "configmap", "weft-identity-trust-roots", "-n", self.namespace
            )
            values = self.directory / "values.json"
            values.write_text(config["data"]["values"])
            anchors = self.directory / "ca-bundle.crt"
            anchors.write_text(roots["data"]["ca-bundle.crt"])
            argv += ["--config-file", str(values), "--trust-anchors-file", str(anchors)]
        log = (self.directory / f"{component}.log").open("wb")
        self.processes[component] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

        def ready() -> bool:
            proc = self.processes[component]
            if proc.poll() is not None:
                raise AssertionError(f"{component} exited:\n{self.log(component)}")
            with urllib.request.urlopen(f"http://{ip}:9990/ready", timeout=1) as answer:
                return bool(answer.status == 200)

        wait_for(ready, 30, what=f"{component} to serve", interval=0.1)

    def log(self, component: str) -> str:
        """A webhook's output."""
        path = self.directory / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the processes started here (by pid)."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
