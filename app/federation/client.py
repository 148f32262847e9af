"""Outbound federation HTTP: server discovery, TLS settings, and X-Matrix signed requests."""

import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import certifi
import httpx
from signedjson.types import SigningKey

from app.config import Config
from app.federation.ip_guard import GuardedTransport, IpRangeGuard
from app.federation.lru import LruCache
from matrix.canonical import encode_canonical_json, parse_json_object
from matrix.errors import MatrixError
from matrix.ids import is_ip_literal, parse_server_name, split_server_name
from matrix.xmatrix import sign_request

logger = logging.getLogger(__name__)

# SS §Resolving server names: the default federation port.
DEFAULT_FEDERATION_PORT = 8448
# A .well-known/matrix/server answer is a few dozen bytes; refuse to read megabytes of it.
WELL_KNOWN_MAX_BYTES = 50 * 1024
# SS §Resolving server names leaves caching to the implementation; Synapse keeps a good answer
# for a day and remembers a failure for a few minutes before asking again.
WELL_KNOWN_CACHE_S = 24 * 60 * 60
WELL_KNOWN_FAILURE_CACHE_S = 10 * 60
WELL_KNOWN_CACHE_ENTRIES = 10_000
# Bounds every single outbound request; callers bound whole operations with asyncio.timeout.
REQUEST_TIMEOUT_S = 30.0


class FederationRequestError(Exception):
    """An outbound federation request failed: unreachable, refused, too large or not JSON."""


# Everything the HTTP stack raises for a name or peer it cannot use: transport failures
# (httpx.HTTPError), URLs it refuses (httpx.InvalidURL), names IDNA or ssl cannot encode
# (UnicodeError, a ValueError), sockets (OSError). Each becomes FederationRequestError, so a
# peer-chosen name never turns into a 500 (issue 21, finding 4).
OUTBOUND_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError, OSError)


@dataclass(frozen=True)
class ServerAddress:
    """Where to connect for a server name, and what to call it in Host and TLS."""

    host: str  # an IP literal (IPv6 without brackets) or a hostname to resolve
    port: int
    host_header: str
    tls_server_name: str  # the name the certificate must carry (SNI)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def _is_ip_address(host: str) -> bool:
    # RFC 6066 §3: SNI carries host names only, never IP addresses.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def build_ssl_context(config: Config) -> ssl.SSLContext:
    """Certificates are checked against certifi's roots plus ``federation_ca_file`` (if set)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if config.federation_ca_file:
        context.load_verify_locations(cafile=config.federation_ca_file)
    if not config.federation_verify_certificates:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def read_json_object(response: httpx.Response, max_bytes: int) -> Any:
    """The body of a streamed response as JSON, reading at most ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise FederationRequestError(f"response larger than {max_bytes} bytes")
        chunks.append(chunk)
    # The same strict parser as for request bodies: NaN, duplicate keys and runaway nesting
    # from a hostile server are refused here rather than failing deeper in.
    try:
        return parse_json_object(b"".join(chunks))
    except MatrixError as exc:
        raise FederationRequestError(f"response is not a JSON object ({exc.message})") from exc


class FederationHttp:
    """One pooled HTTPS client per worker, with server discovery in front of it.

    Used by the keyring (unsigned key fetches) and FederationClient (signed requests), so both
    follow the same discovery and TLS rules.
    """

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ):
        ssl_context = build_ssl_context(config)
        if transport is None:
            # Every connection (redirects included) is checked against the IP ranges.
            guard = IpRangeGuard(
                config.federation_ip_range_denylist, config.federation_ip_range_allowlist
            )
            transport = GuardedTransport(ssl_context, guard)
        # TLS verification lives in the transport (a client given one ignores ``verify``).
        # httpx's own per-phase timeouts (connect and TLS handshake included) close the socket
        # they give up on; a cancellation from outside (asyncio.timeout) in the TLS handshake
        # leaves it to the garbage collector (httpcore closes on Exception only).
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            transport=transport,
            max_redirects=5,
        )
        # server name -> (monotonic expiry, delegated server name or None); bounded (LRU), so
        # made-up names cannot grow it (issue 21, finding 6).
        self._well_known: LruCache[str, tuple[float, str | None]] = LruCache(
            WELL_KNOWN_CACHE_ENTRIES
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def resolve(self, server_name: str) -> ServerAddress:
        """SS §Resolving server names, without the SRV steps (optional; skipped)."""
        host, port = split_server_name(server_name)
        # Step 1: an IP literal, with its port or 8448.  Step 2: a hostname with an explicit port.
        if is_ip_literal(server_name) or port is not None:
            return ServerAddress(host, port or DEFAULT_FEDERATION_PORT, server_name, host)
        # Step 3: .well-known delegation.
        delegated = await self._delegated_server_name(host)
        if delegated is not None:
            delegated_host, delegated_port = split_server_name(delegated)
            # 3.1 / 3.2: the delegated name's port (or 8448); Host is the delegated name as given.
            return ServerAddress(
                delegated_host,
                delegated_port or DEFAULT_FEDERATION_PORT,
                delegated,
                delegated_host,
            )
        # Step 6: the hostname on 8448.
        return ServerAddress(host, DEFAULT_FEDERATION_PORT, host, host)

    async def _delegated_server_name(self, hostname: str) -> str | None:
        now = time.monotonic()
        cached = self._well_known.get(hostname)
        if cached is not None and cached[0] > now:
            return cached[1]
        delegated: str | None = None
        try:
            delegated = await self._fetch_well_known(hostname)
            lifetime = WELL_KNOWN_CACHE_S
        except (*OUTBOUND_ERRORS, FederationRequestError) as exc:
            # SS: any error fetching or parsing the file means "no delegation".
            logger.info("No .well-known delegation for %s: %s", hostname, exc)
            lifetime = WELL_KNOWN_FAILURE_CACHE_S
        self._well_known.set(hostname, (now + lifetime, delegated))
        return delegated

    async def _fetch_well_known(self, hostname: str) -> str | None:
        url = f"https://{hostname}/.well-known/matrix/server"
        # SS: follow 30x redirects, avoiding loops (httpx stops after max_redirects).
        request = self._client.build_request("GET", url)
        response = await self._client.send(request, stream=True, follow_redirects=True)
        try:
            if response.status_code != 200:
                raise FederationRequestError(f"status {response.status_code}")
            document = await read_json_object(response, WELL_KNOWN_MAX_BYTES)
        finally:
            await response.aclose()
        target = document.get("m.server") if isinstance(document, dict) else None
        if not isinstance(target, str):
            raise FederationRequestError("no m.server string")
        try:
            parse_server_name(target)
        except MatrixError as exc:
            raise FederationRequestError(f"m.server {target!r} is not a server name") from exc
        return target

    async def request_json(
        self,
        method: str,
        destination: str,
        path_and_query: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        max_bytes: int,
    ) -> tuple[int, Any]:
        """Send a request to ``destination`` (a server name) and return (status, parsed JSON).

        Raises FederationRequestError for any failure to reach, talk to or read the peer.
        """
        try:
            return await self._request_json(
                method, destination, path_and_query, headers, content, max_bytes
            )
        except OUTBOUND_ERRORS as exc:
            raise FederationRequestError(f"{type(exc).__name__}: {exc}") from exc

    async def _request_json(
        self,
        method: str,
        destination: str,
        path_and_query: str,
        headers: dict[str, str] | None,
        content: bytes | None,
        max_bytes: int,
    ) -> tuple[int, Any]:
        address = await self.resolve(destination)
        request_headers = {"Host": address.host_header, **(headers or {})}
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        extensions: dict[str, Any] = {}
        if not _is_ip_address(address.tls_server_name):
            extensions["sni_hostname"] = address.tls_server_name
        request = self._client.build_request(
            method,
            address.base_url + path_and_query,
            headers=request_headers,
            content=content,
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            return response.status_code, await read_json_object(response, max_bytes)
        finally:
            await response.aclose()


class FederationClient:
    """Signed server-server requests (SS §Request Authentication) from ``server_name``."""

    # Responses we read are JSON documents; a few MiB covers state responses.
    MAX_RESPONSE_BYTES = 8 * 1024 * 1024

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        config: Config,
        *,
        http: FederationHttp | None = None,
    ):
        self.server_name = server_name
        self._signing_key = signing_key
        self._owns_http = http is None
        self._http = http or FederationHttp(config)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def request(
        self,
        method: str,
        destination: str,
        path_and_query: str,
        json_body: Any = None,
        *,
        max_bytes: int | None = None,
    ) -> tuple[int, Any]:
        """Send a signed request; returns (status, parsed JSON body) of at most ``max_bytes``
        (default MAX_RESPONSE_BYTES).

        ``path_and_query`` is sent and signed exactly as given, so it must already be
        percent-encoded (SS: the uri is the request target as sent).
        """
        content = None if json_body is None else encode_canonical_json(json_body)
        authorization = sign_request(
            method, path_and_query, self.server_name, destination, self._signing_key, json_body
        )
        return await self._http.request_json(
            method,
            destination,
            path_and_query,
            headers={"Authorization": authorization},
            content=content,
            max_bytes=self.MAX_RESPONSE_BYTES if max_bytes is None else max_bytes,
        )
