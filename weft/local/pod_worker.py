"""One pod's life on the node: network, init containers, sidecars, containers, probes, status.

Order (Kubernetes with native sidecars): the pod's namespace is wired first; init containers
run one at a time; an init container with ``restartPolicy: Always`` is a sidecar that keeps
running, and the next container starts only once its startup (or readiness) probe passes —
so an injected pod's application never starts before its proxy is ready. When every app
container has finished for good (a Job's pod), the sidecars are stopped, so the pod completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from weft.local import pod_network
from weft.local.cluster_config import ClusterConfig
from weft.local.container import ContainerSpec, ContainerSupervisor, RestartPolicy
from weft.local.controllers.endpoints import resolve_target_port
from weft.local.pod_env import (
    EnvError,
    Lookup,
    command_line,
    redirect_token_paths,
    resolve_env,
)
from weft.local.probe import ProbeSpec, ProbeWorker
from weft.local.store import now_rfc3339

log = logging.getLogger("weft.local.kubelet")
Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeSettings:
    """What every pod worker needs from the node agent."""

    cluster: ClusterConfig
    base_env: Mapping[str, str]
    lookup: Lookup
    publish: Callable[[str, str, Obj], None]  # (namespace, name, status) -> None
    backoff_initial: float = 10.0
    shutdown_grace: float = 30.0


def readable_by_everyone(path: str) -> bool:
    """Whether ``path`` and every directory above it can be read by any user."""
    current = Path(path).resolve()
    for part in [current, *current.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        need = stat.S_IXOTH if part != current else stat.S_IROTH
        if not mode & need:
            return False
    return True


def _runs_as(
    container: Obj, pod: Obj, argv0: str, env: Mapping[str, str]
) -> tuple[int | None, int | None]:
    """(uid, gid) from the security contexts; keeps uid 0 when that user could not run argv0."""
    pod_ctx = pod["spec"].get("securityContext") or {}
    ctx = container.get("securityContext") or {}
    uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    gid = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    if uid not in (None, 0):
        exe = argv0 if "/" in argv0 else _which(argv0, env.get("PATH", ""))
        if exe is None or not all(readable_by_everyone(p) for p in _program_files(exe)):
            # The install is private to root (e.g. under /root): drop the group only; proxy-init
            # exempts the proxy's GID as well as its UID, so redirection still works.
            log.info("running %s with gid %s only: uid %s cannot read %s", argv0, gid, uid, exe)
            uid = None
    return (int(uid) if uid is not None else None, int(gid) if gid is not None else None)


def _program_files(exe: str) -> list[str]:
    """The files exec reads to run ``exe``: itself and, for a script, its interpreter."""
    files = [os.path.realpath(exe)]
    try:
        with open(exe, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return files
    if first.startswith(b"#!"):
        interpreter = first[2:].split()
        if interpreter:
            files.append(os.path.realpath(interpreter[0].decode(errors="replace")))
    return files


def _which(name: str, path: str) -> str | None:
    for directory in path.split(":"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class PodWorker:
    """Runs one pod until it finishes or is deleted, publishing its status."""

    def __init__(self, node: NodeSettings, pod: Obj, ip: str) -> None:
        self.node = node
        self.pod = pod
        self.ip = ip
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.netns = node.cluster.pod_netns(self.uid)
        self.log_dir = node.cluster.state / "logs" / self.namespace / self.name
        self.supervisors: dict[str, ContainerSupervisor] = {}
        self.readiness: dict[str, ProbeWorker] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.sidecars: list[str] = []
        self.main: list[str] = []
        self.phase = "Pending"
        self.message = ""
        self.started_at = now_rfc3339()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- status ---------------------------------------------------------------------------

    def _container_status(self, name: str) -> Obj:
        sup = self.supervisors[name]
        st = sup.state
        probe = self.readiness.get(name)
        running = st.kind == "running"
        started = self.started.get(name)
        ready = (
            running
            and started is not None
            and started.is_set()
            and (probe.healthy is True if probe is not None else True)
        )
        state: Obj
        if st.kind == "running":
            state = {"running": {"startedAt": _ts(st.started_at)}}
        elif st.kind == "terminated":
            state = {
                "terminated": {
                    "exitCode": st.exit_code,
                    "reason": st.reason,
                    "finishedAt": _ts(st.finished_at),
                }
            }
        else:
            state = {"waiting": {"reason": st.reason}}
        return {"name": name, "ready": ready, "restartCount": sup.restart_count, "state": state}

    def publish(self) -> None:
        """Send the pod's current status to the store."""
        init = [self._container_status(n) for n in self.supervisors if n not in self.main]
        main = [self._container_status(n) for n in self.main if n in self.supervisors]
        ready = (
            self.phase == "Running"
            and len(main) == len(self.main)
            and all(c["ready"] for c in main)
            and all(c["ready"] for c in init if c["name"] in self.sidecars)
        )
        status: Obj = {
            "phase": self.phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": str(self.node.cluster.gateway.ip),
            "startTime": self.started_at,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": init,
            "containerStatuses": main,
        }
        if self.message:
            status["message"] = self.message
        self.node.publish(self.namespace, self.name, status)

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Wire the pod, run its containers, and return when the pod has finished."""
        try:
            await asyncio.to_thread(
                pod_network.create_pod,
                self.node.cluster,
                self.uid,
                self.ip,
                self.name,
                self.namespace,
            )
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.publish()
            spec = self.pod["spec"]
            policy = spec.get("restartPolicy", "Always")
            for container in spec.get("initContainers") or []:
                if self._stopping:
                    return
                if container.get("restartPolicy") == "Always":
                    await self._start_sidecar(container)
                elif not await self._run_init(container, policy):
                    self.phase = "Failed"
                    self.publish()
                    return
            if self._stopping:
                return
            self.phase = "Running"
            for container in spec.get("containers") or []:
                self.main.append(container["name"])
                self._start(container, policy)
            self.publish()
            await asyncio.gather(*(self.supervisors[n].done.wait() for n in self.main))
            if self._stopping:
                return  # deleted: terminate() stops the rest
            failed = any(self.supervisors[n].state.exit_code not in (0, None) for n in self.main)
            await self._stop_containers(self.sidecars)
            self.phase = "Failed" if failed else "Succeeded"
            self.publish()
        except EnvError as exc:
            self.message = str(exc)
            self.phase = "Failed"
            self.publish()
        finally:
            if not self._stopping:
                for task in list(self._tasks):
                    task.cancel()

    def _spec_for(self, container: Obj, policy: str) -> ContainerSpec:
        env = resolve_env(
            self.pod, container, {**self.node.base_env, "HOSTNAME": self.name}, self.node.lookup
        )
        token_dir = str(self.node.cluster.state / "pods" / self.pod["metadata"]["uid"])
        env = dict(zip(env, redirect_token_paths(list(env.values()), token_dir), strict=True))
        argv = redirect_token_paths(command_line(container, env), token_dir)
        uid, gid = _runs_as(container, self.pod, argv[0], env)
        return ContainerSpec(
            name=container["name"],
            argv=tuple(argv),
            env=env,
            netns=self.netns,
            log_path=self.log_dir / f"{container['name']}.log",
            cwd=Path(container["workingDir"]) if container.get("workingDir") else None,
            run_as_uid=uid,
            run_as_gid=gid,
            restart_policy=cast(RestartPolicy, policy),
        )

    def _start(self, container: Obj, policy: str) -> asyncio.Event:
        """Start a container and its probes; the event is set once it has started."""
        spec = self._spec_for(container, policy)
        sup = ContainerSupervisor(
            spec, backoff_initial=self.node.backoff_initial, on_change=self.publish
        )
        self.supervisors[spec.name] = sup
        self._spawn(sup.run())
        started = self.started[spec.name] = asyncio.Event()
        self._spawn(self._probe_container(container, sup, started))
        return started

    async def _probe_container(
        self, container: Obj, sup: ContainerSupervisor, started: asyncio.Event
    ) -> None:
        """Kubernetes' order: readiness and liveness probes begin once the startup probe passed."""
        startup = container.get("startupProbe")
        if startup:
            passed = asyncio.Event()
            probe = self._probe(container, {**startup, "failureThreshold": 1_000_000})
            worker = ProbeWorker(probe, on_change=lambda ok: passed.set() if ok else None)
            task = self._spawn(worker.run())
            try:
                await passed.wait()
            finally:
                task.cancel()
        started.set()
        self.publish()
        readiness = container.get("readinessProbe")
        if readiness:
            ready = ProbeWorker(self._probe(container, readiness), on_change=self._on_ready)
            self.readiness[sup.spec.name] = ready
            self._spawn(ready.run())
        liveness = container.get("livenessProbe")
        if liveness:
            self._spawn(self._watch_liveness(sup, self._probe(container, liveness)))

    async def _run_init(self, container: Obj, policy: str) -> bool:
        self._start(container, "OnFailure" if policy != "Never" else "Never")
        sup = self.supervisors[container["name"]]
        await sup.done.wait()
        return sup.state.exit_code == 0

    async def _start_sidecar(self, container: Obj) -> None:
        """Start a native sidecar; the next container waits until its startup probe passes."""
        self.sidecars.append(container["name"])
        await self._start(container, "Always").wait()

    def _probe(self, container: Obj, probe: Obj) -> ProbeSpec:
        if "httpGet" in probe:
            http = probe["httpGet"]
            spec = ProbeSpec(
                kind="http",
                host=http.get("host") or self.ip,
                port=self._probe_port(container, http["port"]),
                path=http.get("path", "/"),
                scheme=http.get("scheme", "HTTP"),
                headers=tuple((h["name"], h["value"]) for h in http.get("httpHeaders") or []),
            )
        elif "tcpSocket" in probe:
            port = self._probe_port(container, probe["tcpSocket"]["port"])
            spec = ProbeSpec(kind="tcp", host=self.ip, port=port)
        else:
            argv = tuple(probe["exec"]["command"])
            spec = ProbeSpec(kind="exec", host=self.ip, port=0, argv=argv, netns=self.netns)
        return replace(
            spec,
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )

    @staticmethod
    def _probe_port(container: Obj, port: int | str) -> int:
        number = resolve_target_port({"spec": {"containers": [container]}}, port)
        if number is None:
            raise EnvError(f"container {container['name']}: probe port {port!r} is not declared")
        return number

    def _on_ready(self, _healthy: bool) -> None:
        self.publish()

    async def _watch_liveness(self, sup: ContainerSupervisor, probe: ProbeSpec) -> None:
        restarts = asyncio.Queue[bool]()
        worker = ProbeWorker(probe, on_change=restarts.put_nowait)
        task = self._spawn(worker.run())
        try:
            while True:
                healthy = await restarts.get()
                if not healthy and not self._stopping:
                    log.info(
                        "%s/%s: liveness probe failed, restarting %s",
                        self.namespace,
                        self.name,
                        sup.spec.name,
                    )
                    await sup.restart("liveness probe failed")
                    worker.reset()
                    readiness = self.readiness.get(sup.spec.name)
                    if readiness is not None:
                        readiness.reset()
        finally:
            task.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- stopping -------------------------------------------------------------------------

    async def _stop_containers(self, names: list[str]) -> None:
        grace = self.node.shutdown_grace
        await asyncio.gather(
            *(self.supervisors[n].stop(grace) for n in names if n in self.supervisors)
        )

    async def terminate(self) -> None:
        """Stop app containers, then sidecars (in reverse), then remove the pod's network."""
        self._stopping = True
        await self._stop_containers(self.main)
        await self._stop_containers(list(reversed(self.sidecars)))
        await self._stop_containers(list(self.supervisors))
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(pod_network.delete_pod, self.node.cluster, self.uid)


def _ts(value: float | None) -> str | None:
    if value is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
