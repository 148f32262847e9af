"""No SSRF through federation: outbound connections to denied IP ranges are refused.

The check runs in the connect path (an httpcore network backend), on the addresses a name
*resolves to*, so a DNS name pointing at 127.0.0.1 or a .well-known redirect to a private host is
refused just like an IP-literal server name. As in Synapse (``_IPBlockingResolver``), a name with
any denied address is refused as a whole, so a mixed answer cannot slip one through.
"""

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx

logger = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class IpRangeGuard:
    """Whether an address may be connected to: not in the denylist, or punched through by the
    allowlist."""

    def __init__(self, denylist: Iterable[str], allowlist: Iterable[str] = ()):
        self._deny = [ipaddress.ip_network(entry, strict=False) for entry in denylist]
        self._allow = [ipaddress.ip_network(entry, strict=False) for entry in allowlist]

    @staticmethod
    def _candidates(address: str) -> list[IpAddress]:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        found: list[IpAddress] = [ip]
        # ::ffff:127.0.0.1 reaches 127.0.0.1: judge it by its IPv4 address too.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        return found

    @staticmethod
    def _contains(networks: list[IpNetwork], ip: IpAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in networks)

    def is_allowed(self, address: str) -> bool:
        for ip in self._candidates(address):
            if self._contains(self._deny, ip) and not self._contains(self._allow, ip):
                return False
        return True


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, then connects to an allowed one."""

    def __init__(self, guard: IpRangeGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        denied = [address for address in addresses if not self._guard.is_allowed(address)]
        if denied or not addresses:
            logger.warning("Refusing to connect to %s: it resolves to denied %s", host, denied)
            raise httpcore.ConnectError(
                f"{host} resolves to an address in federation_ip_range_denylist"
            )
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - federation never uses sockets
        raise httpcore.ConnectError("unix sockets are not used for federation")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (same pool limits), connecting through GuardedNetworkBackend.

    httpx does not take a network backend, so the pool is rebuilt with one; env proxies are not
    used (a client given a transport ignores them), so every connection is checked here.
    """

    def __init__(self, ssl_context: ssl.SSLContext, guard: IpRangeGuard):
        # The base class sets up request mapping; its pool is replaced at once (built once per
        # worker), as httpx offers no other way to pass a network backend.
        super().__init__(verify=ssl_context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            # httpx's defaults (httpx.Limits()).
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedNetworkBackend(guard),
        )
