"""The node's kubelet: one :class:`PodWorker` per pod, IP addresses, and two-phase deletion.

A pod marked for deletion (``deletionTimestamp``) is stopped — its endpoints are already gone,
since terminating pods are not ready — and only then removed from the store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from weft.local.controllers.pods import is_terminating, phase
from weft.local.pod_worker import NodeSettings, PodWorker
from weft.local.store import ObjectStore
from weft.local.tokens import Claims, mint

log = logging.getLogger("weft.local.kubelet")
Obj = dict[str, Any]


class Kubelet:
    """Starts, stops and forgets pod workers as pods come and go in the store."""

    def __init__(self, store: ObjectStore, node: NodeSettings, token_key: bytes) -> None:
        self.store = store
        self.node = node
        self.token_key = token_key
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.stopping: dict[str, asyncio.Task[None]] = {}
        net = ipaddress.IPv4Network(node.cluster.pod_cidr)
        self._first = int(net.network_address) + 2  # .1 is the gateway
        self._size = net.num_addresses - 3  # nor the network and broadcast addresses
        self._cursor = 0

    def _allocate_ip(self, pods: list[Obj]) -> str:
        """The next free pod address after the last one handed out (addresses rotate)."""
        used = {p.get("status", {}).get("podIP") for p in pods}
        used |= {w.ip for w in self.workers.values()}
        for _ in range(self._size):
            ip = str(ipaddress.IPv4Address(self._first + self._cursor))
            self._cursor = (self._cursor + 1) % self._size
            if ip not in used:
                return ip
        raise RuntimeError(f"pod CIDR {self.node.cluster.pod_cidr} is exhausted")

    def sync(self) -> None:
        """Start workers for new pods and stop those of deleted or terminating pods."""
        pods = self.store.list("Pod")
        seen: set[str] = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            if is_terminating(pod):
                self._stop(uid, pod)
            elif uid not in self.workers and phase(pod) in ("Pending", "Running"):
                if pod.get("status", {}).get("podIP"):
                    continue  # a pod from before a restart of the agent; not ours to run
                self._start(pod, self._allocate_ip(pods))
        for uid in list(self.workers):
            if uid not in seen:
                self._stop(uid, None)

    def _start(self, pod: Obj, ip: str) -> None:
        uid = pod["metadata"]["uid"]
        self._write_token(pod)
        worker = PodWorker(self.node, pod, ip)
        self.workers[uid] = worker
        task = asyncio.get_running_loop().create_task(self._run(worker))
        self.tasks[uid] = task

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed", worker.namespace, worker.name)
            worker.phase = "Failed"
            worker.message = "the node agent could not run this pod (see agent.log)"
            worker.publish()

    def _stop(self, uid: str, pod: Obj | None) -> None:
        if uid in self.stopping:
            return
        worker = self.workers.get(uid)
        self.stopping[uid] = asyncio.get_running_loop().create_task(
            self._terminate(uid, worker, pod)
        )

    async def _terminate(self, uid: str, worker: PodWorker | None, pod: Obj | None) -> None:
        try:
            # Stop the containers gracefully first; only then end the worker's own task.
            if worker is not None:
                await worker.terminate()
            task = self.tasks.pop(uid, None)
            if task is not None:
                task.cancel()
        except Exception:
            log.exception("stopping pod %s", uid)
        finally:
            self.workers.pop(uid, None)
            self.stopping.pop(uid, None)
            if pod is not None:
                current = self.store.get(
                    "Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]
                )
                if current is not None and current["metadata"]["uid"] == uid:
                    self.store.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _write_token(self, pod: Obj) -> None:
        meta = pod["metadata"]
        claims = Claims(
            namespace=meta["namespace"],
            service_account=pod["spec"].get("serviceAccountName") or "default",
            pod=meta["name"],
            pod_uid=meta["uid"],
        )
        directory = self.node.cluster.state / "pods" / meta["uid"]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "token"
        path.touch(mode=0o600)
        path.write_text(mint(self.token_key, claims))

    async def shutdown(self) -> None:
        """Stop every pod (used when the node agent exits)."""
        for uid in list(self.workers):
            self._stop(uid, None)
        await asyncio.gather(*self.stopping.values(), return_exceptions=True)
