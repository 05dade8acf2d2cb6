"""``weft check``'s categories, its checks over gathered data, and how their results are printed
(all pure)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography import x509

from weft.identity.health import Finding, check_leaf, check_trust

Status = Literal["ok", "warning", "error"]
# Linkerd's glyphs; the failure cross (U+00D7) is escaped, as ruff flags it as confusable.
GLYPHS: dict[Status, str] = {"ok": "√", "warning": "‼", "error": "\u00d7"}
DETAIL_INDENT = "    "

AGENT_REACHABLE = "the node agent is reachable"
CONTROL_PLANE_READY = "the control plane pods are ready"
CONFIG_VALID = "certificate config is valid"
DATA_PLANE_MATCH = "data plane proxies certificate match CA"
SELF_CHECK = "control plane self-check"
PROXIES_READY = "data plane proxies are ready"
PROXY_METRICS = "data plane proxy metrics are present in Prometheus"
PROXY_VERSIONS = "data plane and cli versions match"
PROXY_VERSION_ANNOTATION = "linkerd.io/proxy-version"

Obj = dict[str, Any]


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; a failed ``fatal`` check stops the checks after it."""

    description: str
    status: Status
    detail: str = ""
    fatal: bool = False
    hint: str = ""

    @property
    def failed(self) -> bool:
        """Whether the check failed (warnings do not)."""
        return self.status == "error"


# A category's checks; it takes the environment its command made (local or Kubernetes).
Run = Callable[[Any], AsyncGenerator[CheckResult, None]]


@dataclass(frozen=True)
class Category:
    """A named section of checks."""

    name: str
    run: Run


def passed(description: str, detail: str = "") -> CheckResult:
    """A check that passed."""
    return CheckResult(description, "ok", detail)


def warned(description: str, detail: str) -> CheckResult:
    """A check that passed with a warning."""
    return CheckResult(description, "warning", detail)


def failed(description: str, detail: str, *, fatal: bool = False, hint: str = "") -> CheckResult:
    """A check that failed; ``hint`` says what to do about it."""
    return CheckResult(description, "error", detail, fatal, hint)


def from_finding(finding: Finding) -> CheckResult:
    """A result from one of ``weft.identity.health``'s findings."""
    if not finding.ok:
        return failed(finding.name, finding.detail)
    if finding.warning:
        return warned(finding.name, finding.detail)
    return passed(finding.name, finding.detail)


# -- printing ----------------------------------------------------------------------------


def header(category: str) -> list[str]:
    """A category's name, underlined."""
    return [category, "-" * len(category)]


def render(result: CheckResult) -> list[str]:
    """``<glyph> <description>``, then the detail and hint of a warning or failure, indented."""
    lines = [f"{GLYPHS[result.status]} {result.description}"]
    if result.status != "ok":
        if result.detail:
            lines += [DETAIL_INDENT + line for line in result.detail.splitlines()]
        if result.hint:
            lines.append(f"{DETAIL_INDENT}hint: {result.hint}")
    return lines


def summary(results: Sequence[CheckResult]) -> str:
    """The last line: √ when nothing failed, the failure glyph otherwise."""
    return f"Status check results are {GLYPHS['error' if exit_code(results) else 'ok']}"


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 if any check failed, else 0 (warnings included)."""
    return 1 if any(r.failed for r in results) else 0


_JSON_RESULT: dict[Status, str] = {"ok": "success", "warning": "warning", "error": "error"}


class Report:
    """Collects results category by category and says which lines to print for each."""

    def __init__(self) -> None:
        self.results: list[CheckResult] = []
        self._category: str | None = None
        self.categories: list[tuple[str, list[CheckResult]]] = []

    def add(self, category: str, result: CheckResult) -> list[str]:
        """Record ``result``; returns its lines, preceded by the header of a new category."""
        lines: list[str] = []
        if category != self._category:
            if self._category is not None:
                lines.append("")
            lines += header(category)
            self._category = category
            self.categories.append((category, []))
        self.results.append(result)
        self.categories[-1][1].append(result)
        return lines + render(result)

    def to_json(self) -> Obj:
        """Linkerd's ``check -o json``: ``{success, categories: [{categoryName, checks}]}``."""
        return {
            "success": not exit_code(self.results),
            "categories": [
                {
                    "categoryName": name,
                    "checks": [
                        {
                            "description": r.description,
                            "hint": r.hint,
                            "error": r.detail if r.status != "ok" else "",
                            "result": _JSON_RESULT[r.status],
                        }
                        for r in results
                    ],
                }
                for name, results in self.categories
            ],
        }

    @property
    def stopped(self) -> bool:
        """Whether a fatal check failed, so no further checks should run."""
        return any(r.failed and r.fatal for r in self.results)

    def finish(self) -> list[str]:
        """The closing lines."""
        return ["", summary(self.results)]

    @property
    def exit_code(self) -> int:
        """The command's exit status."""
        return exit_code(self.results)


# -- weft-local-cluster -------------------------------------------------------------------


def agent_reachable(problem: str | None) -> CheckResult:
    """Whether the agent answered; nothing else can be checked when it did not."""
    if problem:
        return failed(AGENT_REACHABLE, problem, fatal=True)
    return passed(AGENT_REACHABLE)


def pod_ready(pod: Obj) -> bool:
    """Whether the pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _pod_state(pod: Obj) -> str:
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return f"{pod['metadata']['name']} ({phase}, not ready)"


def control_plane_ready(pods: Sequence[Obj], namespace: str, waited: float) -> CheckResult:
    """Whether every live pod of the control plane's namespace is Ready (and there is one)."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return failed(CONTROL_PLANE_READY, f"no pods in namespace {namespace} after {waited:.0f}s")
    unready = [_pod_state(p) for p in live if not pod_ready(p)]
    if unready:
        return failed(
            CONTROL_PLANE_READY,
            f"not ready after {waited:.0f}s in namespace {namespace}: " + ", ".join(unready),
        )
    return passed(CONTROL_PLANE_READY, f"{len(live)} pods ready")


# -- weft-identity ------------------------------------------------------------------------


def identity_results(
    anchors: Sequence[x509.Certificate],
    issuer_chain: Sequence[x509.Certificate],
    problem: str | None,
    *,
    now: datetime,
) -> list[CheckResult]:
    """The trust checks; ``problem`` says why the files do not make a valid configuration.

    Without parsed anchors and issuer nothing more can be checked, so that failure is fatal.
    """
    if not anchors or not issuer_chain:
        return [failed(CONFIG_VALID, problem or "no trust anchors or issuer found", fatal=True)]
    config = failed(CONFIG_VALID, problem) if problem else passed(CONFIG_VALID)
    findings = check_trust(anchors, issuer_chain[0], now=now)
    return [config, *(from_finding(f) for f in findings)]


# -- weft-identity-data-plane -------------------------------------------------------------


@dataclass(frozen=True)
class ProxyCert:
    """What probing one meshed pod's proxy gave: the chain it presented (leaf first) or why not."""

    pod: str
    chain: tuple[x509.Certificate, ...] = ()
    error: str = ""


def data_plane_certificates(
    proxies: Sequence[ProxyCert],
    anchors: Sequence[x509.Certificate],
    issuer_chain: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> CheckResult:
    """Whether every proxy's certificate chains to the current anchors.

    A leaf is checked with what its proxy presented plus the current issuer as intermediates,
    so leaves from before an issuer renewal (same anchors) still pass.
    """
    mismatched: list[str] = []
    unread: list[str] = []
    for proxy in sorted(proxies, key=lambda p: p.pod):
        if not proxy.chain:
            unread.append(f"* {proxy.pod}: {proxy.error or 'no certificate presented'}")
            continue
        leaf, *presented = proxy.chain
        finding = check_leaf(leaf, [*presented, *issuer_chain], anchors, now=now)
        if not finding.ok:
            mismatched.append(f"* {proxy.pod}: {finding.detail}")
    unread_text = ["could not read the certificate of:", *unread] if unread else []
    if mismatched:
        return failed(
            DATA_PLANE_MATCH,
            "\n".join(
                [
                    "these pods' certificates do not chain to the trust anchors "
                    "(restart them once the trust is fixed):",
                    *mismatched,
                    *unread_text,
                ]
            ),
        )
    if unread:
        return warned(DATA_PLANE_MATCH, "\n".join(unread_text))
    return passed(DATA_PLANE_MATCH, f"{len(proxies)} proxies checked")


# -- weft-api -------------------------------------------------------------------------------


def self_check(answer: Obj | None, problem: str | None) -> list[CheckResult]:
    """The metrics API's SelfCheck, one result per subsystem (``[prometheus] ...``)."""
    hint = (
        "see `weft cluster logs <weft-metrics-api pod> -n weft` (`weft cluster get pods -n weft`)"
    )
    if problem is not None or answer is None:
        return [failed(SELF_CHECK, problem or "no answer", hint=hint)]
    checks = answer.get("results") or []
    if not checks:
        return [failed(SELF_CHECK, "the metrics API reported no checks", hint=hint)]
    out = []
    for check in checks:
        name = f"[{check.get('subsystem', '?')}] {check.get('checkDescription', '')}".strip()
        if check.get("status") == "OK":
            out.append(passed(name))
        else:
            detail = str(check.get("friendlyMessageToUser") or check.get("status") or "failed")
            out.append(failed(name, detail, hint=hint))
    return out


# -- weft-data-plane --------------------------------------------------------------------------


def _proxy_status(pod: Obj) -> Obj | None:
    status = pod.get("status") or {}
    entries = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return next((c for c in entries if c.get("name") == "linkerd-proxy"), None)


def _ref(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def meshed_pods(pods: Sequence[Obj]) -> list[Obj]:
    """Live pods that have a ``linkerd-proxy`` container and are meant to be running."""
    found = []
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        phase = (pod.get("status") or {}).get("phase")
        if pod["metadata"].get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
            continue
        if any(c.get("name") == "linkerd-proxy" for c in containers):
            found.append(pod)
    return sorted(found, key=_ref)


def proxies_ready(pods: Sequence[Obj], waited: float) -> CheckResult:
    """Whether every meshed pod's proxy container is ready."""
    meshed = meshed_pods(pods)
    if not meshed:
        return failed(
            PROXIES_READY,
            "no meshed pods found",
            hint="mesh a workload: weft inject FILE | weft cluster apply -f -",
        )
    unready = []
    for pod in meshed:
        status = _proxy_status(pod)
        if status is None or not status.get("ready"):
            restarts = (status or {}).get("restartCount", 0)
            unready.append(f"* {_ref(pod)} (restarts: {restarts})")
    if unready:
        return failed(
            PROXIES_READY,
            "\n".join([f"not ready after {waited:.0f}s:", *unready]),
            hint="see `weft cluster logs POD -n NS -c linkerd-proxy`",
        )
    return passed(PROXIES_READY, f"{len(meshed)} proxies ready")


def proxy_metrics(pods: Sequence[Obj], scraped: set[tuple[str, str]], waited: float) -> CheckResult:
    """Whether Prometheus scrapes every meshed pod's proxy (``scraped``: (namespace, pod) whose
    ``up`` is 1)."""
    missing = [
        f"* {_ref(p)}"
        for p in meshed_pods(pods)
        if (p["metadata"].get("namespace", "default"), p["metadata"]["name"]) not in scraped
    ]
    if missing:
        return failed(
            PROXY_METRICS,
            "\n".join([f"not scraped by Prometheus after {waited:.0f}s:", *missing]),
            hint="see `weft cluster logs <weft-prometheus pod> -n weft -c prometheus`",
        )
    return passed(PROXY_METRICS)


def proxy_versions(pods: Sequence[Obj], cli_version: str) -> CheckResult:
    """Whether every meshed pod runs the CLI's proxy version (its injection annotation)."""
    other = []
    for pod in meshed_pods(pods):
        version = (pod["metadata"].get("annotations") or {}).get(PROXY_VERSION_ANNOTATION)
        if version != cli_version:
            other.append(f"* {_ref(pod)} runs {version or 'an unknown version'}")
    if other:
        return failed(
            PROXY_VERSIONS,
            "\n".join([f"the CLI is {cli_version}; these proxies are not:", *other]),
            hint="restart them to re-inject: weft cluster delete pod NAME -n NS",
        )
    return passed(PROXY_VERSIONS)
