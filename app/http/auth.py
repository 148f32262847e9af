"""X-Matrix request authentication: body buffering before security, and the security handler.

Wiring in Connexion 3.3 (read from connexion/security.py and middleware/security.py):
``SecurityHandlerFactory.parse_security_scheme`` looks a ``type: http`` scheme up by its
*lower-cased* ``scheme`` in ``security_map``, instantiates the class with no arguments and calls
``get_fn(security_scheme, required_scopes)``. The returned callable gets a ``ConnexionRequest``
and returns token info (``{"sub": ...}`` becomes the handlers' ``user`` argument). An exception
it raises is re-raised by ``verify_security`` when it carries a ``status`` attribute, so our
MatrixError reaches the app's MatrixError handler and renders as Matrix JSON. The function can
read the scope (headers, raw_path, query_string, lifespan state) but not the body, hence
BodyBufferMiddleware at MiddlewarePosition.BEFORE_SECURITY.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from connexion.lifecycle import ConnexionRequest
from connexion.security import AbstractSecurityHandler
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.federation.keyring import Keyring
from app.http.scope import BODY_SCOPE_KEY, json_body, request_info, request_uri
from matrix.errors import MatrixError
from matrix.ids import parse_server_name
from matrix.xmatrix import (
    build_request_json,
    check_request_signature,
    parse_authorization_headers,
)

logger = logging.getLogger(__name__)

# The name of the scheme in openapi/federation.yaml (components.securitySchemes), lower-cased
# because that is how Connexion looks it up.
SECURITY_SCHEME = "x-matrix"


class BodyBufferMiddleware:
    """Reads each request body once (at most ``max_body_bytes``), keeps it in the scope for the
    security handler, and replays it to the rest of the stack."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        read_timeout_s: float | None = None,
        max_buffered_bytes: int | None = None,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        # A slow-loris body (trickled byte by byte) is cut off after this long.
        self.read_timeout_s = read_timeout_s
        # Issue 21 finding 12: bodies held at once, over every request of this worker (each
        # counts from its first byte until its request is answered); past it, 429.
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0

    def _too_large(self) -> MatrixError:
        return MatrixError(
            "M_TOO_LARGE", f"Request body is larger than {self.max_body_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise MatrixError("M_UNKNOWN", "Bad Content-Length", status=400) from None
                if declared > self.max_body_bytes:
                    # Refuse before reading a byte of it.
                    raise self._too_large()
        held = [0]  # this request's share of buffered_bytes
        try:
            await self._buffer_and_call(scope, receive, send, held)
        finally:
            self.buffered_bytes -= held[0]

    def _hold(self, held: list[int], size: int) -> None:
        if (
            self.max_buffered_bytes is not None
            and self.buffered_bytes + size > self.max_buffered_bytes
        ):
            raise MatrixError(
                "M_LIMIT_EXCEEDED", "Too many request bodies in flight", retry_after_ms=1000
            )
        self.buffered_bytes += size
        held[0] += size

    async def _buffer_and_call(
        self, scope: Scope, receive: Receive, send: Send, held: list[int]
    ) -> None:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                body = await self._read_body(receive, held)
        except TimeoutError:
            raise MatrixError(
                "M_UNKNOWN", "Timed out reading the request body", status=408
            ) from None
        if body is None:
            return
        scope[BODY_SCOPE_KEY] = body
        # Downstream sees a fixed-length body: a chunked one (no Content-Length) would
        # otherwise look empty to Connexion's body validator.
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, only a disconnect can come.
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive, held: list[int]) -> bytes | None:
        """The whole body, refusing it as soon as it passes the cap; None if the client left."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                raise self._too_large()
            self._hold(held, len(chunk))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _unauthorized(message: str) -> MatrixError:
    return MatrixError("M_UNAUTHORIZED", message)


async def authenticate_request(
    scope: Scope,
    server_name: str,
    keyring: Keyring,
    now_ms: int,
    rate_limit: Callable[[str], None] | None = None,
) -> str:
    """Check the X-Matrix signature of the request in ``scope``; return the verified origin.

    SS §Request Authentication: rebuild {method, uri, origin, destination, content} as sent,
    with our own name as destination, and verify it with the origin's current keys.
    ``rate_limit(origin)`` runs as soon as one signature has verified, before any other is.
    """
    headers = [
        value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"
    ]
    auth = parse_authorization_headers(headers)
    # SS §Request Authentication: origin is a server name (APPX §Server Name); one that is not
    # cannot have keys to verify with, so the request is unauthenticated (401).
    try:
        parse_server_name(auth.origin)
    except MatrixError:
        raise _unauthorized("Origin is not a valid server name") from None
    # SS: a destination other than our own name must be refused with 401.
    if auth.destination is not None and auth.destination != server_name:
        raise _unauthorized("Request is for another destination")
    # content only when there is a body; it must be a JSON object (400 M_NOT_JSON / M_BAD_JSON,
    # as the body validators would say). Parsed once: the validators reuse it.
    content = json_body(scope)
    request_json = build_request_json(
        scope["method"], request_uri(scope), auth.origin, server_name, content
    )
    key_ids = [key_id for key_id, _sig in auth.signatures]
    verify_keys = await keyring.get_verify_keys(auth.origin, key_ids, now_ms)
    check_request_signature(
        request_json,
        auth,
        verify_keys,
        after_first=None if rate_limit is None else lambda: rate_limit(auth.origin),
    )
    return auth.origin


class XMatrixSecurityHandler(AbstractSecurityHandler):  # type: ignore[misc]  # untyped
    """Connexion security handler for ``{type: http, scheme: X-Matrix}``.

    Registered as ``security_map={"x-matrix": XMatrixSecurityHandler}``; it needs no
    ``x-...Func`` entry in the contract. Per-worker state (keyring, server name, clock) comes
    from the lifespan state in the scope.
    """

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: Any) -> Any:
        async def verify(request: ConnexionRequest) -> dict[str, str]:
            scope = request.scope
            state = scope["state"]
            info = request_info(scope)
            limiter = state.get("rate_limiter")

            def rate_limit(origin: str) -> None:
                if info is not None:  # for the access line
                    info.origin = origin
                # Per verified origin, before any handler work and before a second signature
                # is verified (app/http/ratelimit.py).
                if limiter is None:
                    return
                retry_after_ms = limiter.check(origin, state["clock"]())
                if retry_after_ms is not None:
                    raise MatrixError(
                        "M_LIMIT_EXCEEDED",
                        "Too many requests from your server",
                        retry_after_ms=retry_after_ms,
                    )

            origin = await authenticate_request(
                scope, state["server_name"], state["keyring"], state["clock"](), rate_limit
            )
            # A server that reaches us is up: if our deliveries to it were backed off, retry
            # now (Synapse does the same). A set lookup unless it was backed off.
            sender = state.get("pdu_sender")
            if sender is not None:
                sender.notify_inbound(origin)
            return {"sub": origin}

        return verify


SECURITY_MAP: dict[str, type[AbstractSecurityHandler]] = {SECURITY_SCHEME: XMatrixSecurityHandler}
