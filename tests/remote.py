"""A real fake homeserver for tests: its own ed25519 key, served over HTTPS on loopback."""

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from canonicaljson import encode_canonical_json
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.types import SigningKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from unpaddedbase64 import encode_base64

from matrix.events import sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from matrix.server_keys import KEY_VALIDITY_MS, build_server_keys
from matrix.xmatrix import sign_request
from tests.live_server import serve_in_thread

# What the invite endpoint does (``invite_mode``): countersign, or one fault.
INVITE_MODES = ("ok", "forbidden", "different_event", "hang", "garbage")

FAULT_MODES = (
    "ok",
    "hang",
    "garbage",
    "nan",
    "deep",
    "wrong_server_name",
    "bad_signature",
    "refuse",
    "bloated",
)


class TestCA:
    """A throwaway certificate authority and a loopback certificate (127.0.0.1, localhost)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        server_cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for pem in server_cert.cert_chain_pems[1:]:
            pem.write_to_path(str(self.cert_file), append=True)
        server_cert.private_key_pem.write_to_path(str(self.key_file))

    def ssl_options(self) -> dict[str, Any]:
        return {"ssl_certfile": str(self.cert_file), "ssl_keyfile": str(self.key_file)}


class RemoteHomeserver:
    """Another homeserver: serves its self-signed key document and signs requests with its key.

    ``server_name`` is ``127.0.0.1:<port>`` (an IP literal with a port: no discovery needed).
    ``key_fetches`` counts requests to its key endpoint. ``mode`` switches that endpoint into a
    fault: hang (sleep past the fetcher's timeout), garbage (not JSON), nan (a NaN literal),
    deep (runaway nesting), wrong_server_name,
    bad_signature, bloated (``bloat_keys`` fresh made-up old_verify_keys in every answer, as
    a hostile origin would serve to fill our key store); ``refuse()`` stops the server so
    connections are refused.
    """

    __test__ = False

    def __init__(self, ca: TestCA, clock: Callable[[], int], *, key_version: str = "remote1"):
        self.ca = ca
        self.clock = clock
        self.signing_key: SigningKey = generate_signing_key(key_version)
        self.old_verify_keys: dict[str, dict[str, Any]] = {}
        self.old_signing_keys: dict[str, SigningKey] = {}
        self.mode = "ok"
        self.hang_s = 6.0
        # When set, the key document's valid_until_ts (else now + a day, as we publish).
        self.valid_until_ts: int | None = None
        self.key_fetches = 0
        self.bloat_keys = 2400
        self.server_name = ""
        self.base_url = ""
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        # Transactions sent to this server: (request target as sent, Authorization, body).
        self.transactions: list[tuple[str, str, Any]] = []
        # What /send answers: 200 (accepted), or this status (a server that is down or broken).
        self.send_status = 200
        # Seconds /send waits before answering (the status is decided when the request arrives)
        self.send_delay_s = 0.0
        # PDUs of the transactions answered 200, each transaction id once (a real server
        # de-duplicates retried transactions by id, transactions.yaml).
        self.accepted_pdus: list[Any] = []
        # What /get_missing_events answers (None: 404 M_UNRECOGNIZED), and what was asked.
        self.missing_events: list[Any] | None = None
        self.missing_event_requests: list[Any] = []
        # A lying or stalling origin: "hang" (past our timeout), "garbage" (not JSON),
        # "bloated" (10 MB of events), "not_a_list" (events: {}); "ok" answers missing_events.
        self.missing_events_mode = "ok"
        # What the read endpoints serve: events by id (/event), the /state_ids answer by event
        # id, the /event_auth chain by event id; and the ids /event was asked for.
        self.events: dict[str, Any] = {}
        self.state_ids: dict[str, Any] = {}
        self.event_auth: dict[str, list[Any]] = {}
        self.event_requests: list[str] = []
        # "hang" makes /state_ids and /event_auth stall past our timeout
        self.read_mode = "ok"
        self._accepted_txn_ids: set[str] = set()
        # Invites sent to this server: (request target as sent, Authorization, body).
        self.invites: list[tuple[str, str, Any]] = []
        self.invite_mode = "ok"
        self.app = Starlette(
            routes=[
                Route("/_matrix/key/v2/server", self._keys),
                Route("/_matrix/federation/v1/send/{txn_id}", self._send, methods=["PUT"]),
                Route(
                    "/_matrix/federation/v1/get_missing_events/{room_id}",
                    self._get_missing_events,
                    methods=["POST"],
                ),
                Route("/_matrix/federation/v1/event/{event_id}", self._event),
                Route("/_matrix/federation/v1/state_ids/{room_id}", self._state_ids),
                Route("/_matrix/federation/v1/event_auth/{room_id}/{event_id}", self._event_auth),
                Route(
                    "/_matrix/federation/v2/invite/{room_id}/{event_id}",
                    self._invite,
                    methods=["PUT"],
                ),
            ]
        )

    # Lifecycle --------------------------------------------------------------------------

    def start(self) -> "RemoteHomeserver":
        # A short graceful shutdown: a hanging key request must not hold the test up.
        self.base_url = self._stack.enter_context(
            serve_in_thread(self.app, timeout_graceful_shutdown=1, **self.ca.ssl_options())
        )
        self.server_name = self.base_url.removeprefix("https://")
        return self

    def refuse(self) -> None:
        """Stop serving: the port now refuses connections."""
        self._stack.close()

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> "RemoteHomeserver":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Keys ---------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return f"{self.signing_key.alg}:{self.signing_key.version}"

    @property
    def verify_key_base64(self) -> str:
        return encode_base64(get_verify_key(self.signing_key).encode())

    def rotate_key(self, new_version: str) -> SigningKey:
        """Retire the current key (into old_verify_keys, expired now) and sign with a new one."""
        old = self.signing_key
        old_id = f"{old.alg}:{old.version}"
        self.old_verify_keys[old_id] = {
            "key": encode_base64(get_verify_key(old).encode()),
            "expired_ts": self.clock(),
        }
        self.old_signing_keys[old_id] = old
        self.signing_key = generate_signing_key(new_version)
        return old

    def key_document(self, server_name: str | None = None) -> dict[str, Any]:
        now = self.clock()
        if self.valid_until_ts is not None:
            # build_server_keys publishes now + KEY_VALIDITY_MS; shift "now" to get our value.
            now = self.valid_until_ts - KEY_VALIDITY_MS
        return build_server_keys(
            server_name or self.server_name, self.signing_key, self.old_verify_keys, now
        )

    async def _send(self, request: Request) -> Response:
        """SS §Transactions: record what arrived; answer as a server that accepted every PDU."""
        target = request.scope["raw_path"].decode("latin-1")
        body = await request.json()
        status = self.send_status
        self.transactions.append((target, request.headers.get("authorization", ""), body))
        if self.send_delay_s:
            await asyncio.sleep(self.send_delay_s)
        if status != 200:
            return JSONResponse(
                {"errcode": "M_UNKNOWN", "error": "down"},
                status_code=status,
                headers={"connection": "close"},
            )
        txn_id = request.path_params["txn_id"]
        with self._lock:
            if txn_id not in self._accepted_txn_ids:
                self._accepted_txn_ids.add(txn_id)
                self.accepted_pdus.extend(body.get("pdus", []))
        return JSONResponse({"pdus": {}}, headers={"connection": "close"})

    async def _get_missing_events(self, request: Request) -> Response:
        """backfill.yaml: record the request; answer ``missing_events``."""
        self.missing_event_requests.append(await request.json())
        close = {"connection": "close"}
        if self.missing_events_mode == "hang":
            await asyncio.sleep(self.hang_s)
        elif self.missing_events_mode == "garbage":
            return Response(b"<html>not json", media_type="application/json", headers=close)
        elif self.missing_events_mode == "bloated":
            filler = {"type": "m.room.message", "content": {"body": "x" * 60000}}
            return JSONResponse({"events": [filler] * 175}, headers=close)
        elif self.missing_events_mode == "not_a_list":
            return JSONResponse({"events": {}}, headers=close)
        if self.missing_events is None:
            return JSONResponse(
                {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"},
                status_code=404,
                headers={"connection": "close"},
            )
        return JSONResponse({"events": self.missing_events}, headers={"connection": "close"})

    def _not_found(self) -> Response:
        return JSONResponse(
            {"errcode": "M_NOT_FOUND", "error": "Not found"},
            status_code=404,
            headers={"connection": "close"},
        )

    async def _event(self, request: Request) -> Response:
        """events.yaml GET /event: the event from ``events`` as a transaction, or 404."""
        event_id = request.path_params["event_id"]
        self.event_requests.append(event_id)
        if event_id not in self.events:
            return self._not_found()
        body = {"origin": self.server_name, "origin_server_ts": 1, "pdus": [self.events[event_id]]}
        return JSONResponse(body, headers={"connection": "close"})

    async def _state_ids(self, request: Request) -> Response:
        """events.yaml GET /state_ids: the answer ``state_ids`` holds for ?event_id=, or 404."""
        if self.read_mode == "hang":
            await asyncio.sleep(self.hang_s)
        answer = self.state_ids.get(request.query_params.get("event_id", ""))
        if answer is None:
            return self._not_found()
        return JSONResponse(answer, headers={"connection": "close"})

    async def _event_auth(self, request: Request) -> Response:
        """event_auth.yaml: the chain ``event_auth`` holds for the event, or 404."""
        if self.read_mode == "hang":
            await asyncio.sleep(self.hang_s)
        chain = self.event_auth.get(request.path_params["event_id"])
        if chain is None:
            return self._not_found()
        return JSONResponse({"auth_chain": chain}, headers={"connection": "close"})

    async def _invite(self, request: Request) -> Response:
        """invites-v2.yaml: record the request; answer the event countersigned with this
        server's key (as Synapse does, checking nothing), or the fault ``invite_mode`` names."""
        target = request.scope["raw_path"].decode("latin-1")
        body = await request.json()
        self.invites.append((target, request.headers.get("authorization", ""), body))
        headers = {"connection": "close"}
        mode = self.invite_mode
        if mode == "hang":
            await asyncio.sleep(self.hang_s)
        if mode == "forbidden":
            error = {"errcode": "M_FORBIDDEN", "error": "invites refused \x1b[31mhere"}
            return JSONResponse(error, status_code=403, headers=headers)
        if mode == "garbage":
            return Response(b"\x00{not json", media_type="application/json", headers=headers)
        room_version = KNOWN_ROOM_VERSIONS[body["room_version"]]
        event = body["event"]
        if mode == "different_event":
            event = {**event, "content": {**event["content"], "displayname": "someone else"}}
        signed = sign_event(event, room_version, self.server_name, self.signing_key)
        return JSONResponse({"event": signed}, headers=headers)

    async def _keys(self, request: Request) -> Response:
        response = await self._key_response()
        # No keep-alive: an idle TLS connection from the server under test would otherwise
        # hold up this server's shutdown (nobody on the client side answers close_notify).
        response.headers["connection"] = "close"
        return response

    async def _key_response(self) -> Response:
        with self._lock:
            self.key_fetches += 1
        mode = self.mode
        if mode == "hang":
            await asyncio.sleep(self.hang_s)
        if mode == "garbage":
            return Response(b"\x00{not json", media_type="application/json")
        if mode == "deep":  # nesting deep enough to exhaust a naive recursive parser
            return Response(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
        if mode == "wrong_server_name":
            return JSONResponse(self.key_document("someone-else.example"))
        document = self.key_document()
        if mode == "bloated":
            old_keys = dict(self.old_verify_keys)
            for _ in range(self.bloat_keys):
                old_keys[f"ed25519:{secrets.token_hex(8)}"] = {
                    "key": encode_base64(secrets.token_bytes(32)),
                    "expired_ts": self.clock(),
                }
            document = build_server_keys(self.server_name, self.signing_key, old_keys, self.clock())
        if mode == "bad_signature":
            impostor = generate_signing_key(self.signing_key.version)
            document = build_server_keys(
                self.server_name, impostor, self.old_verify_keys, self.clock()
            )
            document["verify_keys"] = self.key_document()["verify_keys"]
        body = encode_canonical_json(document)
        if mode == "nan":  # a signed document plus a value plain json.loads accepts
            body = body[:-1] + b',"weight":NaN}'
        return Response(body, media_type="application/json")

    # Requests -----------------------------------------------------------------------------

    def auth_header(
        self,
        method: str,
        uri: str,
        destination: str,
        content: Any = None,
        *,
        signing_key: SigningKey | None = None,
    ) -> str:
        """The Authorization header this server would send for the request."""
        return sign_request(
            method, uri, self.server_name, destination, signing_key or self.signing_key, content
        )
