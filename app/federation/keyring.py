"""Remote servers' verify keys: cached in memory and SQLite, fetched from the origin when needed.

What one unauthenticated request can cost is bounded (issue 21): only the keys a request or event
asks for are kept (at most MAX_KEY_IDS_PER_LOOKUP a lookup), in an LRU in memory and at most
MAX_STORED_KEYS_PER_SERVER rows per server on disk, rows expire; a server is not asked again for a
while after a fetch that failed or did not hold the key asked for (per server, not per key id); and
fetches in flight are capped, separately for servers we hold keys of and for new ones.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from signedjson.types import VerifyKey
from unpaddedbase64 import encode_base64

from app.config import Config
from app.federation.client import FederationHttp, FederationRequestError
from app.federation.lru import LruCache
from app.metrics import KEY_FETCHES
from db.store import Store, StoredServerKey
from matrix.errors import MatrixError
from matrix.ids import parse_server_name
from matrix.server_keys import (
    MAX_KEY_VALIDITY_MS,
    CachedKey,
    KeyResponseError,
    check_key_response,
)
from matrix.xmatrix import decode_verify_key

logger = logging.getLogger(__name__)

# A key document is about 100 bytes per key: 64 KiB holds some 600 retired keys, far more than
# any server keeps. Parsing and checking it holds the event loop about 0.3 ms per KiB, so a
# hostile origin's 256 KiB answers cost 70 ms of stall each (issue 21, measured by make hostile).
KEY_RESPONSE_MAX_BYTES = 64 * 1024
KEY_PATH = "/_matrix/key/v2/server"
# A request names one key id per Authorization header (capped in matrix/xmatrix.py) and an
# event one per signature; past this many distinct ids, the rest are not looked up.
MAX_KEY_IDS_PER_LOOKUP = 8
# In memory, per worker: keys, and servers not to ask again yet (LRU; a forgotten entry costs at
# most one more fetch or lookup).
MAX_CACHED_KEYS = 10_000
MAX_TRACKED_SERVERS = 10_000
# On disk: a server rotates keys rarely; keep its most recently fetched ones.
MAX_STORED_KEYS_PER_SERVER = 16
# Rows fetched longer ago than this are deleted: a current key is stale by then anyway (its
# lifetime is capped at fetch + 7 days, rooms v5), and an old key is fetched again if needed.
STORED_KEY_RETENTION_MS = MAX_KEY_VALIDITY_MS
EXPIRY_INTERVAL_MS = 60 * 60 * 1000

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
        # Its own pool (not delivery's), with phase timeouts within the whole fetch's bound.
        self._http = http or FederationHttp(config, timeout_s=self._timeout_s)
        self._keys: LruCache[tuple[str, str], CachedKey] = LruCache(MAX_CACHED_KEYS)
        # Negative cache, until a clock time in ms: a server whose last fetch failed or did not
        # list a key id asked for. Per server, so made-up key ids cannot make us fetch on every
        # request (a new key of a rotating server is picked up after the backoff).
        self._server_backoff: LruCache[str, int] = LruCache(MAX_TRACKED_SERVERS)
        # Single flight: one fetch per server at a time; every waiter shares its outcome.
        # With each fetch, the key ids its waiters asked for: it keeps those before it ends.
        self._inflight: dict[str, tuple[asyncio.Task[dict[str, CachedKey] | None], set[str]]] = {}
        # Fetches in flight, capped apart for servers we hold keys of (refreshes) and for new
        # ones, so made-up origins cannot hold every slot; a fetch finding its pool full is not
        # made (the request is unauthenticated, nothing is remembered).
        self._max_slots = config.key_fetch_max_concurrent
        self._known_slots = config.key_fetch_max_concurrent
        self._new_slots = config.key_fetch_max_concurrent
        self._next_expiry_ms = 0

    async def aclose(self) -> None:
        tasks = [task for task, _asked in self._inflight.values()]
        for task in tasks:
            task.cancel()
        # Let the cancelled fetches close their connections before the pool goes.
        await asyncio.gather(*tasks, return_exceptions=True)
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
        wanted = list(dict.fromkeys(key_ids))[:MAX_KEY_IDS_PER_LOOKUP]
        if server_name == self._server_name:
            return {k: self._local_keys[k] for k in wanted if k in self._local_keys}
        # Names reach here from headers and events (origins, join_authorised_via_users_server):
        # one that is not a server name has no keys, and is never handed to the HTTP client.
        try:
            parse_server_name(server_name)
        except MatrixError:
            return {}
        cached = {key_id: self._cached(server_name, key_id) for key_id in wanted}
        stale = [
            key_id for key_id, entry in cached.items() if entry is None or entry.is_stale(now_ms)
        ]
        if stale:
            fetched = await self._fetch_if_allowed(
                server_name, stale, some_cached=len(stale) < len(wanted)
            )
            if fetched is not None:
                # The fetch kept what its waiters asked for before it finished (so a request
                # arriving as it ends finds the keys cached, not a second fetch); a waiter that
                # joined as it ended keeps its own.
                late = {k: fetched[k] for k in stale if k in fetched}
                late = {k: v for k, v in late.items() if self._keys.get((server_name, k)) is not v}
                self._keep(server_name, late, now_ms)
                cached.update({k: fetched[k] for k in stale if k in fetched})
                if any(key_id not in fetched for key_id in stale):
                    # Finding 2: the server did not list a key asked for: not again for a while.
                    self._back_off(server_name)
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
        self._keys.set((server_name, key_id), cached)
        return cached

    def _is_known(self, server_name: str) -> bool:
        return self._store.has_server_keys(server_name)

    def _back_off(self, server_name: str) -> None:
        self._server_backoff.set(server_name, self._clock() + self._backoff_ms)

    async def _fetch_if_allowed(
        self, server_name: str, key_ids: Iterable[str], *, some_cached: bool
    ) -> dict[str, CachedKey] | None:
        """The keys of the fetch run (or joined) now, which keeps ``key_ids`` among the keys it
        stores; None when none ran (backing off, no free slot) or it failed."""
        backoff_until = self._server_backoff.get(server_name)
        if backoff_until is not None:
            if backoff_until > self._clock():
                logger.debug("Not fetching keys of %s: backing off", server_name)
                return None
            self._server_backoff.pop(server_name)
        inflight = self._inflight.get(server_name)
        if inflight is not None:
            task, asked = inflight
            asked.update(key_ids)
        else:
            known = some_cached or self._is_known(server_name)
            if not self._take_slot(known):
                logger.warning(
                    "Not fetching keys of %s: %d key fetches already in flight",
                    server_name,
                    self._max_slots,
                )
                return None
            asked = set(key_ids)
            task = asyncio.create_task(self._fetch(server_name, asked))
            self._inflight[server_name] = (task, asked)

            def done(_task: object) -> None:
                self._inflight.pop(server_name, None)
                self._release_slot(known)

            task.add_done_callback(done)
        # shield: a waiter that gives up (client gone) must not cancel the others' fetch.
        return await asyncio.shield(task)

    def _take_slot(self, known: bool) -> bool:
        if known:
            if self._known_slots <= 0:
                return False
            self._known_slots -= 1
        else:
            if self._new_slots <= 0:
                return False
            self._new_slots -= 1
        return True

    def _release_slot(self, known: bool) -> None:
        if known:
            self._known_slots += 1
        else:
            self._new_slots += 1

    async def _fetch(self, server_name: str, asked: set[str]) -> dict[str, CachedKey] | None:
        now_ms = self._clock()
        try:
            # The whole fetch, slow drips included; a second past the phase timeouts so those
            # (which close their sockets) normally fire first.
            async with asyncio.timeout(self._timeout_s + 1):
                status, document = await self._http.request_json(
                    "GET", server_name, KEY_PATH, max_bytes=KEY_RESPONSE_MAX_BYTES
                )
            if status != 200:
                raise KeyResponseError(f"status {status}")
            keys = check_key_response(document, server_name, now_ms)
        except (TimeoutError, FederationRequestError, KeyResponseError) as exc:
            logger.warning(
                "Fetching the keys of %s failed (%s: %s); not retrying for %.0fs",
                server_name,
                type(exc).__name__,
                exc,
                self._backoff_ms / 1000,
            )
            self._back_off(server_name)
            KEY_FETCHES.labels("failed").inc()
            return None
        KEY_FETCHES.labels("ok").inc()
        logger.info("Fetched keys of %s (%d in the document)", server_name, len(keys))
        # The keys asked for, and fresh news of those we hold (a rotated key now in
        # old_verify_keys must stop signing requests); never the rest of the document.
        held = self._store.get_server_key_ids(server_name)
        self._keep(server_name, {k: v for k, v in keys.items() if k in asked or k in held}, now_ms)
        return keys

    def _keep(self, server_name: str, keys: Mapping[str, CachedKey], now_ms: int) -> None:
        """Cache and store the keys asked for (finding 1: never a whole hostile document)."""
        if not keys:
            return
        for key_id, key in keys.items():
            self._keys.set((server_name, key_id), key)
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
            keep_per_server=MAX_STORED_KEYS_PER_SERVER,
        )
        if now_ms >= self._next_expiry_ms:
            self._next_expiry_ms = now_ms + EXPIRY_INTERVAL_MS
            deleted = self._store.delete_server_keys_fetched_before(
                now_ms - STORED_KEY_RETENTION_MS
            )
            if deleted:
                logger.info("Deleted %d server keys fetched over a week ago", deleted)
