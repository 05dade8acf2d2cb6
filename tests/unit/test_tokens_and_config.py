"""Workload tokens and a local cluster's settings and derived names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import stat
import uuid
from pathlib import Path

import pytest

from weft.local.cluster_config import (
    CONFIG_FILE,
    STATE_ROOT,
    ClusterConfig,
    ClusterConfigError,
    state_dir_for,
)
from weft.local.tokens import KEY_BYTES, Claims, UserClaims, load_or_create_key, mint, verify
from weft.platform import TokenReview

KEY = b"k" * KEY_BYTES
CLAIMS = Claims(namespace="shop", service_account="web", pod="web-abc12", pod_uid="1234-5678")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- tokens -------------------------------------------------------------------------------


def test_a_minted_token_verifies_to_its_claims() -> None:
    token = mint(KEY, CLAIMS)
    assert token.startswith("weft.")
    assert verify(KEY, token) == CLAIMS


def test_a_user_token_verifies_to_its_user_and_never_to_a_workload() -> None:
    token = mint(KEY, UserClaims("admin"))
    assert verify(KEY, token) == UserClaims("admin")
    assert verify(b"x" * KEY_BYTES, token) is None


def test_a_review_names_a_user_or_a_service_account() -> None:
    assert TokenReview(True, user="admin").username == "weft:admin"
    review = TokenReview(True, namespace="shop", service_account="web", pod="web-1")
    assert review.username == "system:serviceaccount:shop:web"


def test_surrounding_whitespace_is_ignored() -> None:
    assert verify(KEY, f"  {mint(KEY, CLAIMS)}\n") == CLAIMS


def test_a_token_is_rejected_under_another_key() -> None:
    assert verify(b"x" * KEY_BYTES, mint(KEY, CLAIMS)) is None


def test_a_tampered_body_is_rejected() -> None:
    prefix, _, sig = mint(KEY, CLAIMS).split(".")
    forged = json.dumps({"ns": "kube-system", "sa": "admin", "pod": "x", "uid": "y"}).encode()
    assert verify(KEY, f"{prefix}.{b64(forged)}.{sig}") is None


def test_a_tampered_signature_is_rejected() -> None:
    prefix, body, sig = mint(KEY, CLAIMS).split(".")
    flipped = "A" if sig[0] != "A" else "B"
    assert verify(KEY, f"{prefix}.{body}.{flipped}{sig[1:]}") is None
    assert verify(KEY, f"{prefix}.{body}.") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "weft.",
        "weft.a.b.c",
        "jwt.abc.def",
        "weft.!!!.???",
        "weft.é.ü",
        "weft.a",
    ],
)
def test_garbage_is_rejected(token: str) -> None:
    assert verify(KEY, token) is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b'{"ns": "a"}', b"\xff\xfe"])
def test_a_signed_body_without_the_claims_is_rejected(body: bytes) -> None:
    sig = hmac.new(KEY, body, hashlib.sha256).digest()
    assert verify(KEY, f"weft.{b64(body)}.{b64(sig)}") is None


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "token.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    token = mint(key, CLAIMS)
    assert verify(load_or_create_key(path), token) == CLAIMS


def test_each_new_key_file_gets_its_own_key(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a.key") != load_or_create_key(tmp_path / "b.key")


# -- cluster config: validation -----------------------------------------------------------


@pytest.mark.parametrize("name", ["w", "weft", "dev2", "a12345678901"])
def test_good_cluster_names(name: str) -> None:
    assert ClusterConfig(name=name, state_dir="/tmp/x").name == name


@pytest.mark.parametrize("name", ["", "1abc", "Weft", "we-ft", "we_ft", "a123456789012", "wé"])
def test_bad_cluster_names_are_rejected(name: str) -> None:
    with pytest.raises(ClusterConfigError, match="invalid cluster name"):
        ClusterConfig(name=name)


@pytest.mark.parametrize(
    ("pods", "services"),
    [
        ("10.0.0.0/8", "10.96.0.0/12"),
        ("10.96.0.0/16", "10.96.0.0/12"),
        ("10.96.0.0/24", "10.96.0.0/24"),
    ],
)
def test_overlapping_cidrs_are_rejected(pods: str, services: str) -> None:
    with pytest.raises(ClusterConfigError, match="overlaps"):
        ClusterConfig(pod_cidr=pods, service_cidr=services)


def test_adjacent_cidrs_are_accepted() -> None:
    cfg = ClusterConfig(pod_cidr="10.0.0.0/24", service_cidr="10.0.1.0/24", state_dir="/tmp/x")
    assert (cfg.pod_cidr, cfg.service_cidr) == ("10.0.0.0/24", "10.0.1.0/24")


@pytest.mark.parametrize(
    ("pods", "services"),
    [("10.244.0.0/33", "10.96.0.0/12"), ("banana", "10.96.0.0/12"), ("10.244.0.1/16", "x")],
)
def test_invalid_cidrs_are_rejected(pods: str, services: str) -> None:
    with pytest.raises(ClusterConfigError, match="invalid CIDR"):
        ClusterConfig(pod_cidr=pods, service_cidr=services)


@pytest.mark.parametrize(
    ("pods", "services"), [("10.0.0.0/29", "10.1.0.0/24"), ("10.0.0.0/24", "10.1.0.0/30")]
)
def test_cidrs_with_fewer_than_16_addresses_are_rejected(pods: str, services: str) -> None:
    with pytest.raises(ClusterConfigError, match="at least 16 addresses"):
        ClusterConfig(pod_cidr=pods, service_cidr=services)


def test_defaults() -> None:
    cfg = ClusterConfig()
    assert cfg.name == "weft"
    assert cfg.pod_cidr == "10.244.0.0/16"
    assert cfg.service_cidr == "10.96.0.0/12"
    assert cfg.cluster_domain == "cluster.local"
    assert cfg.state == STATE_ROOT / "weft"


# -- cluster config: derived names --------------------------------------------------------


def test_node_namespace_and_gateway() -> None:
    cfg = ClusterConfig(name="dev", pod_cidr="10.50.0.0/16", state_dir="/tmp/x")
    assert cfg.node_netns == "dev-node"
    assert cfg.gateway == ipaddress.IPv4Interface("10.50.0.1/16")
    assert str(cfg.gateway.ip) == "10.50.0.1"


def test_pod_namespace_and_veth_names_come_from_the_uid_within_kernel_limits() -> None:
    cfg = ClusterConfig(name="a12345678901", state_dir="/tmp/x")
    uid = "0123abcd-4567-89ef-0123-456789abcdef"
    assert cfg.pod_netns(uid) == "a12345678901-p-0123abcd4567"
    assert ClusterConfig.node_ifname(uid) == "v0123abcd4567"
    for _ in range(50):
        uid = str(uuid.uuid4())
        assert len(cfg.pod_netns(uid)) <= 64
        assert len(ClusterConfig.node_ifname(uid)) <= 15


def test_a_cluster_owns_its_node_and_pod_namespaces_only() -> None:
    cfg = ClusterConfig(name="dev", state_dir="/tmp/x")
    other = ClusterConfig(name="dev2", state_dir="/tmp/y")
    pod_ns = cfg.pod_netns(str(uuid.uuid4()))
    assert cfg.owns_netns("dev-node")
    assert cfg.owns_netns(pod_ns)
    assert not cfg.owns_netns(other.node_netns)
    assert not cfg.owns_netns(other.pod_netns(str(uuid.uuid4())))
    assert not other.owns_netns(pod_ns)
    assert not cfg.owns_netns("dev")


def test_state_paths_live_in_the_state_directory(tmp_path: Path) -> None:
    cfg = ClusterConfig(state_dir=str(tmp_path))
    assert cfg.api_socket == tmp_path / "api.sock"
    assert cfg.agent_pid_file == tmp_path / "agent.pid"
    assert cfg.agent_log == tmp_path / "agent.log"


def test_state_dir_for_prefers_the_explicit_directory() -> None:
    assert state_dir_for("dev", "/srv/dev") == Path("/srv/dev")
    assert state_dir_for("dev") == STATE_ROOT / "dev"


# -- cluster config: persistence ----------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    cfg = ClusterConfig(
        name="dev",
        pod_cidr="10.50.0.0/16",
        service_cidr="10.60.0.0/16",
        cluster_domain="example.internal",
        state_dir=str(state),
    )
    cfg.save()
    assert (state / CONFIG_FILE).is_file()
    assert ClusterConfig.load(state) == cfg


def test_load_uses_the_directory_it_was_given(tmp_path: Path) -> None:
    ClusterConfig(name="dev", state_dir=str(tmp_path / "old")).save()
    (tmp_path / "old").rename(tmp_path / "new")
    assert ClusterConfig.load(tmp_path / "new").state == tmp_path / "new"


def test_loading_a_missing_cluster_says_to_run_cluster_up(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError) as err:
        ClusterConfig.load(tmp_path / "nothing-here")
    assert "`weft cluster up`" in str(err.value)
    assert str(tmp_path / "nothing-here") in str(err.value)


def test_loading_a_corrupt_config_is_a_cluster_config_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ClusterConfigError, match="unreadable"):
        ClusterConfig.load(tmp_path)


def test_loading_a_config_with_bad_settings_is_rejected(tmp_path: Path) -> None:
    ClusterConfig(name="dev", state_dir=str(tmp_path)).save()
    data = json.loads((tmp_path / CONFIG_FILE).read_text())
    data["service_cidr"] = data["pod_cidr"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(ClusterConfigError, match="overlaps"):
        ClusterConfig.load(tmp_path)
