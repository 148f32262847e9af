"""Remote servers' verify keys: cached in memory and SQLite, fetched from the origin when needed."""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import httpx
from signedjson.types import VerifyKey
from unpaddedbase64 import encode_base64

from app.config import Config
from app.federation.client import FederationHttp, FederationRequestError
from app.metrics import KEY_FETCHES
from db.store import Store, StoredServerKey
from matrix.server_keys import CachedKey, KeyResponseError, check_key_response
from matrix.xmatrix import decode_verify_key

logger = logging.getLogger(__name__)

# A key document is well under a kilobyte per key; this is generous.
KEY_RESPONSE_MAX_BYTES = 256 * 1024
KEY_PATH = "/_matrix/key/v2/server"
# Bound the memory of made-up key ids: past this, expired entries are dropped.
MAX_MISSING_KEYS_REMEMBERED = 10_000

Clock = Callable[[], int]


class Keyring:
    """Per-worker key cache in front of the SQLite ``server_keys`` table and the origin servers.

    Only keys from ``verify_keys`` that are valid now authenticate requests; keys from
    ``old_verify_keys`` are stored with their expired_ts for checking events.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        *,
        http: FederationHttp | None = None,
        local_keys: Mapping[str, VerifyKey] | None = None,
    ):
        self._store = store
        # Our own keys answer for our own name without a fetch, as Synapse's keyring does for
        # its hostname (requests we sign ourselves, e.g. with `antechamber sign-request`).
        self._server_name = config.server_name
        self._local_keys = dict(local_keys or {})
        self._timeout_s = config.key_fetch_timeout_s
        self._backoff_ms = int(config.key_fetch_failure_backoff_s * 1000)
        self._clock = clock
        self._owns_http = http is None
        self._http = http or FederationHttp(config)
        self._keys: dict[tuple[str, str], CachedKey] = {}
        # Negative caches, both until a clock time in ms: a server whose last fetch failed, and
        # key ids a server did not list when we last asked (so made-up key ids cannot make us
        # fetch on every request).
        self._server_backoff: dict[str, int] = {}
        self._missing_key_backoff: dict[tuple[str, str], int] = {}
        # Single flight: one fetch per server at a time; every waiter shares its outcome.
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def aclose(self) -> None:
        for task in self._inflight.values():
            task.cancel()
        if self._owns_http:
            await self._http.aclose()

    async def get_verify_keys(
        self, server_name: str, key_ids: Iterable[str], now_ms: int
    ) -> dict[str, VerifyKey]:
        """The keys among ``key_ids`` that may authenticate a request from ``server_name`` now."""
        return await self._get_keys(
            server_name, key_ids, now_ms, lambda cached: cached.may_sign_request(now_ms)
        )

    async def get_event_verify_keys(
        self, server_name: str, key_ids: Iterable[str], origin_server_ts: int
    ) -> dict[str, VerifyKey]:
        """The keys among ``key_ids`` that were valid for an event sent at ``origin_server_ts``
        (current keys up to their valid_until_ts, old keys before their expired_ts)."""
        return await self._get_keys(
            server_name,
            key_ids,
            self._clock(),
            lambda cached: cached.may_sign_event(origin_server_ts),
        )

    async def _get_keys(
        self,
        server_name: str,
        key_ids: Iterable[str],
        now_ms: int,
        usable: Callable[[CachedKey], bool],
    ) -> dict[str, VerifyKey]:
        wanted = list(dict.fromkeys(key_ids))
        if server_name == self._server_name:
            return {k: self._local_keys[k] for k in wanted if k in self._local_keys}
        cached = {key_id: self._cached(server_name, key_id) for key_id in wanted}
        stale = [
            key_id
            for key_id in wanted
            if self._needs_fetch(server_name, key_id, cached[key_id], now_ms)
        ]
        if stale and await self._fetch_if_allowed(server_name, wanted, now_ms):
            # Only what the fetch may have changed is looked up again.
            cached.update({key_id: self._cached(server_name, key_id) for key_id in stale})
        return {
            key_id: entry.verify_key
            for key_id, entry in cached.items()
            if entry is not None and usable(entry)
        }

    def _cached(self, server_name: str, key_id: str) -> CachedKey | None:
        cached = self._keys.get((server_name, key_id))
        if cached is not None:
            return cached
        stored = self._store.get_server_key(server_name, key_id)
        if stored is None:
            return None
        try:
            verify_key = decode_verify_key(key_id, stored.verify_key)
        except ValueError:  # pragma: no cover - we only ever store checked keys
            return None
        cached = CachedKey(verify_key, stored.valid_until_ts, stored.expired_ts)
        self._keys[(server_name, key_id)] = cached
        return cached

    def _needs_fetch(
        self, server_name: str, key_id: str, cached: CachedKey | None, now_ms: int
    ) -> bool:
        if cached is not None:
            return cached.is_stale(now_ms)
        return self._missing_key_backoff.get((server_name, key_id), 0) <= now_ms

    async def _fetch_if_allowed(self, server_name: str, key_ids: list[str], now_ms: int) -> bool:
        """Fetch (or join the fetch under way) unless the server is backing off; whether one ran."""
        if self._server_backoff.get(server_name, 0) > now_ms:
            logger.debug("Not fetching keys of %s: a recent fetch failed", server_name)
            return False
        task = self._inflight.get(server_name)
        if task is None:
            task = asyncio.create_task(self._fetch(server_name, key_ids, now_ms))
            self._inflight[server_name] = task
            task.add_done_callback(lambda _t: self._inflight.pop(server_name, None))
        # shield: a waiter that gives up (client gone) must not cancel the others' fetch.
        await asyncio.shield(task)
        return True

    async def _fetch(self, server_name: str, key_ids: list[str], now_ms: int) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                status, document = await self._http.request_json(
                    "GET", server_name, KEY_PATH, max_bytes=KEY_RESPONSE_MAX_BYTES
                )
            if status != 200:
                raise KeyResponseError(f"status {status}")
            keys = check_key_response(document, server_name, now_ms)
        except (
            TimeoutError,
            OSError,
            httpx.HTTPError,
            FederationRequestError,
            KeyResponseError,
        ) as exc:
            logger.warning(
                "Fetching the keys of %s failed (%s: %s); not retrying for %.0fs",
                server_name,
                type(exc).__name__,
                exc,
                self._backoff_ms / 1000,
            )
            self._server_backoff[server_name] = self._clock() + self._backoff_ms
            KEY_FETCHES.labels("failed").inc()
            return
        KEY_FETCHES.labels("ok").inc()
        self._store.store_server_keys(
            [
                StoredServerKey(
                    server_name,
                    key_id,
                    encode_base64(key.verify_key.encode()),
                    key.valid_until_ts,
                    key.expired_ts,
                )
                for key_id, key in keys.items()
            ],
            fetched_ts=now_ms,
        )
        for key_id, key in keys.items():
            self._keys[(server_name, key_id)] = key
        self._server_backoff.pop(server_name, None)
        if len(self._missing_key_backoff) > MAX_MISSING_KEYS_REMEMBERED:
            now = self._clock()
            self._missing_key_backoff = {
                k: until for k, until in self._missing_key_backoff.items() if until > now
            }
        for key_id in key_ids:
            if key_id not in keys:
                self._missing_key_backoff[(server_name, key_id)] = self._clock() + self._backoff_ms
        logger.info("Fetched keys of %s: %s", server_name, ", ".join(sorted(keys)))
