"""Outermost ASGI layer: request ids, one access line per request, and a last-resort JSON 500."""

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import internal_error, send_error
from app.http.scope import REQUEST_INFO_SCOPE_KEY, RequestInfo, request_uri

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
        info = RequestInfo(secrets.token_hex(6))
        scope[REQUEST_INFO_SCOPE_KEY] = info
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
            error = internal_error(scope, exc)
            if not response_started:
                status = error.status
                await send_error(send, error)
        finally:
            self._log(scope, status, time.perf_counter() - started, info)

    @staticmethod
    def _log(scope: Scope, status: int, elapsed: float, info: RequestInfo) -> None:
        target = request_uri(scope)
        logger.info(
            "%s %s %s %.1fms origin=%s request_id=%s",
            scope.get("method"),
            target[:512],
            status,
            elapsed * 1000,
            info.origin or "-",
            info.request_id,
        )
