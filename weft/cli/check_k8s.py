"""``weft check`` against a Kubernetes cluster: categories modelled on ``linkerd check``.

``--pre``: the API answers, its version, the permissions an install needs, NET_ADMIN/NET_RAW
for ``linkerd-init``, no earlier install. Default: the control plane's objects exist, its
Deployments and pods are ready, its identity trust is valid, its webhooks' certificates are
trusted by their ``caBundle``, and its service accounts may do what they need (the API
self-check). ``--proxy``: the data plane's proxies are ready, trust the installed anchors and
run this CLI's version. Each category gathers from the API and judges with pure functions
(:mod:`weft.k8s.check_results`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from weft.cli import check_results as results
from weft.cli.check_results import Category, CheckResult
from weft.identity.certs import CertError, load_certs_pem
from weft.inject.config import installed_version
from weft.k8s import check_results as k8s
from weft.k8s.client import KubeClient, KubeError, default_kubeconfig
from weft.k8s.install import components as c
from weft.k8s.install.render import (
    CONFIG_MAP,
    CONTROL_PLANE_NS_LABEL,
    INJECTOR_WEBHOOK,
    ISSUER_SECRET,
    TRUST_ROOTS,
    VALIDATOR_WEBHOOK,
    expected_names,
    webhook_secret,
)
from weft.k8s.install.values import InstallValues, ValuesError
from weft.k8s.kinds import api_kind

Obj = dict[str, Any]
POLL_INTERVAL = 0.5
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
IDENTITY_HINT = (
    "install trust anchors and an issuer that chain and last: weft install "
    "--identity-trust-anchors-file ... (or rotate the weft-identity-issuer Secret)"
)

# What an install creates, as (description, API group, resource, namespaced).
INSTALL_PERMISSIONS = (
    ("Namespaces", "", "namespaces", False),
    ("ClusterRoles", "rbac.authorization.k8s.io", "clusterroles", False),
    ("ClusterRoleBindings", "rbac.authorization.k8s.io", "clusterrolebindings", False),
    ("CustomResourceDefinitions", "apiextensions.k8s.io", "customresourcedefinitions", False),
    (
        "MutatingWebhookConfigurations",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        False,
    ),
    (
        "ValidatingWebhookConfigurations",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        False,
    ),
    ("ServiceAccounts", "", "serviceaccounts", True),
    ("Services", "", "services", True),
    ("Deployments", "apps", "deployments", True),
    ("ConfigMaps", "", "configmaps", True),
    ("Secrets", "", "secrets", True),
)
GLOBAL_KINDS = (
    ("ClusterRoles", "ClusterRole"),
    ("ClusterRoleBindings", "ClusterRoleBinding"),
    ("CustomResourceDefinitions", "CustomResourceDefinition"),
    ("MutatingWebhookConfigurations", "MutatingWebhookConfiguration"),
    ("ValidatingWebhookConfigurations", "ValidatingWebhookConfiguration"),
)


@dataclass
class KubeCheckEnv:
    """What the Kubernetes checks share."""

    kubeconfig: str | None
    context: str | None
    namespace: str
    wait: float
    data_namespace: str | None = None
    client: KubeClient | None = None
    values: InstallValues | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def api(self) -> KubeClient:
        """The client (the kubernetes-api checks, which are fatal, made it)."""
        if self.client is None:
            raise RuntimeError("the kubernetes-api checks must run first")
        return self.client

    def installed(self) -> InstallValues:
        """The install values (the weft-config check, which is fatal, read them)."""
        if self.values is None:
            raise RuntimeError("the weft-config check must run first")
        return self.values


def _hinted(result: CheckResult, hint: str) -> CheckResult:
    """A result shared with the local checks, with a Kubernetes hint when it failed."""
    return dataclasses.replace(result, hint=hint) if result.status != "ok" else result


async def _labelled(client: KubeClient, kind: str, namespace: str) -> list[str]:
    listed = await client.get(
        api_kind(kind).path(), [("labelSelector", f"{CONTROL_PLANE_NS_LABEL}={namespace}")]
    )
    return [str(item["metadata"]["name"]) for item in listed.get("items") or []]


async def _exists(client: KubeClient, kind: str, namespace: str | None, name: str) -> bool:
    try:
        await client.get(api_kind(kind).path(namespace, name))
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- kubernetes-api, kubernetes-version --------------------------------------------------


async def kubernetes_api(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """A client can be made and the API answers."""
    try:
        client = await KubeClient.connect(env.kubeconfig or default_kubeconfig(), env.context)
    except KubeError as exc:
        yield k8s.client_ready(str(exc))
        return
    env.stack.push_async_callback(client.close)
    yield k8s.client_ready(None)
    try:
        await client.get("/api/v1/namespaces", [("limit", "1")])
    except KubeError as exc:
        yield k8s.api_reachable(str(exc))
        return
    env.client = client
    yield k8s.api_reachable(None)


async def kubernetes_version(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The API server is recent enough."""
    try:
        info, _ = await env.api().version()
    except KubeError as exc:
        yield results.failed(k8s.MIN_K8S, str(exc))
        return
    yield k8s.minimum_version(str(info.get("gitVersion", "")))


# -- --pre ---------------------------------------------------------------------------------


async def pre_setup(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The namespace is free, the user may create what an install creates, clocks agree."""
    client = env.api()
    yield k8s.namespace_absent(
        env.namespace, await _exists(client, "Namespace", None, env.namespace)
    )
    for description, group, resource, namespaced in INSTALL_PERMISSIONS:
        attributes: Obj = {"verb": "create", "group": group, "resource": resource}
        if namespaced:
            attributes["namespace"] = env.namespace
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        status = (await client.request("POST", SSAR, body=body)).get("status") or {}
        yield k8s.can_create(
            description, bool(status.get("allowed")), str(status.get("reason") or "")
        )
    _, server_time = await client.version()
    yield k8s.clock_skew(server_time or datetime.now(UTC), datetime.now(UTC))


def _probe_pod(capability: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "weft-check-", "labels": {"weft.io/check": "pre"}},
        "spec": {
            "containers": [
                {
                    "name": "linkerd-init",
                    "image": "weft",
                    "securityContext": {"capabilities": {"add": [capability]}},
                }
            ]
        },
    }


async def pre_capability(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """A pod may get NET_ADMIN and NET_RAW (a server-side dry run, admission included)."""
    client = env.api()
    for capability in ("NET_ADMIN", "NET_RAW"):
        problem = None
        try:
            await client.request(
                "POST",
                api_kind("Pod").path("default"),
                query=[("dryRun", "All")],
                body=_probe_pod(capability),
            )
        except KubeError as exc:
            problem = str(exc)
        yield k8s.capability(capability, problem)


async def pre_global(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """No cluster-wide objects of an earlier install are left."""
    for plural, kind in GLOBAL_KINDS:
        yield k8s.no_existing(plural, await _labelled(env.api(), kind, env.namespace))


# -- weft-config ---------------------------------------------------------------------------


async def config(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The install config is readable, and every object of the control plane exists."""
    client = env.api()
    try:
        found = await client.get(api_kind("ConfigMap").path(env.namespace, CONFIG_MAP))
        env.values = InstallValues.from_json(str((found.get("data") or {}).get(c.CONFIG_KEY)))
    except (KubeError, ValuesError) as exc:
        yield k8s.config_exists(f"ConfigMap {env.namespace}/{CONFIG_MAP}: {exc}")
        return
    yield k8s.config_exists(None)
    expected = expected_names(env.values)
    for kind, names in expected.items():
        if kind == "Deployment":
            continue
        if kind == "ServiceAccount":
            listed = await client.get(api_kind(kind).path(env.namespace))
            present = [str(i["metadata"]["name"]) for i in listed.get("items") or []]
        elif kind == "Namespace":
            exists = await _exists(client, kind, None, env.namespace)
            present = [env.namespace] if exists else []
        else:
            present = await _labelled(client, kind, env.namespace)
        yield k8s.objects_exist(f"{kind}s", names, present)


# -- weft-existence ------------------------------------------------------------------------


async def existence(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The control plane's Deployments and pods are ready (waiting up to ``--wait``)."""
    client = env.api()
    names = expected_names(env.installed())["Deployment"]
    start = time.monotonic()
    deadline = start + env.wait
    while True:
        listed = await client.get(api_kind("Deployment").path(env.namespace))
        deployments = [d for d in listed.get("items") or [] if d["metadata"]["name"] in names]
        pods = (await client.get(api_kind("Pod").path(env.namespace))).get("items") or []
        ready = k8s.deployments_ready(deployments)
        pods_ready = results.control_plane_ready(pods, env.namespace, time.monotonic() - start)
        if not (ready.failed or pods_ready.failed) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    yield ready
    yield k8s.no_unschedulable(pods)
    yield _hinted(pods_ready, f"kubectl -n {env.namespace} describe pods; kubectl logs ...")


# -- weft-identity -------------------------------------------------------------------------


async def identity(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The trust anchors (ConfigMap) and issuer (Secret) are valid and chained."""
    client = env.api()
    try:
        roots = await client.get(api_kind("ConfigMap").path(env.namespace, TRUST_ROOTS))
        issuer = await client.get(api_kind("Secret").path(env.namespace, ISSUER_SECRET))
        anchors = load_certs_pem(
            str((roots.get("data") or {}).get(c.TRUST_ROOTS_KEY, "")).encode(), "trust anchors"
        )
        chain = load_certs_pem(
            base64.b64decode((issuer.get("data") or {}).get(c.ISSUER_CERT_KEY, "")),
            "issuer certificate",
        )
    except (KubeError, CertError, ValueError) as exc:
        for result in results.identity_results([], [], str(exc), now=datetime.now(UTC)):
            yield _hinted(result, IDENTITY_HINT)
        return
    for result in results.identity_results(anchors, chain, None, now=datetime.now(UTC)):
        yield _hinted(result, IDENTITY_HINT)


# -- weft-webhooks-and-apisvc-tls ------------------------------------------------------------


async def webhooks(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """Each webhook's certificate is valid and trusted by its configuration's caBundle."""
    client = env.api()
    configs = {"mutating": INJECTOR_WEBHOOK, "validating": VALIDATOR_WEBHOOK}
    kinds = {
        "mutating": "MutatingWebhookConfiguration",
        "validating": "ValidatingWebhookConfiguration",
    }
    for comp in c.COMPONENTS:
        if comp.webhook is None:
            continue
        cert: bytes | None = None
        bundle: str | None = None
        problem = ""
        try:
            secret = await client.get(
                api_kind("Secret").path(env.namespace, webhook_secret(comp.name))
            )
            cert = base64.b64decode((secret.get("data") or {}).get("tls.crt", ""))
            hook = await client.get(api_kind(kinds[comp.webhook]).path(name=configs[comp.webhook]))
            bundle = str(
                ((hook.get("webhooks") or [{}])[0].get("clientConfig") or {}).get("caBundle", "")
            )
        except (KubeError, ValueError) as exc:
            problem = str(exc)
        state = k8s.WebhookState(
            comp.name, comp.resource_name, env.namespace, cert, bundle, problem
        )
        for result in k8s.webhook_results(state, datetime.now(UTC)):
            yield result


# -- weft-api ------------------------------------------------------------------------------


async def api_self_check(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """Every component's service account may do what its component needs (SubjectAccessReview
    of each rule, as the API server would judge the component's own requests)."""
    client = env.api()
    denied = []
    for comp in c.COMPONENTS:
        user = f"system:serviceaccount:{env.namespace}:{comp.resource_name}"
        for rule in comp.rules:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        body = {
                            "apiVersion": "authorization.k8s.io/v1",
                            "kind": "SubjectAccessReview",
                            "spec": {
                                "user": user,
                                "groups": [
                                    "system:serviceaccounts",
                                    f"system:serviceaccounts:{env.namespace}",
                                ],
                                "resourceAttributes": {
                                    "verb": verb,
                                    "group": group,
                                    "resource": resource,
                                },
                            },
                        }
                        answer = await client.request("POST", SAR, body=body)
                        if not (answer.get("status") or {}).get("allowed"):
                            what = f"{resource}.{group}" if group else resource
                            denied.append(f"{comp.resource_name} cannot {verb} {what}")
    yield k8s.self_check(denied)


# -- weft-data-plane -------------------------------------------------------------------------


async def data_plane(env: KubeCheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The meshed pods' proxies are ready, trust the installed anchors, run this version."""
    client = env.api()
    if env.data_namespace is not None:
        exists = await _exists(client, "Namespace", None, env.data_namespace)
        yield k8s.data_plane_namespace(env.data_namespace, exists)
        if not exists:
            return
    start = time.monotonic()
    deadline = start + env.wait
    while True:
        pods = (await client.get(api_kind("Pod").path(env.data_namespace))).get("items") or []
        ready = results.proxies_ready(pods, time.monotonic() - start)
        if not ready.failed or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    yield _hinted(ready, "kubectl logs <pod> -n <namespace> -c linkerd-proxy")
    roots = await client.get(api_kind("ConfigMap").path(env.namespace, TRUST_ROOTS))
    yield k8s.anchors_match(pods, str((roots.get("data") or {}).get(c.TRUST_ROOTS_KEY, "")))
    yield _hinted(
        results.proxy_versions(pods, installed_version()),
        "re-inject them with this version: kubectl rollout restart deployment -n <namespace>",
    )


KUBERNETES_API = Category("kubernetes-api", kubernetes_api)
KUBERNETES_VERSION = Category("kubernetes-version", kubernetes_version)
PRE_SETUP = Category("pre-kubernetes-setup", pre_setup)
PRE_CAPABILITY = Category("pre-kubernetes-capability", pre_capability)
PRE_GLOBAL = Category("pre-weft-global-resources", pre_global)
CONFIG = Category("weft-config", config)
EXISTENCE = Category("weft-existence", existence)
IDENTITY = Category("weft-identity", identity)
WEBHOOKS = Category("weft-webhooks-and-apisvc-tls", webhooks)
API = Category("weft-api", api_self_check)
DATA_PLANE = Category("weft-data-plane", data_plane)


def categories(pre: bool, proxy: bool) -> list[Category]:
    """The sections ``weft check`` runs against Kubernetes, in order."""
    chosen = [KUBERNETES_API, KUBERNETES_VERSION]
    if pre:
        return [*chosen, PRE_SETUP, PRE_CAPABILITY, PRE_GLOBAL]
    chosen += [CONFIG, EXISTENCE, IDENTITY, WEBHOOKS, API]
    return [*chosen, DATA_PLANE] if proxy else chosen
