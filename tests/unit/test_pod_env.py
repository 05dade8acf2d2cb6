"""A container's environment and command line, resolved the way the kubelet does it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from weft.local.pod_env import EnvError, command_line, expand, field_value, resolve_env

Obj = dict[str, Any]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


POD: Obj = {
    "metadata": {
        "name": "web-1",
        "namespace": "shop",
        "uid": "1111-2222",
        "labels": {"app": "web", "app.kubernetes.io/name": "frontend"},
        "annotations": {"note": "hello"},
    },
    "spec": {"serviceAccountName": "web-sa", "nodeName": "node-1"},
    "status": {"podIP": "10.244.0.7", "hostIP": "10.244.0.1"},
}

OBJECTS: dict[tuple[str, str, str], Obj] = {
    ("ConfigMap", "shop", "settings"): {"data": {"mode": "fast", "level": "3"}},
    ("Secret", "shop", "creds"): {
        "data": {"user": b64("admin"), "both": b64("from-data")},
        "stringData": {"password": "s3cret", "both": "from-stringData"},
    },
    ("ConfigMap", "other", "settings"): {"data": {"mode": "wrong namespace"}},
}


def lookup(kind: str, namespace: str, name: str) -> Obj | None:
    return OBJECTS.get((kind, namespace, name))


def env_of(*entries: Obj, base: dict[str, str] | None = None, pod: Obj = POD) -> dict[str, str]:
    return resolve_env(pod, {"name": "app", "env": list(entries)}, base or {}, lookup)


def value(name: str, text: str) -> Obj:
    return {"name": name, "value": text}


def from_source(name: str, **source: Any) -> Obj:
    return {"name": name, "valueFrom": source}


# -- expansion ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$", "$"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("a $ b", "a $ b"),
        ("$()", "$()"),
        ("$(DOTTED.NAME-1)", "ok"),
    ],
)
def test_expand_replaces_known_references_and_keeps_the_rest(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2", "DOTTED.NAME-1": "ok"}) == expected


def test_expansion_happens_once() -> None:
    assert expand("$(A)", {"A": "$(B)", "B": "deep"}) == "$(B)"


# -- env order ----------------------------------------------------------------------------


def test_env_starts_from_the_base_and_keeps_definition_order() -> None:
    env = env_of(value("B", "2"), value("A", "1"), base={"PATH": "/bin"})
    assert list(env.items()) == [("PATH", "/bin"), ("B", "2"), ("A", "1")]


def test_a_value_may_refer_to_earlier_variables_and_the_base() -> None:
    env = env_of(
        value("HOST", "db"),
        value("URL", "postgres://$(HOST):5432/$(NAME)"),
        value("NAME", "shop"),
        value("P", "$(PATH):/opt"),
        base={"PATH": "/bin"},
    )
    assert env["URL"] == "postgres://db:5432/$(NAME)"
    assert env["P"] == "/bin:/opt"


def test_a_later_entry_overrides_an_earlier_one_and_the_base() -> None:
    env = env_of(value("A", "1"), value("A", "$(A)2"), value("PATH", "/x"), base={"PATH": "/bin"})
    assert env == {"PATH": "/x", "A": "12"}


def test_a_missing_value_is_empty() -> None:
    assert env_of({"name": "EMPTY"}) == {"EMPTY": ""}


def test_resolving_does_not_change_the_base() -> None:
    base = {"PATH": "/bin"}
    env_of(value("PATH", "/x"), base=base)
    assert base == {"PATH": "/bin"}


# -- fieldRef -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "web-1"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "1111-2222"),
        ("spec.serviceAccountName", "web-sa"),
        ("spec.nodeName", "node-1"),
        ("status.podIP", "10.244.0.7"),
        ("status.hostIP", "10.244.0.1"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['app.kubernetes.io/name']", "frontend"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['note']", "hello"),
    ],
)
def test_field_refs_read_the_pod(path: str, expected: str) -> None:
    assert env_of(from_source("V", fieldRef={"fieldPath": path})) == {"V": expected}


def test_field_refs_of_a_pod_without_status_or_service_account() -> None:
    pod: Obj = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}
    assert field_value(pod, "spec.serviceAccountName") == "default"
    assert field_value(pod, "status.podIP") == ""
    assert field_value(pod, "spec.nodeName") == ""
    assert field_value(pod, "metadata.labels['app']") == ""


@pytest.mark.parametrize("path", ["metadata.labels", "status.phase", "metadata.labels[app]"])
def test_unsupported_field_paths_are_errors(path: str) -> None:
    with pytest.raises(EnvError, match=r"unsupported fieldRef\.fieldPath"):
        env_of(from_source("V", fieldRef={"fieldPath": path}))


def test_values_from_sources_are_not_expanded() -> None:
    pod = {**POD, "metadata": {**POD["metadata"], "name": "$(A)"}}
    env = env_of(
        value("A", "1"), from_source("N", fieldRef={"fieldPath": "metadata.name"}), pod=pod
    )
    assert env["N"] == "$(A)"


# -- ConfigMaps and Secrets ---------------------------------------------------------------


def test_config_map_keys_are_read_from_the_pods_namespace() -> None:
    env = env_of(from_source("MODE", configMapKeyRef={"name": "settings", "key": "mode"}))
    assert env == {"MODE": "fast"}


def test_secret_keys_are_decoded_from_data_or_taken_from_string_data() -> None:
    env = env_of(
        from_source("USER", secretKeyRef={"name": "creds", "key": "user"}),
        from_source("PASSWORD", secretKeyRef={"name": "creds", "key": "password"}),
        from_source("BOTH", secretKeyRef={"name": "creds", "key": "both"}),
    )
    assert env == {"USER": "admin", "PASSWORD": "s3cret", "BOTH": "from-stringData"}


def test_a_later_variable_may_refer_to_one_read_from_a_secret() -> None:
    env = env_of(
        from_source("USER", secretKeyRef={"name": "creds", "key": "user"}),
        value("GREETING", "hi $(USER)"),
    )
    assert env["GREETING"] == "hi admin"


def test_a_missing_config_map_is_an_error() -> None:
    with pytest.raises(EnvError, match=r'^configmap "absent" not found$'):
        env_of(from_source("X", configMapKeyRef={"name": "absent", "key": "k"}))


def test_a_missing_key_is_an_error() -> None:
    with pytest.raises(EnvError, match=r'^key "nope" not found in secret "creds"$'):
        env_of(from_source("X", secretKeyRef={"name": "creds", "key": "nope"}))
    with pytest.raises(EnvError, match=r'^key "nope" not found in configmap "settings"$'):
        env_of(from_source("X", configMapKeyRef={"name": "settings", "key": "nope"}))


def test_optional_refs_to_missing_objects_or_keys_leave_the_variable_unset() -> None:
    env = env_of(
        value("KEEP", "base"),
        from_source("A", configMapKeyRef={"name": "absent", "key": "k", "optional": True}),
        from_source("B", secretKeyRef={"name": "creds", "key": "nope", "optional": True}),
        from_source("KEEP", secretKeyRef={"name": "absent", "key": "k", "optional": True}),
    )
    assert env == {"KEEP": "base"}


def test_an_unsupported_value_source_is_an_error() -> None:
    with pytest.raises(EnvError, match=r"env X: unsupported valueFrom \['resourceFieldRef'\]"):
        env_of(from_source("X", resourceFieldRef={"resource": "limits.cpu"}))


# -- command line -------------------------------------------------------------------------


def test_command_and_args_are_expanded() -> None:
    container = {"command": ["sh", "-c"], "args": ["echo $(GREETING) $$(HOME) $(NOPE)"]}
    assert command_line(container, {"GREETING": "hi"}) == [
        "sh",
        "-c",
        "echo hi $(HOME) $(NOPE)",
    ]


def test_args_are_optional() -> None:
    assert command_line({"command": ["serve", "--port=$(PORT)"]}, {"PORT": "80"}) == [
        "serve",
        "--port=80",
    ]


@pytest.mark.parametrize("container", [{}, {"command": []}, {"args": ["--port=80"]}])
def test_a_container_without_a_command_cannot_run(container: Obj) -> None:
    with pytest.raises(EnvError) as err:
        command_line(container, {})
    assert "no command" in str(err.value)
    assert "images are not pulled" in str(err.value)
