"""The node agent: one process per local cluster, running inside the node's network namespace.

It is the cluster's API server (store + HTTP API on a unix socket), controller manager
(Deployments, Jobs, Endpoints), kube-proxy (service rules), DNS server and kubelet. Every
controller is level-triggered: after each change to the store (or once a second) all of them
reconcile, so a missed event is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from weft.inject import InjectConfig, InjectError, decide, inject_pod_template
from weft.local import apply as apply_mod
from weft.local import control_plane
from weft.local import netns as ns
from weft.local.api_server import ApiServer
from weft.local.cluster_config import ClusterConfig
from weft.local.controllers import deployments, endpoints, jobs
from weft.local.controllers.pods import owner_of
from weft.local.controllers.service_proxy import ServiceProxy
from weft.local.dns import DNSServer
from weft.local.kubelet import Kubelet
from weft.local.pod_env import DEFAULT_PATH
from weft.local.pod_worker import NodeSettings
from weft.local.store import ObjectStore
from weft.local.tokens import load_or_create_key
from weft.resources import parse_manifest_text

log = logging.getLogger("weft.local.agent")
Obj = dict[str, Any]
BUILTIN_NAMESPACES = ("default", "weft")
RESYNC_SECONDS = 1.0


def container_base_env() -> dict[str, str]:
    """What every container's environment starts from: weft's own tools first on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    return {"PATH": f"{bin_dir}:{DEFAULT_PATH}", "LANG": "C.UTF-8"}


class Agent:
    """Runs one cluster until SIGTERM or SIGINT."""

    def __init__(self, cfg: ClusterConfig, *, backoff_initial: float = 10.0) -> None:
        self.cfg = cfg
        self.store = ObjectStore(cfg.state / "objects.json")
        self.token_key = load_or_create_key(cfg.state / "token.key")
        anchors = control_plane.ensure_trust(cfg)
        self.inject_config = InjectConfig(
            cluster_domain=cfg.cluster_domain,
            control_plane_namespace=control_plane.NAMESPACE,
            trust_domain=control_plane.TRUST_DOMAIN,
            identity_disabled=False,
            trust_anchors_pem=anchors.decode(),
            identity_addr=control_plane.service_addr(
                cfg, "weft-identity", control_plane.IDENTITY_PORT
            ),
            destination_addr=control_plane.service_addr(
                cfg, "weft-destination", control_plane.DESTINATION_PORT
            ),
            extra_env={"LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD": "5s"},
        )
        self.node = NodeSettings(
            cluster=cfg,
            base_env=container_base_env(),
            lookup=self.store.get,
            publish=self.publish_status,
            backoff_initial=backoff_initial,
        )
        self.kubelet = Kubelet(self.store, self.node, self.token_key)
        self.dns = DNSServer(domain=cfg.cluster_domain)
        self.service_proxy = ServiceProxy(self.store, self.dns)
        self.api = ApiServer(cfg, self.store, self.token_key)
        self._stop = asyncio.Event()

    # -- admission ------------------------------------------------------------------------

    def admit(self, pod: Obj) -> Obj:
        """Inject the proxy into a new pod when it (or its namespace) asks for it."""
        meta = pod["metadata"]
        namespace = self.store.get("Namespace", "", meta["namespace"]) or {"metadata": {}}
        ns_annotations = namespace["metadata"].get("annotations") or {}
        inject, why = decide(
            meta.get("annotations") or {},
            ns_annotations,
            namespace=meta["namespace"],
            spec=pod["spec"],
        )
        if not inject:
            return pod
        owner_kind, owner_name = owner_of(pod) or ("Pod", meta["name"])
        try:
            injected = inject_pod_template(
                pod,
                namespace_annotations=ns_annotations,
                owner_kind=owner_kind,
                owner_name=owner_name,
                config=self.inject_config,
                namespace=meta["namespace"],
            )
        except InjectError as exc:
            log.warning("%s/%s: not injected: %s", meta["namespace"], meta["name"], exc)
            return pod
        log.info("%s/%s: injected (%s)", meta["namespace"], meta["name"], why)
        return injected

    # -- status ---------------------------------------------------------------------------

    def publish_status(self, namespace: str, name: str, status: Obj) -> None:
        """Store a pod's status from its worker (ignored once the pod is gone)."""
        pod = self.store.get("Pod", namespace, name)
        if pod is None or pod.get("status") == status:
            return
        pod["status"] = status
        self.store.put(pod)

    # -- lifecycle ------------------------------------------------------------------------

    def recover(self) -> None:
        """Forget pods of an earlier agent: their namespaces are gone or about to be."""
        for netns in ns.list_netns():
            if netns.startswith(f"{self.cfg.name}-p-"):
                ns.delete_netns(netns)
        with self.store.transaction():
            for pod in self.store.list("Pod"):
                if owner_of(pod) is not None or pod["metadata"].get("deletionTimestamp"):
                    self.store.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
                elif pod.get("status", {}).get("podIP"):
                    pod["status"] = {"phase": "Pending"}
                    self.store.put(pod)
            for name in BUILTIN_NAMESPACES:
                if self.store.get("Namespace", "", name) is None:
                    self.store.put(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                    )

    def install_control_plane(self) -> None:
        """Write Prometheus's configuration, then apply the control plane's objects (unchanged
        ones stay as they are)."""
        control_plane.write_prometheus_config(self.cfg)
        text = yaml.safe_dump_all(control_plane.manifests(self.cfg))
        resources = parse_manifest_text(text, "weft control plane", None)
        for line in apply_mod.apply(self.store, resources, self.api.service_ips):
            log.info("control plane: %s", line)

    async def reconcile(self) -> None:
        """One pass of every controller."""
        deployments.reconcile(self.store, self.admit)
        jobs.reconcile(self.store, self.admit)
        self._admit_bare_pods()
        self.kubelet.sync()
        endpoints.reconcile(self.store)
        await self.service_proxy.sync()

    def _admit_bare_pods(self) -> None:
        """Pods applied directly go through admission once, before the kubelet sees them."""
        for pod in self.store.list("Pod"):
            annotations = pod["metadata"].get("annotations") or {}
            if pod.get("status") or owner_of(pod) is not None or "weft.io/admitted" in annotations:
                continue
            admitted = self.admit(pod)
            admitted["metadata"].setdefault("annotations", {})["weft.io/admitted"] = "true"
            admitted["status"] = {"phase": "Pending"}
            self.store.put(admitted)

    async def run(self) -> int:
        """Serve until asked to stop; then stop every pod. Returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.recover()
        self.install_control_plane()
        await self.dns.start(str(self.cfg.gateway.ip), 53)
        await self.api.start(self.cfg.api_socket)
        self.cfg.agent_pid_file.write_text(f"{os.getpid()}\n")
        log.info(
            "cluster %s is up (pods %s, services %s)",
            self.cfg.name,
            self.cfg.pod_cidr,
            self.cfg.service_cidr,
        )
        try:
            while not self._stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile failed")
                revision = self.store.revision
                stop = asyncio.ensure_future(self._stop.wait())
                changed = asyncio.ensure_future(self.store.wait_changed(revision, RESYNC_SECONDS))
                done, _ = await asyncio.wait({stop, changed}, return_when=asyncio.FIRST_COMPLETED)
                for task in (stop, changed):
                    if task not in done:
                        task.cancel()
        finally:
            log.info("stopping: terminating %d pods", len(self.kubelet.workers))
            await self.kubelet.shutdown()
            await self.api.close()
            await self.dns.close()
            self.cfg.api_socket.unlink(missing_ok=True)
            self.cfg.agent_pid_file.unlink(missing_ok=True)
        return 0


def main(state_dir: Path, backoff_initial: float) -> int:
    """Entry point of ``weft cluster agent`` (run inside the node namespace)."""
    import uvloop

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cfg = ClusterConfig.load(state_dir)
    return uvloop.run(Agent(cfg, backoff_initial=backoff_initial).run())
