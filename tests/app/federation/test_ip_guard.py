"""No SSRF through key fetching: denied IP ranges are refused on the resolved addresses."""

import asyncio

import pytest

from app.config import DEFAULT_IP_RANGE_DENYLIST, ConfigError, load_config
from app.federation.client import FederationHttp, FederationRequestError
from app.federation.ip_guard import IpRangeGuard
from tests.conftest import SERVER_NAME
from tests.databases import data_dir_env
from tests.handlers.knock_env import assert_error

DEFAULT_GUARD = IpRangeGuard(DEFAULT_IP_RANGE_DENYLIST)


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="loopback"),
        pytest.param("127.1.2.3", id="loopback-range"),
        pytest.param("0.0.0.0", id="unspecified"),
        pytest.param("10.1.2.3", id="private-10"),
        pytest.param("172.16.0.1", id="private-172"),
        pytest.param("192.168.1.1", id="private-192"),
        pytest.param("169.254.169.254", id="link-local-metadata"),
        pytest.param("100.64.0.1", id="cgnat"),
        pytest.param("224.0.0.1", id="multicast"),
        pytest.param("::1", id="v6-loopback"),
        pytest.param("::", id="v6-unspecified"),
        pytest.param("fe80::1", id="v6-link-local"),
        pytest.param("fe80::1%eth0", id="v6-link-local-scoped"),
        pytest.param("fd00::1", id="v6-unique-local"),
        pytest.param("::ffff:127.0.0.1", id="v4-mapped-loopback"),
        pytest.param("::ffff:10.0.0.1", id="v4-mapped-private"),
    ],
)
def test_outbound_guard_denies_private_ranges_by_default(address):
    assert not DEFAULT_GUARD.is_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_outbound_guard_allows_public_addresses(address):
    assert DEFAULT_GUARD.is_allowed(address)


def test_outbound_guard_allowlist_punches_a_hole():
    guard = IpRangeGuard(DEFAULT_IP_RANGE_DENYLIST, ["127.0.0.0/8"])
    assert guard.is_allowed("127.0.0.1")
    assert guard.is_allowed("::ffff:127.0.0.1")
    assert not guard.is_allowed("10.0.0.1")
    assert not guard.is_allowed("::1")


def test_outbound_guard_config_lists_take_comma_separated_env_values(tmp_path):
    config = load_config(
        environ={
            **data_dir_env(str(tmp_path)),
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8, ::1/128",
            "ANTECHAMBER_FEDERATION_IP_RANGE_DENYLIST": "10.0.0.0/8",
        }
    )
    assert config.federation_ip_range_allowlist == ["127.0.0.0/8", "::1/128"]
    assert config.federation_ip_range_denylist == ["10.0.0.0/8"]
    assert list(load_config(environ={}).federation_ip_range_denylist) == list(
        DEFAULT_IP_RANGE_DENYLIST
    )


def test_outbound_guard_config_refuses_a_bad_range(tmp_path):
    with pytest.raises(ConfigError, match="federation_ip_range_allowlist"):
        load_config(environ={"ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/33"})


def _fetch(config, server_name: str):
    async def main():
        http = FederationHttp(config)
        try:
            return await http.request_json(
                "GET", server_name, "/_matrix/key/v2/server", max_bytes=10_000
            )
        finally:
            await http.aclose()

    return asyncio.run(main())


@pytest.fixture
def denying_config(tmp_path, test_ca):
    """The federation config with the default denylist and no allowlist."""
    return load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(tmp_path / "data")),
            "ANTECHAMBER_FEDERATION_CA_FILE": str(test_ca.ca_file),
            "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "2",
        }
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["ip-literal", "dns-name"])
def test_outbound_guard_refuses_loopback_before_connecting(denying_config, remote, host):
    port = remote.server_name.rsplit(":", 1)[1]
    with pytest.raises(FederationRequestError, match="denylist"):
        _fetch(denying_config, f"{host}:{port}")
    assert remote.key_fetches == 0


def test_outbound_guard_allowlisted_loopback_connects(federation_config, remote):
    status, document = _fetch(federation_config, remote.server_name)
    assert status == 200
    assert document["server_name"] == remote.server_name


def test_outbound_guard_request_from_a_denied_origin_is_401_without_a_fetch(
    denying_config, remote, clock
):
    from starlette.testclient import TestClient

    from app.main import create_app

    uri = "/_matrix/federation/v1/make_knock/%21r%3Aantechamber.test/%40a%3Ax?ver=12"
    uri = uri.replace("x?", remote.server_name + "?")
    with TestClient(create_app(denying_config, clock=clock), raise_server_exceptions=False) as c:
        response = c.get(
            uri, headers={"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}
        )
    assert_error(response, 401, "M_UNAUTHORIZED")
    assert remote.key_fetches == 0
