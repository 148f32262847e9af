"""Outbound federation: server discovery, and signed requests round-tripped through our verifier."""

import asyncio
import dataclasses
from pathlib import Path
from unittest import mock

import httpx
import pytest

from app.federation.client import (
    FederationClient,
    FederationHttp,
    FederationRequestError,
    ServerAddress,
)
from app.main import create_app
from tests import live_server
from tests.databases import data_dir_env

AUTH_CONTRACT = Path(__file__).resolve().parents[2] / "fixtures" / "auth_contract.yaml"


def _resolve(config, name, well_known):
    """Resolve ``name`` with .well-known answered by ``well_known(host) -> httpx.Response``."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/.well-known/matrix/server"
        calls.append(request.url.host)
        return well_known(request.url.host)

    async def main():
        http = FederationHttp(config, transport=httpx.MockTransport(handler))
        try:
            first = await http.resolve(name)
            second = await http.resolve(name)
            assert first == second
            return first
        finally:
            await http.aclose()

    return asyncio.run(main()), calls


@pytest.mark.parametrize(
    ("name", "m_server", "expected"),
    [
        pytest.param(
            "1.2.3.4", None, ServerAddress("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4"), id="ip-literal"
        ),
        pytest.param(
            "[::1]:9000", None, ServerAddress("::1", 9000, "[::1]:9000", "::1"), id="ipv6-port"
        ),
        pytest.param(
            "example.org:8000",
            None,
            ServerAddress("example.org", 8000, "example.org:8000", "example.org"),
            id="explicit-port-skips-well-known",
        ),
        pytest.param(
            "example.org",
            "matrix.example.org:443",
            ServerAddress(
                "matrix.example.org", 443, "matrix.example.org:443", "matrix.example.org"
            ),
            id="delegated-with-port",
        ),
        pytest.param(
            "example.org",
            "matrix.example.org",
            ServerAddress("matrix.example.org", 8448, "matrix.example.org", "matrix.example.org"),
            id="delegated-default-port",
        ),
        pytest.param(
            "example.org",
            "5.6.7.8",
            ServerAddress("5.6.7.8", 8448, "5.6.7.8", "5.6.7.8"),
            id="delegated-ip-literal",
        ),
    ],
)
def test_federation_resolve_server_name(federation_config, name, m_server, expected):
    def well_known(host):
        return httpx.Response(200, json={"m.server": m_server})

    address, calls = _resolve(federation_config, name, well_known)
    assert address == expected
    assert calls == ([] if m_server is None else ["example.org"])  # cached after one fetch


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(httpx.Response(404), id="404"),
        pytest.param(httpx.Response(200, content=b"garbage"), id="not-json"),
        pytest.param(httpx.Response(200, json={"m.server": 7}), id="not-a-string"),
        pytest.param(httpx.Response(200, json={"m.server": "bad name!"}), id="bad-name"),
        pytest.param(httpx.Response(200, json=["m.server"]), id="not-an-object"),
        pytest.param(httpx.Response(200, content=b"{" * 60_000), id="too-large"),
    ],
)
def test_federation_resolve_without_usable_well_known_uses_8448(federation_config, response):
    address, calls = _resolve(federation_config, "example.org", lambda host: response)
    assert address == ServerAddress("example.org", 8448, "example.org", "example.org")
    assert calls == ["example.org"]


@pytest.fixture
def tls_app_url(federation_config, clock, test_ca, remote):
    """Our app over HTTPS on loopback, named ``127.0.0.1:<port>`` so others can reach it."""
    port = live_server.free_port()
    config = dataclasses.replace(federation_config, server_name=f"127.0.0.1:{port}")
    app = create_app(config, clock=clock, spec_path=AUTH_CONTRACT)
    with (
        mock.patch.object(live_server, "free_port", return_value=port),
        live_server.serve_in_thread(app, **test_ca.ssl_options()) as url,
    ):
        yield config.server_name, url


def _remote_client(remote, federation_config):
    return FederationClient(remote.server_name, remote.signing_key, federation_config)


def test_federation_client_round_trips_through_the_verifier(tls_app_url, remote, federation_config):
    destination, _url = tls_app_url

    async def main():
        client = _remote_client(remote, federation_config)
        try:
            got = await client.request(
                "GET", destination, "/_test/federation/v1/query/a%21b?q=x%20y"
            )
            put = await client.request(
                "PUT", destination, "/_test/federation/v1/send/t1", {"pdus": [], "é": 1}
            )
            return got, put
        finally:
            await client.aclose()

    (get_status, get_body), (put_status, put_body) = asyncio.run(main())
    assert get_status == 200, get_body
    assert get_body == {"origin": remote.server_name, "thing": "a!b", "q": "x y"}
    assert put_status == 200, put_body
    assert put_body["body"] == {"pdus": [], "é": 1}
    assert put_body["origin"] == remote.server_name


def test_federation_client_refused_when_destination_differs(tls_app_url, remote, federation_config):
    _destination, url = tls_app_url
    address = url.removeprefix("https://")

    async def main():
        client = _remote_client(remote, federation_config)
        http = FederationHttp(federation_config)
        try:
            # Signed for another server, delivered to ours.
            header_for_other = remote.auth_header("GET", "/_test/federation/v1/query/a", "other")
            return await http.request_json(
                "GET",
                address,
                "/_test/federation/v1/query/a",
                headers={"Authorization": header_for_other},
                max_bytes=10_000,
            )
        finally:
            await client.aclose()
            await http.aclose()

    status, body = asyncio.run(main())
    assert status == 401
    assert body["errcode"] == "M_UNAUTHORIZED"


def test_federation_client_rejects_untrusted_certificates(tls_app_url, remote, tmp_path):
    from app.config import load_config

    destination, _url = tls_app_url
    untrusting = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": "x.example",
            **data_dir_env(str(tmp_path)),
            # Reach loopback, so that it is the certificate that fails.
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
        }
    )

    async def main():
        client = _remote_client(remote, untrusting)
        try:
            await client.request("GET", destination, "/_test/open")
        finally:
            await client.aclose()

    with pytest.raises(FederationRequestError) as exc_info:
        asyncio.run(main())
    assert isinstance(exc_info.value.__cause__, httpx.ConnectError)
