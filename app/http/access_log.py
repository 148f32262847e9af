"""Outermost ASGI layer: request ids, one access line per request (never a header: the admin
token stays out of the log), request metrics, and a last-resort JSON 500."""

import logging
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import internal_error, send_error
from app.http.scope import REQUEST_INFO_SCOPE_KEY, RequestInfo, request_info, request_uri
from app.metrics import FEDERATION_REQUEST_DURATION, FEDERATION_REQUESTS, UNMATCHED_OPERATION

logger = logging.getLogger("antechamber.access")


class AccessLogMiddleware:
    """Wraps the whole Connexion app, so even a failure inside Connexion's own error handling
    is answered as Matrix JSON, never Starlette's plain-text or HTML 500."""

    def __init__(self, app: ASGIApp, *, federation_metrics: bool = False):
        self.app = app
        # Count requests by operation and status (the federation listener; not the admin one)
        self.federation_metrics = federation_metrics
        # The labelled children by (operation, status): both come from bounded sets
        self._metrics: dict[tuple[str, int], tuple[Any, Any]] = {}

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
            elapsed = time.perf_counter() - started
            self._log(scope, status, elapsed, info)
            if self.federation_metrics:
                # operationIds are few; an unrouted path is one label value, not its path
                operation = (info.operation or UNMATCHED_OPERATION).rpartition(".")[2]
                metrics = self._metrics.get((operation, status))
                if metrics is None:
                    metrics = self._metrics[(operation, status)] = (
                        FEDERATION_REQUESTS.labels(operation, str(status)),
                        FEDERATION_REQUEST_DURATION.labels(operation),
                    )
                metrics[0].inc()
                metrics[1].observe(elapsed)

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


class OperationMiddleware:
    """Inside Connexion, after its routing: notes the request's operationId for the access
    layer (Connexion keeps it in a scope the outer layers never see)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info(scope)
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        if info is not None and isinstance(routing.get("operation_id"), str):
            info.operation = routing["operation_id"]
        await self.app(scope, receive, send)
