"""Remote servers' verify keys: cached in memory and SQLite, fetched from the origin when needed."""

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from signedjson.sign import SignatureVerifyException, verify_signed_json
from signedjson.types import VerifyKey
from unpaddedbase64 import encode_base64

from app.config import Config
from app.federation_client import FederationHttp, FederationRequestError
from db.store import Store, StoredServerKey
from matrix.xmatrix import decode_verify_key

logger = logging.getLogger(__name__)

# keys.yaml / rooms v5: use min(valid_until_ts, now + 7 days) so a remote cannot pin a key.
MAX_KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000
# A key document is well under a kilobyte per key; this is generous.
KEY_RESPONSE_MAX_BYTES = 256 * 1024
KEY_PATH = "/_matrix/key/v2/server"
# Bound the memory of made-up key ids: past this, expired entries are dropped.
MAX_MISSING_KEYS_REMEMBERED = 10_000
# APPX §Signing Keys: key id = algorithm ":" version, version of [a-zA-Z0-9_].
_KEY_ID_RE = re.compile(r"^ed25519:[a-zA-Z0-9_]+$")
_BASE64_32_BYTES_RE = re.compile(r"^[A-Za-z0-9+/]{43}$")

Clock = Callable[[], int]


class KeyResponseError(Exception):
    """A key document that fails our checks (wrong server, bad key, bad self-signature)."""


@dataclass(frozen=True)
class CachedKey:
    verify_key: VerifyKey
    # When to stop trusting a key from verify_keys (capped at fetch + 7 days); for an old key,
    # equal to expired_ts.
    valid_until_ts: int
    # Set for keys learned from old_verify_keys: they verify events, never requests.
    expired_ts: int | None

    def may_sign_request(self, now_ms: int) -> bool:
        return self.expired_ts is None and now_ms <= self.valid_until_ts

    def may_sign_event(self, origin_server_ts: int) -> bool:
        # SS §Validating hashes and signatures: an old key verifies events sent before it
        # expired; a current key verifies events up to its valid_until_ts (rooms v5+).
        if self.expired_ts is not None:
            return origin_server_ts < self.expired_ts
        return origin_server_ts <= self.valid_until_ts

    def is_stale(self, now_ms: int) -> bool:
        """A current key whose cached lifetime has run out: worth asking the origin again."""
        return self.expired_ts is None and now_ms > self.valid_until_ts


def _require(condition: bool, why: str) -> None:
    if not condition:
        raise KeyResponseError(why)


def _decode_key(key_id: str, entry: Any) -> VerifyKey:
    _require(isinstance(entry, dict), f"{key_id}: not an object")
    key_base64 = entry.get("key")
    _require(
        isinstance(key_base64, str) and _BASE64_32_BYTES_RE.match(key_base64) is not None,
        f"{key_id}: key is not unpadded base64 of 32 bytes",
    )
    verify_key = decode_verify_key(key_id, key_base64)
    # Non-canonical trailing bits would decode to the same key under another spelling.
    _require(encode_base64(verify_key.encode()) == key_base64, f"{key_id}: non-canonical base64")
    return verify_key


def _ed25519_entries(section: Any, name: str) -> dict[str, Any]:
    """The ed25519 entries of verify_keys / old_verify_keys; other algorithms are skipped
    (only ed25519 is defined, and a future algorithm must not break federation with us)."""
    _require(isinstance(section, dict), f"{name} is not an object")
    entries: dict[str, Any] = {}
    for key_id, entry in section.items():
        if not key_id.startswith("ed25519:"):
            continue
        _require(_KEY_ID_RE.match(key_id) is not None, f"{name}: bad key id {key_id!r}")
        entries[key_id] = entry
    return entries


def check_key_response(document: Any, server_name: str, now_ms: int) -> dict[str, CachedKey]:
    """The keys of a ``/_matrix/key/v2/server`` answer from ``server_name``, checked.

    Checks (SS §Retrieving server keys; Synapse's process_v2_response): a JSON object for the
    server we asked, well-formed ed25519 keys, an integer valid_until_ts, and at least one
    self-signature by a key from this response's verify_keys (every such signature must verify).
    """
    _require(isinstance(document, dict), "not a JSON object")
    _require(document.get("server_name") == server_name, "server_name is not the server asked")
    valid_until_ts = document.get("valid_until_ts")
    _require(
        isinstance(valid_until_ts, int) and not isinstance(valid_until_ts, bool),
        "valid_until_ts is not an integer",
    )
    assert isinstance(valid_until_ts, int)
    current = {
        key_id: _decode_key(key_id, entry)
        for key_id, entry in _ed25519_entries(document.get("verify_keys"), "verify_keys").items()
    }
    _require(bool(current), "no ed25519 verify_keys")

    signatures = document.get("signatures")
    _require(isinstance(signatures, dict), "signatures is not an object")
    own_signatures = signatures.get(server_name)
    _require(isinstance(own_signatures, dict), "not signed by the server")
    verified = 0
    for key_id in own_signatures:
        if key_id not in current:
            continue
        try:
            verify_signed_json(document, server_name, current[key_id])
        # ValueError: canonical JSON refuses what the document holds (e.g. out-of-range floats).
        except (SignatureVerifyException, ValueError) as exc:
            raise KeyResponseError(f"bad self-signature by {key_id}") from exc
        verified += 1
    _require(verified > 0, "no self-signature by a key in verify_keys")

    keys: dict[str, CachedKey] = {}
    old_section = document.get("old_verify_keys", {})
    for key_id, entry in _ed25519_entries(old_section, "old_verify_keys").items():
        verify_key = _decode_key(key_id, entry)
        expired_ts = entry.get("expired_ts")
        _require(
            isinstance(expired_ts, int) and not isinstance(expired_ts, bool),
            f"{key_id}: expired_ts is not an integer",
        )
        keys[key_id] = CachedKey(verify_key, expired_ts, expired_ts)
    capped_until = min(valid_until_ts, now_ms + MAX_KEY_VALIDITY_MS)
    for key_id, verify_key in current.items():
        # A key listed as both current and old is current: the server still signs with it.
        keys[key_id] = CachedKey(verify_key, capped_until, None)
    return keys


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
            return
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
