"""Outermost ASGI layer: request ids, one access line per request, and a last-resort JSON 500."""

import logging
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import JSON_CONTENT_TYPE, render_error
from matrix.errors import MatrixError

logger = logging.getLogger("antechamber.access")


class AccessLogMiddleware:
    """Wraps the whole Connexion app, so even a failure inside Connexion's own error handling
    is answered as Matrix JSON, never Starlette's plain-text or HTML 500."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        scope["antechamber.request_id"] = request_id
        started = time.perf_counter()
        status = 0
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            logger.error("Unhandled error in request %s: %r", request_id, exc, exc_info=exc)
            if not response_started:
                status, body, _ = render_error(
                    MatrixError("M_UNKNOWN", f"Internal server error (request {request_id})")
                )
                await _send_json(send, status, body)
        finally:
            self._log(scope, status, time.perf_counter() - started, request_id)

    @staticmethod
    def _log(scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        raw_path = scope.get("raw_path") or scope.get("path", "").encode()
        query = scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        origin: Any = scope.get("antechamber.origin") or "-"
        logger.info(
            "%s %s %s %.1fms origin=%s request_id=%s",
            scope.get("method"),
            target[:512],
            status,
            elapsed * 1000,
            origin,
            request_id,
        )


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
