"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, with fresh PKI in a temporary directory.

The binaries come from ``scripts/k8s-binaries`` (built once per version from the Go module
proxy and cached); etcd is Debian's ``etcd-server``. Every address is on loopback: the cluster
gets its own random address in 127.0.0.0/8 for etcd and the API server (so their fixed ports
cannot collide with anything else on the machine), and a random /24 of 127.0.0.0/8 as its
Service range, so a Service's cluster IP (which the API server dials for webhooks) is a
loopback address a test process can serve. No kubelet runs: tests create a Node and play the
kubelet by writing pod status.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.mesh import wait_for

VERSION = os.environ.get("WEFT_K8S_VERSION", "v1.35.4")
REPO = Path(__file__).resolve().parents[2]
ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
API_PORT = 6443
NODE_NAME = "weft-test-node"

Obj = dict[str, Any]


def binaries_dir() -> Path:
    """Where scripts/k8s-binaries keeps this version's binaries."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weft" / "k8s"
    return Path(os.environ.get("WEFT_K8S_CACHE", default)) / VERSION / "bin"


def skip_reason() -> str | None:
    """Why the Kubernetes tests cannot run here, or None."""
    if not (binaries_dir() / ".complete").exists():
        return (
            f"Kubernetes {VERSION} binaries not built in {binaries_dir()}: "
            "run scripts/k8s-binaries (scripts/setup --test does)"
        )
    if shutil.which("etcd") is None:
        return "etcd not installed: apt-get install etcd-server (scripts/setup --test does)"
    return None


# -- PKI ----------------------------------------------------------------------------------


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """A cluster CA and the certificates signed by it, written as PEM files."""

    directory: Path
    ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("weft-test-ca"))
            .issuer_name(_name("weft-test-ca"))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        (self.directory / "ca.crt").write_bytes(_pem_cert(self.ca_cert))

    @property
    def ca_file(self) -> Path:
        """The CA certificate."""
        return self.directory / "ca.crt"

    def issue(
        self,
        name: str,
        cn: str,
        *,
        org: str | None = None,
        ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
        server: bool = False,
    ) -> tuple[Path, Path]:
        """A leaf for ``cn`` as (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else None
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, *([usage] if usage else [])]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file, key_file = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert_file.write_bytes(_pem_cert(cert))
        key_file.write_bytes(_pem_key(key))
        key_file.chmod(0o600)
        return cert_file, key_file


# -- the cluster --------------------------------------------------------------------------


def _free_loopback_address(taken: set[str]) -> str:
    """A random 127.x.y.z with nothing listening on the ports the cluster uses."""
    for _ in range(100):
        address = (
            f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        )
        if address in taken:
            continue
        busy = False
        for port in (ETCD_PORT, ETCD_PEER_PORT, API_PORT):
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((address, port)) == 0:
                    busy = True
        if not busy:
            return address
    raise RuntimeError("no free loopback address found for the test cluster")


def _service_range(address: str) -> str:
    """A random /24 of 127.0.0.0/8 that does not hold ``address``."""
    own = address.rsplit(".", 1)[0]
    while True:
        prefix = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if prefix != own:
            return f"{prefix}.0/24"


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bin = binaries_dir()
        self.address = _free_loopback_address(set())
        self.service_cidr = _service_range(self.address)
        self.server = f"https://{self.address}:{API_PORT}"
        self.pki = Pki(directory / "pki")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.kubeconfig = directory / "admin.kubeconfig"
        self.pod_ips = 0

    # -- lifecycle --

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def log(self, name: str) -> str:
        """The last lines of a component's log."""
        path = self.directory / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-40:])

    def start(self) -> None:
        """Start every component and wait until the API serves and `default` accounts exist."""
        pki = self.pki
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_file = pki.directory / "sa.key"
        sa_file.write_bytes(_pem_key(sa_key))
        sa_pub = pki.directory / "sa.pub"
        sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        first_service_ip = str(next(ipaddress.ip_network(self.service_cidr).hosts()))
        api_cert, api_key = pki.issue(
            "apiserver",
            "kube-apiserver",
            ips=(self.address, first_service_ip),
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            server=True,
        )
        admin_cert, admin_key = pki.issue("admin", "weft-test-admin", org="system:masters")
        proxy_cert, proxy_key = pki.issue("front-proxy-client", "front-proxy-client")
        self._write_kubeconfig(self.kubeconfig, admin_cert, admin_key)

        etcd_dir = self.directory / "etcd"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=weft-test",
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls=http://{self.address}:{ETCD_PORT}",
                f"--advertise-client-urls=http://{self.address}:{ETCD_PORT}",
                f"--listen-peer-urls=http://{self.address}:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://{self.address}:{ETCD_PEER_PORT}",
                f"--initial-cluster=weft-test=http://{self.address}:{ETCD_PEER_PORT}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://{self.address}:{ETCD_PORT}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={API_PORT}",
                f"--tls-cert-file={api_cert}",
                f"--tls-private-key-file={api_key}",
                f"--client-ca-file={pki.ca_file}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_file}",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--endpoint-reconciler-type=none",
                # Watches go straight to etcd, so compacting etcd expires a resourceVersion (410).
                "--watch-cache=false",
                f"--requestheader-client-ca-file={pki.ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={proxy_cert}",
                f"--proxy-client-key-file={proxy_key}",
                "--enable-priority-and-fairness=false",
                "--v=1",
            ],
        )
        self.wait_ready()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={sa_file}",
                f"--root-ca-file={pki.ca_file}",
                "--use-service-account-credentials",
                "--leader-elect=false",
                "--controllers=*,-node-lifecycle-controller",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--secure-port=0",
                "--concurrent-deployment-syncs=2",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        wait_for(
            lambda: (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            60,
            what="the default ServiceAccount",
            interval=0.25,
        )
        self.add_node()

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "weft-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_file),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(cert), "client-key": str(key)},
                }
            ],
            "contexts": [
                {"name": "weft-test", "context": {"cluster": "weft-test", "user": "admin"}}
            ],
            "current-context": "weft-test",
        }
        path.write_text(json.dumps(config))

    def kubeconfig_via(self, server: str, name: str) -> Path:
        """A copy of the admin kubeconfig that reaches the API server at ``server`` (a relay)."""
        config = json.loads(self.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = server
        # The relay's address is not in the serving certificate: name the API server's.
        config["clusters"][0]["cluster"]["tls-server-name"] = "localhost"
        path = self.directory / f"{name}.kubeconfig"
        path.write_text(json.dumps(config))
        return path

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the API server answers /readyz."""

        def ready() -> bool:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
            done = self.kubectl("get", "--raw", "/readyz", check=False)
            return done.returncode == 0

        wait_for(ready, timeout, what="kube-apiserver /readyz", interval=0.25)

    def stop(self) -> None:
        """Stop every process this cluster started (by pid) and wait for them."""
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5  # kube-apiserver drains for ~10 s otherwise
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- helpers --

    def env(self) -> dict[str, str]:
        """The environment for commands that talk to this cluster (``KUBECONFIG``, PATH)."""
        path = f"{self.bin}:{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run this cluster's kubectl; raises with its output when ``check`` and it fails."""
        done = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def kubectl_json(self, *args: str) -> Obj:
        """``kubectl ... -o json``, parsed."""
        return dict(json.loads(self.kubectl(*args, "-o", "json").stdout))

    def apply(self, objects: list[Obj] | Obj, *extra: str) -> str:
        """``kubectl apply -f -`` of objects (as a List); its output."""
        items = objects if isinstance(objects, list) else [objects]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", *extra, input=body).stdout

    def etcd_compact(self) -> None:
        """Compact etcd at its current revision (older resourceVersions then answer 410)."""
        endpoint = f"http://{self.address}:{ETCD_PORT}"
        status = subprocess.run(
            ["etcdctl", f"--endpoints={endpoint}", "endpoint", "status", "-w", "json"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        revision = json.loads(status.stdout)[0]["Status"]["header"]["revision"]
        subprocess.run(
            ["etcdctl", f"--endpoints={endpoint}", "compact", str(revision)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )

    def add_node(self) -> None:
        """A schedulable Node (no kubelet behind it) so the scheduler binds pods."""
        # The labels a kubelet gives its Node.
        labels = {
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": NODE_NAME,
        }
        self.apply(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": labels}}
        )
        self.kubectl("patch", "node", NODE_NAME, "--type=merge", "-p", '{"spec":{"taints":null}}')
        capacity = {"cpu": "16", "memory": "64Gi", "pods": "110"}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        }
        self.kubectl(
            "patch",
            "node",
            NODE_NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )

    def finish_deletions(self, namespace: str) -> None:
        """Play the kubelet: confirm the deletion of the namespace's terminating pods."""
        pods = self.kubectl_json("get", "pods", "-n", namespace)["items"]
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                self.kubectl(
                    "delete", "pod", pod["metadata"]["name"], "-n", namespace,
                    "--grace-period=0", "--force", "--wait=false", check=False,
                )  # fmt: skip

    def mark_ready(self, namespace: str) -> list[str]:
        """Mark every live, not yet running pod of ``namespace`` ready with a fresh address
        (from the documentation ranges 198.51.100.0/24 and 203.0.113.0/24: never dialled);
        their names."""
        pods = self.kubectl_json("get", "pods", "-n", namespace)["items"]
        marked = []
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") == "Running":
                continue
            if not pod["spec"].get("nodeName"):
                continue
            self.pod_ips += 1
            n = self.pod_ips
            ip = f"198.51.100.{n}" if n < 255 else f"203.0.113.{n - 254}"
            self.mark_pod(namespace, meta["name"], ip)
            marked.append(meta["name"])
        return marked

    def mark_pod(self, namespace: str, name: str, ip: str, ready: bool = True) -> None:
        """Play the kubelet: the pod runs with ``ip`` and its Ready condition is ``ready``."""
        pod = self.kubectl_json("get", "pod", name, "-n", namespace)
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("containers", [])]
        # Native sidecars (restartPolicy Always) run and are ready; other init containers ended.
        sidecars = [
            c["name"] for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"
        ]
        inits = [c["name"] for c in spec.get("initContainers", [])]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        flag = "True" if ready else "False"
        status = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": "192.0.2.1",
                "startTime": now,
                "conditions": [
                    {"type": t, "status": flag, "lastTransitionTime": now}
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
                "containerStatuses": [
                    {
                        "name": n,
                        "ready": ready,
                        "restartCount": 0,
                        "image": "weft",
                        "imageID": "",
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                    for n in names
                ],
                "initContainerStatuses": [
                    {
                        "name": n,
                        "ready": ready if n in sidecars else True,
                        "restartCount": 0,
                        "image": "weft",
                        "imageID": "",
                        "started": n in sidecars,
                        "state": (
                            {"running": {"startedAt": now}}
                            if n in sidecars
                            else {"terminated": {"exitCode": 0, "reason": "Completed"}}
                        ),
                    }
                    for n in inits
                ],
            }
        }
        self.kubectl(
            "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps(status),
        )  # fmt: skip
