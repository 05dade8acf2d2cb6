"""``weft check``'s Kubernetes checks over gathered data (pure), worded like ``linkerd check``.

Each function takes what the CLI read from the API server and returns results; printing and
exit codes are :mod:`weft.cli.check_results`'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from weft.cli.check_results import CheckResult, failed, meshed_pods, passed, warned
from weft.k8s.install.webhook_tls import check_serving

MIN_VERSION = (1, 29)  # native sidecars (SidecarContainers) are on by default from 1.29
MAX_CLOCK_SKEW = timedelta(minutes=5)
MIN_CERT_VALIDITY = timedelta(days=60)
TRUST_ANCHORS_ENV = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"

API_REACHABLE = "can query the Kubernetes API"
CLIENT_READY = "can initialize the client"
MIN_K8S = "is running the minimum Kubernetes API version"
NS_ABSENT = "control plane namespace does not already exist"
NO_SKEW = "no clock skew detected"
DEPLOYMENTS_READY = "control plane replica sets are ready"
NO_UNSCHEDULABLE = "no unschedulable pods"
CONFIG_EXISTS = "'weft-config' config map exists"
API_SELF_CHECK = "[kubernetes] control plane can talk to Kubernetes"
ANCHORS_MATCH = "data plane proxies certificate match CA"
DATA_PLANE_NS = "data plane namespace exists"

Obj = dict[str, Any]
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def client_ready(problem: str | None) -> CheckResult:
    """Whether a client could be built from the kubeconfig (fatal)."""
    if problem:
        return failed(CLIENT_READY, problem, fatal=True, hint="check --kubeconfig and --context")
    return passed(CLIENT_READY)


def api_reachable(problem: str | None) -> CheckResult:
    """Whether the API server answered (fatal)."""
    if problem:
        return failed(
            API_REACHABLE, problem, fatal=True, hint="is the API server up? kubectl cluster-info"
        )
    return passed(API_REACHABLE)


def minimum_version(git_version: str) -> CheckResult:
    """Whether the API server is at least :data:`MIN_VERSION`."""
    match = _VERSION.match(git_version)
    if match is None:
        return failed(MIN_K8S, f"cannot read the server version {git_version!r}")
    found = (int(match.group(1)), int(match.group(2)))
    if found < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        return failed(
            MIN_K8S,
            f"the API server is {git_version}; weft needs {wanted} or later (native sidecars)",
            hint="upgrade the cluster",
        )
    return passed(MIN_K8S, git_version)


def namespace_absent(namespace: str, exists: bool) -> CheckResult:
    """``--pre``: the control plane's namespace must not exist yet."""
    if exists:
        return failed(
            NS_ABSENT,
            f"the {namespace} namespace already exists",
            hint=f"weft is installed already? weft check -L {namespace}; or weft uninstall",
        )
    return passed(NS_ABSENT)


def can_create(kind: str, allowed: bool, reason: str) -> CheckResult:
    """``--pre``: whether the user may create ``kind`` objects."""
    description = f"can create {kind}"
    if allowed:
        return passed(description)
    return failed(
        description,
        f"not allowed to create {kind}{': ' + reason if reason else ''}",
        hint="install as a cluster administrator (kubectl auth can-i create ...)",
    )


def clock_skew(server: datetime, local: datetime) -> CheckResult:
    """Whether this machine's clock is within :data:`MAX_CLOCK_SKEW` of the API server's."""
    skew = abs(server - local)
    if skew > MAX_CLOCK_SKEW:
        return failed(
            NO_SKEW,
            f"the API server's clock differs from this machine's by {skew.total_seconds():.0f}s",
            hint="synchronise the clocks (NTP): certificates are checked against them",
        )
    return passed(NO_SKEW)


def capability(name: str, problem: str | None) -> CheckResult:
    """``--pre``: whether a pod may get ``name`` (what ``linkerd-init`` needs)."""
    description = f"has {name} capability"
    if problem:
        return failed(
            description,
            f"a pod asking for {name} is refused: {problem}",
            hint="allow NET_ADMIN and NET_RAW for meshed namespaces (Pod Security: privileged)",
        )
    return passed(description)


def no_existing(kind: str, names: Sequence[str]) -> CheckResult:
    """``--pre``: no object of ``kind`` left by an earlier install."""
    description = f"no {kind} exist"
    if names:
        return failed(
            description,
            f"{kind} exist: {', '.join(sorted(names))}",
            hint="remove the earlier install: weft uninstall | kubectl delete -f -",
        )
    return passed(description)


def objects_exist(kind: str, expected: Iterable[str], found: Iterable[str]) -> CheckResult:
    """Whether every ``kind`` object the control plane needs exists."""
    description = f"control plane {kind} exist"
    missing = sorted(set(expected) - set(found))
    if missing:
        return failed(
            description,
            f"missing {kind}: {', '.join(missing)}",
            hint="re-apply the control plane: weft upgrade | kubectl apply -f -",
        )
    return passed(description)


def config_exists(problem: str | None) -> CheckResult:
    """Whether the install config can be read (fatal: the other checks need it)."""
    if problem:
        return failed(
            CONFIG_EXISTS,
            problem,
            fatal=True,
            hint="install weft: weft install | kubectl apply -f -",
        )
    return passed(CONFIG_EXISTS)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def deployments_ready(deployments: Sequence[Obj]) -> CheckResult:
    """Whether every control-plane Deployment has all its replicas ready (and some)."""
    problems = []
    for deployment in sorted(deployments, key=lambda d: str(_meta(d).get("name"))):
        name = str(_meta(deployment).get("name"))
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        wanted = _int(spec.get("replicas", 1))
        ready = _int(status.get("readyReplicas"))
        if wanted == 0:
            problems.append(f"* {name} is scaled to zero")
        elif ready < wanted:
            problems.append(f"* {name}: {ready}/{wanted} replicas ready")
    if not deployments:
        problems.append("no control plane Deployments found")
    if problems:
        return failed(
            DEPLOYMENTS_READY,
            "\n".join(problems),
            hint="kubectl -n <namespace> get deploy,pods; kubectl scale to 1+ replicas",
        )
    return passed(DEPLOYMENTS_READY, f"{len(deployments)} deployments ready")


def _meta(obj: Obj) -> Obj:
    return dict(obj.get("metadata") or {})


def no_unschedulable(pods: Sequence[Obj]) -> CheckResult:
    """Whether no control-plane pod is stuck unschedulable."""
    stuck = []
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if (
                isinstance(condition, dict)
                and condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                stuck.append(f"* {_meta(pod).get('name')}: {condition.get('message', '')}")
    if stuck:
        return failed(NO_UNSCHEDULABLE, "\n".join(stuck), hint="kubectl describe pod <name>")
    return passed(NO_UNSCHEDULABLE)


@dataclass(frozen=True)
class WebhookState:
    """A webhook as installed: its Secret's certificate and its configuration's caBundle."""

    component: str
    service: str
    namespace: str
    cert_pem: bytes | None
    ca_bundle: str | None
    problem: str = ""


def webhook_results(state: WebhookState, now: datetime) -> list[CheckResult]:
    """The webhook's certificate is valid, for at least 60 more days, and trusted by the
    caBundle the API server uses."""
    valid = f"{state.component} webhook has valid cert"
    configured = f"{state.component} webhook is configured with the right caBundle"
    lasting = f"{state.component} cert is valid for at least 60 days"
    hint = "re-render the control plane: weft upgrade | kubectl apply -f -"
    if state.problem or state.cert_pem is None or state.ca_bundle is None:
        detail = state.problem or "the certificate or the webhook configuration is missing"
        return [failed(valid, detail, hint=hint)]
    from weft.identity.certs import CertError, load_certs_pem

    try:
        leaf = load_certs_pem(state.cert_pem, f"{state.component} certificate")[0]
    except CertError as exc:
        return [failed(valid, str(exc), hint=hint)]
    out = [passed(valid)]
    problem = check_serving(state.cert_pem, state.ca_bundle, state.service, state.namespace, now)
    out.append(failed(configured, problem, hint=hint) if problem else passed(configured))
    left = leaf.not_valid_after_utc - now
    if left < MIN_CERT_VALIDITY:
        out.append(warned(lasting, f"it expires in {left.days} days"))
    else:
        out.append(passed(lasting))
    return out


def self_check(denied: Sequence[str]) -> CheckResult:
    """Whether every component may do what it needs in the API (``denied``: what it may not)."""
    if denied:
        return failed(
            API_SELF_CHECK,
            "\n".join(["the API server refuses:", *(f"* {d}" for d in denied)]),
            hint="re-apply the control plane's RBAC: weft upgrade | kubectl apply -f -",
        )
    return passed(API_SELF_CHECK)


def data_plane_namespace(namespace: str, exists: bool) -> CheckResult:
    """Whether the namespace ``--proxy -n`` names exists."""
    if not exists:
        return failed(DATA_PLANE_NS, f"the namespace {namespace} does not exist", fatal=True)
    return passed(DATA_PLANE_NS)


def _proxy_anchors(pod: Obj) -> str | None:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if isinstance(container, dict) and container.get("name") == "linkerd-proxy":
            for env in container.get("env") or []:
                if isinstance(env, dict) and env.get("name") == TRUST_ANCHORS_ENV:
                    return str(env.get("value") or "")
    return None


def anchors_match(pods: Sequence[Obj], anchors_pem: str) -> CheckResult:
    """Whether every meshed pod's proxy trusts the installed anchors (its environment)."""
    stale = []
    for pod in meshed_pods(pods):
        found = _proxy_anchors(pod)
        if found is not None and found.strip() != anchors_pem.strip():
            meta = _meta(pod)
            stale.append(f"* {meta.get('namespace')}/{meta.get('name')}")
    if stale:
        return failed(
            ANCHORS_MATCH,
            "\n".join(["these pods' proxies trust other anchors:", *stale]),
            hint="restart them so they are injected again: kubectl rollout restart ...",
        )
    return passed(ANCHORS_MATCH)
